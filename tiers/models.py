"""VIP tiers (seed 004 `vip_tiers`), the tenant's qualification policy, each member's current
tier and tier history, qualifying points by month, and processed tier events."""

from decimal import Decimal

from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from core.db import JsonGinIndex
from rewards.models import Member
from tenants.models import Tenant

tier_id_validator = RegexValidator(r"^[a-z0-9][a-z0-9_-]{0,63}$", "Use lowercase letters, digits, _ and - (max 64).")


class TierPolicy(models.Model):
    """How a tenant's members qualify for tiers."""

    class Qualification(models.TextChoices):
        LIFETIME = "LIFETIME", "Points earned over the member's lifetime"
        ROLLING = "ROLLING", "Points earned in the last N months"

    tenant = models.OneToOneField(Tenant, primary_key=True, on_delete=models.CASCADE, related_name="tier_policy")
    qualification = models.CharField(max_length=8, choices=Qualification.choices, default=Qualification.LIFETIME)
    window_months = models.PositiveSmallIntegerField(
        default=12, validators=[MinValueValidator(1), MaxValueValidator(120)], help_text="For ROLLING."
    )
    downgrade_grace_days = models.PositiveSmallIntegerField(
        default=0, validators=[MaxValueValidator(3650)], help_text="Days below a tier before the downgrade."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "tier policies"

    def __str__(self) -> str:
        return f"{self.qualification} ({self.window_months} months, grace {self.downgrade_grace_days} days)"


class Tier(models.Model):
    """One of a tenant's VIP tiers: a name per locale, the points that qualify for it, and
    its benefits."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="tiers")
    tier_id = models.CharField(max_length=64, validators=[tier_id_validator])
    names = models.JSONField(default=dict, help_text='Name per locale, e.g. {"en": "Gold", "ar": "ذهبي"}.')
    min_points = models.PositiveIntegerField(default=0)
    discount_percentage = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    free_shipping = models.BooleanField(default=False)
    exclusive_access = models.BooleanField(default=False)
    benefits = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    earn_multiplier = models.DecimalField(
        max_digits=6, decimal_places=3, default=Decimal(1), validators=[MinValueValidator(Decimal(0))]
    )
    rank = models.PositiveSmallIntegerField(default=0, help_text="Higher is better; ties broken by min points.")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "tier_id"], name="unique_vip_tiers_tenant_tier_id"),
            models.CheckConstraint(condition=Q(min_points__gte=0), name="vip_tier_min_points_not_negative"),
            models.CheckConstraint(
                condition=Q(discount_percentage__gte=0) & Q(discount_percentage__lte=100),
                name="vip_tier_discount_percentage_range",
            ),
            models.CheckConstraint(condition=Q(earn_multiplier__gte=0), name="vip_tier_multiplier_not_negative"),
        ]
        indexes = [
            models.Index(fields=["tenant", "min_points"], name="idx_vip_tiers_min_points"),
            JsonGinIndex(fields=["benefits"], name="idx_vip_tiers_benefits"),
        ]

    def __str__(self) -> str:
        return self.tier_id


class TierAssignment(models.Model):
    """A member's current tier, and since when they have been below it (for the grace period)."""

    member = models.OneToOneField(Member, primary_key=True, on_delete=models.CASCADE, related_name="tier_assignment")
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="assignments")
    assigned_at = models.DateTimeField()
    below_since = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "tier"], name="tier_assignment_tier")]

    def __str__(self) -> str:
        return f"{self.member_id}: {self.tier_id}"


class TierHistory(models.Model):
    """Every tier change of a member, with why."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="tier_history")
    from_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_tier = models.ForeignKey(Tier, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=32)
    qualifying_points = models.BigIntegerField(default=0)
    event_id = models.CharField(max_length=128, blank=True, default="")
    at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "tier history"
        indexes = [models.Index(fields=["member", "-at"], name="tier_history_member")]

    def __str__(self) -> str:
        return f"{self.from_tier_id} -> {self.to_tier_id} ({self.reason})"


class QualifyingPoints(models.Model):
    """Points that count towards tiers, per member and calendar month (earnings less their
    reversals and expiries): a lifetime total is their sum, a rolling window the last N."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="qualifying_points")
    month = models.DateField(help_text="The first day of the month.")
    points = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "qualifying points"
        constraints = [models.UniqueConstraint(fields=["member", "month"], name="qualifying_points_month_unique")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.month:%Y-%m}: {self.points}"


class ProcessedEvent(models.Model):
    """Tier events already handled (seed 004 `processed_events`), so each is handled once."""

    class Type(models.TextChoices):
        ASSIGNED = "vip_tier.assigned", "vip_tier.assigned"
        UPDATED = "vip_tier.updated", "vip_tier.updated"
        EARNING = "earning", "earning or reversal"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    event_id = models.CharField(max_length=160)
    event_type = models.CharField(max_length=32, choices=Type.choices)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_id", "event_type"], name="processed_event_once"),
        ]
        indexes = [models.Index(fields=["tenant"], name="idx_processed_events_tenant")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"
