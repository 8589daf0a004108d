import uuid

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from tenants.models import Tenant


class OutboxEvent(models.Model):
    """An outbound event, written in the same transaction as the change it announces and
    delivered after commit (WebSocket, webhooks)."""

    event_id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="outbox_events")
    type = models.CharField(max_length=64)
    schema_version = models.PositiveSmallIntegerField(default=1)
    member_ref = models.CharField(max_length=128, blank=True, default="")
    occurred_at = models.DateTimeField()
    data = models.JSONField(encoder=DjangoJSONEncoder)
    correlation_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    # The platform-wide order of events, set by the database on insert (a sequence on
    # PostgreSQL, the rowid on SQLite; rewards/migrations/0007). A member's events are written
    # under the member's row lock, so their positions follow their commit order.
    position = models.BigIntegerField(null=True, blank=True, editable=False, unique=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "member_ref", "position"], name="outbox_member_position"),
            models.Index(fields=["tenant", "type", "position"], name="outbox_tenant_type_position"),
            models.Index(
                fields=["created_at"], condition=models.Q(published_at__isnull=True), name="outbox_unpublished"
            ),
            models.Index(fields=["tenant", "-created_at"], name="outbox_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
