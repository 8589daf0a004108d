"""Redemptions (seeds 000 and 003): a member's points spent on a catalog item, the workflow
that fulfils it through a partner, and how each tenant's partners are called."""

import uuid
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from catalog.models import Item, Partner
from rewards.models import Member, Transfer
from tenants.models import Tenant


class PartnerConfig(models.Model):
    """How a tenant's fulfilment partner is called (seed 000's processing configs).

    The credential itself never lives here: `credentials_ref` names the environment variable
    that holds the partner's bearer token on the workers.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="partner_configs")
    partner = models.OneToOneField(Partner, on_delete=models.PROTECT, related_name="fulfilment_config")
    base_url = models.URLField(max_length=500, help_text="The partner's API, e.g. https://api.partner.example/v1.")
    credentials_ref = models.CharField(
        max_length=128,
        blank=True,
        default="",
        help_text="Name of the environment variable holding the partner's API token (never the token).",
    )
    enabled_kinds = models.JSONField(
        default=list, blank=True, help_text="Item kinds this partner fulfils, e.g. ['GIFT_CARD', 'DIGITAL']."
    )
    timeout_seconds = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("5.00"),
        validators=[MinValueValidator(Decimal("0.1")), MaxValueValidator(Decimal("120"))],
        help_text="Bounds the connection and each read of one call.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text="Tries within one fulfilment call (exponential backoff with jitter between them).",
    )
    failure_threshold = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(1)], help_text="Consecutive failures that open the circuit."
    )
    reset_timeout_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="How long an open circuit waits before a trial call."
    )
    priority = models.IntegerField(
        default=0, help_text="Among partners fulfilling the same kind, the lowest number serves items without one."
    )
    is_enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "partner configuration"
        indexes = [models.Index(fields=["tenant", "is_enabled", "priority"], name="partner_config_tenant_priority")]

    def __str__(self) -> str:
        return f"{self.partner} ({self.base_url})"

    def clean(self):
        from django.core.exceptions import ValidationError

        from redemptions.exceptions import PartnerTargetRefused
        from redemptions.targets import partner_target_check

        super().clean()
        if self.base_url:
            try:
                partner_target_check(self.base_url, field="base_url")
            except PartnerTargetRefused as exc:
                raise ValidationError({"base_url": exc.message}) from exc


class Redemption(models.Model):
    """A member's points spent on `quantity` of an item, and where its fulfilment stands.

    The request reserves stock, debits points and inserts this row PENDING in one
    transaction; the workflow moves it on (`redemptions.states` holds the only legal
    transitions). The value calculation (list price, tier discount, points charged, cash
    value) is recorded as it was at the time, for the value reports.
    """

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        FULFILLING = "FULFILLING", "Fulfilling (with the partner)"
        COMPLETED = "COMPLETED", "Completed"
        FAILED = "FAILED", "Failed (refund due)"
        REFUNDED = "REFUNDED", "Refunded"
        CANCELLED = "CANCELLED", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="redemptions")
    member = models.ForeignKey(Member, on_delete=models.PROTECT, related_name="redemptions")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="redemptions")
    item_kind = models.CharField(max_length=16, choices=Item.Kind.choices)
    partner_config = models.ForeignKey(
        PartnerConfig, null=True, blank=True, on_delete=models.PROTECT, related_name="redemptions"
    )
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)

    # The value calculation (seed 000 "calculations").
    unit_point_cost = models.PositiveIntegerField(help_text="The item's list price in points, per unit.")
    discount_percentage = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("0"))
    unit_points = models.PositiveIntegerField(help_text="Points per unit after the tier discount.")
    points = models.BigIntegerField(help_text="Points charged in all.")
    cash_value = models.DecimalField(max_digits=14, decimal_places=2, help_text="What the items are worth in money.")
    currency = models.CharField(max_length=3)
    point_value = models.DecimalField(
        max_digits=12, decimal_places=6, help_text="The tenant's money per point when it was requested."
    )
    tier_code = models.CharField(max_length=64, blank=True, default="")

    lots = models.JSONField(default=list, blank=True, help_text="The earned lots the points were taken from.")
    debit_transfer = models.OneToOneField(
        Transfer, on_delete=models.PROTECT, related_name="redemption_debited", null=True, blank=True
    )
    refund_transfer = models.OneToOneField(
        Transfer, on_delete=models.PROTECT, related_name="redemption_refunded", null=True, blank=True
    )
    stock_reserved = models.BooleanField(default=False, help_text="False for items with unlimited stock.")

    partner_order_id = models.CharField(max_length=128, blank=True, default="")
    partner_reference = models.CharField(
        max_length=255, blank=True, default="", help_text="The gift card code, shipment, booking or credit reference."
    )
    partner_reference_kind = models.CharField(max_length=32, blank=True, default="")
    failure_code = models.CharField(max_length=64, blank=True, default="")
    failure_reason = models.CharField(max_length=500, blank=True, default="")
    attempts = models.PositiveIntegerField(default=0, help_text="Fulfilment attempts started.")
    maybe_placed = models.BooleanField(
        default=False, help_text="An attempt may have reached the partner without an answer: void before refunding."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="While FULFILLING, no other worker takes it over before this."
    )
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    requested_by = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True, help_text="When it reached a final state.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gte=1), name="redemption_quantity_positive"),
            models.CheckConstraint(condition=Q(points__gt=0), name="redemption_points_positive"),
            models.CheckConstraint(
                condition=Q(status__in=["PENDING", "FULFILLING", "COMPLETED", "FAILED", "REFUNDED", "CANCELLED"]),
                name="redemption_status_known",
            ),
            models.CheckConstraint(
                condition=Q(refund_transfer__isnull=True) | Q(status__in=["REFUNDED", "CANCELLED"]),
                name="redemption_refund_only_when_refunded",
            ),
            models.UniqueConstraint(
                fields=["tenant", "member", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="redemption_idempotency_key_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "member", "-created_at"], name="redemption_member_created"),
            models.Index(fields=["tenant", "status", "-created_at"], name="redemption_status_created"),
            models.Index(
                fields=["status", "updated_at"],
                condition=Q(status__in=["PENDING", "FULFILLING", "FAILED"]),
                name="redemption_open_by_age",
            ),
        ]

    def __str__(self) -> str:
        return f"Redemption {str(self.pk)[:8]} ({self.quantity} x {self.item.name}, {self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in (self.Status.COMPLETED, self.Status.REFUNDED, self.Status.CANCELLED)

    @property
    def discount_points(self) -> int:
        return self.unit_point_cost * self.quantity - self.points


class RedemptionTransition(models.Model):
    """One step of a redemption's history: every status change, who or what made it and why."""

    redemption = models.ForeignKey(Redemption, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16, choices=Redemption.Status.choices)
    actor = models.CharField(max_length=64, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["redemption", "at"], name="redemption_transition_at")]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} → {self.to_status}"


class FulfilmentAttempt(models.Model):
    """One call made to a partner for a redemption (fulfil or void) and how it went: the
    partner health page and the redemption's history read these."""

    class Outcome(models.TextChoices):
        OK = "ok", "OK"
        REJECTED = "rejected", "Rejected by the partner"
        UNAVAILABLE = "unavailable", "Partner unavailable"
        TIMEOUT = "timeout", "No answer in time"
        CIRCUIT_OPEN = "circuit_open", "Circuit open (not called)"

    class Operation(models.TextChoices):
        FULFIL = "fulfil", "Fulfil"
        VOID = "void", "Void"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="fulfilment_attempts")
    redemption = models.ForeignKey(Redemption, on_delete=models.CASCADE, related_name="fulfilment_attempts")
    partner_config = models.ForeignKey(PartnerConfig, on_delete=models.PROTECT, related_name="attempts")
    operation = models.CharField(max_length=8, choices=Operation.choices, default=Operation.FULFIL)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.CharField(max_length=500, blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["partner_config", "-at"], name="fulfilment_attempt_partner_at"),
            models.Index(fields=["redemption", "at"], name="fulfilment_attempt_redemption"),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.redemption_id}: {self.outcome}"
