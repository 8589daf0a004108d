import uuid

from django.db import models

from core.validators import member_ref_validator
from tenants.models import Tenant, locale_validator


class Member(models.Model):
    """One of a tenant's customers, known by the tenant's own id for it (`memberRef`)."""

    class Status(models.TextChoices):
        ACTIVE = "ACTIVE", "Active"
        SUSPENDED = "SUSPENDED", "Suspended"
        CLOSED = "CLOSED", "Closed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="members")
    external_ref = models.CharField("member ref", max_length=128, validators=[member_ref_validator])
    locale = models.CharField(max_length=35, blank=True, default="", validators=[locale_validator])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "external_ref"], name="member_ref_unique_per_tenant")]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="member_tenant_created")]

    def __str__(self) -> str:
        return self.external_ref

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE
