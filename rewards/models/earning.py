from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from tenants.models import Tenant

code_validator = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", "Use letters, digits, . _ - (max 64).")


class SpendCategory(models.Model):
    """A tenant's spend category (dining, travel, ...), matched by code or by merchant MCC."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="categories")
    code = models.CharField(max_length=64, validators=[code_validator])
    name = models.CharField(max_length=200)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    mcc_codes = models.JSONField(default=list, blank=True, help_text="Four-digit merchant category codes.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "spend categories"
        constraints = [models.UniqueConstraint(fields=["tenant", "code"], name="category_code_unique_per_tenant")]

    def __str__(self) -> str:
        return self.code


class Multiplier(models.Model):
    """Points per unit spent in a category are multiplied by `factor` while it is valid,
    optionally only for one tier, optionally capped per period."""

    class Period(models.TextChoices):
        DAY = "DAY", "Day"
        WEEK = "WEEK", "Week"
        MONTH = "MONTH", "Month"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="multipliers")
    category = models.ForeignKey(SpendCategory, on_delete=models.CASCADE, related_name="multipliers")
    factor = models.DecimalField(max_digits=8, decimal_places=4, validators=[MinValueValidator(Decimal("0"))])
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_to = models.DateTimeField(null=True, blank=True)
    tier = models.CharField(max_length=64, blank=True, default="", help_text="Only for members of this tier.")
    cap_points = models.BigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(0)], help_text="Most extra points per period."
    )
    cap_period = models.CharField(max_length=8, choices=Period.choices, blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(factor__gte=0), name="multiplier_factor_not_negative"),
            models.CheckConstraint(
                condition=Q(valid_from__isnull=True)
                | Q(valid_to__isnull=True)
                | Q(valid_to__gt=models.F("valid_from")),
                name="multiplier_window_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category} x{self.factor}"


class InboundEvent(models.Model):
    """The inbox and event store: every inbound event once per (tenant, eventId), with its
    payload and the result it produced, for audit and replay."""

    class Status(models.TextChoices):
        APPLIED = "APPLIED", "Applied"
        REJECTED = "REJECTED", "Rejected"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="inbound_events")
    event_id = models.CharField(max_length=128)
    type = models.CharField(max_length=32)
    member_ref = models.CharField(max_length=128, blank=True, default="")
    occurred_at = models.DateTimeField()
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    payload_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices)
    result = models.JSONField(encoder=DjangoJSONEncoder, default=dict)
    original = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="refunds", help_text="For refunds."
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    points = models.BigIntegerField(default=0, help_text="Points this event moved (negative for reversals).")
    received_at = models.DateTimeField(auto_now_add=True)
    # The inserting transaction's id, set by the database (core.changefeed): insights read
    # processed events in this order.
    tx_id = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "event_id"], name="inbox_event_unique_per_tenant")]
        indexes = [
            models.Index(fields=["tenant", "type", "occurred_at"], name="inbox_tenant_type_occurred"),
            models.Index(fields=["tenant", "member_ref", "-occurred_at"], name="inbox_member_occurred"),
            models.Index(fields=["tx_id", "id"], name="inbox_changefeed"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"


class MultiplierUsage(models.Model):
    """Extra points a capped multiplier has given one member in one period."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    multiplier = models.ForeignKey(Multiplier, on_delete=models.CASCADE, related_name="usages")
    member = models.ForeignKey("rewards.Member", on_delete=models.PROTECT, related_name="+")
    period_start = models.DateField()
    extra_points = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["multiplier", "member", "period_start"], name="multiplier_usage_unique")
        ]

    def __str__(self) -> str:
        return f"{self.multiplier_id} {self.member_id} {self.period_start}: {self.extra_points}"
