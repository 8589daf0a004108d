"""Insights: spending rollups kept from the event store (seed 000's Spending Insights Engine)."""

from decimal import Decimal

from django.db import models

from rewards.models import Member
from tenants.models import Tenant

# Category keys that no spend category can have (codes start with a letter or a digit).
ALL_CATEGORIES = "_all"
UNCATEGORIZED = "_none"


class SpendingRollup(models.Model):
    """One member's spending and earning on one day (in the tenant's timezone) in one spend
    category, kept up to date from processed events by `insights.rollups`.

    The `_all` row of a day holds the member's totals for that day, with each purchase
    counted once; category rows split the same amounts and points, so they add up to it.
    Refunds count against the purchase's own day and categories. Months are sums of days.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="spending_rollups")
    day = models.DateField()
    category = models.CharField(max_length=64)
    amount = models.DecimalField(max_digits=16, decimal_places=2, default=Decimal("0"))
    transactions = models.IntegerField(default=0)
    points_base = models.BigIntegerField(default=0)
    points_multiplier = models.BigIntegerField(default=0)
    points_tier = models.BigIntegerField(default=0)
    points_campaign = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "member", "day", "category"], name="spending_rollup_cell"),
        ]
        indexes = [models.Index(fields=["tenant", "day", "category"], name="spending_rollup_tenant_day")]

    def __str__(self) -> str:
        return f"{self.member_id} {self.day} {self.category}"

    @property
    def points(self) -> int:
        return self.points_base + self.points_multiplier + self.points_tier + self.points_campaign


class RollupCursor(models.Model):
    """How far the rollups have read the event store: one row, locked while they advance, so
    each event is counted once whichever worker runs."""

    key = models.CharField(max_length=32, primary_key=True, default="spending")
    tx_id = models.BigIntegerField(default=-1)
    event_pk = models.BigIntegerField(default=0)
    events_applied = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.key} at ({self.tx_id}, {self.event_pk})"


class ReconciliationRun(models.Model):
    """One pass of `insights.reconciliation` over one tenant: every stored running total
    recomputed from its source of truth. It reports drift and never corrects it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    checked = models.PositiveIntegerField(default=0, help_text="Stored totals compared.")
    drift_count = models.PositiveIntegerField(default=0, help_text="Of those, how many disagreed.")

    class Meta:
        indexes = [models.Index(fields=["tenant", "-started_at"], name="reconciliation_run_tenant")]

    def __str__(self) -> str:
        return f"{self.started_at:%Y-%m-%d %H:%M} {self.drift_count} drift"


class ReconciliationDrift(models.Model):
    """A stored total that disagrees with what its source of truth gives: which one, what is
    stored, what was computed."""

    class Kind(models.TextChoices):
        ACCOUNT_BALANCE = "ACCOUNT_BALANCE", "Account balance vs its transfers"
        LOTS = "LOTS", "Open lots vs the account balance"
        LIMIT_COUNTER = "LIMIT_COUNTER", "Limit counter (Redis) vs points issued in its period"
        CAMPAIGN_REWARDS = "CAMPAIGN_REWARDS", "Campaign rewards issued vs its incentives"
        CAMPAIGN_AMOUNT = "CAMPAIGN_AMOUNT", "Campaign amount issued vs its incentives"
        ITEM_STOCK = "ITEM_STOCK", "Item stock vs its stock movements"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="drifts")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    object_type = models.CharField(max_length=64, help_text="The model (or store) holding the total.")
    object_id = models.CharField(max_length=255)
    object_repr = models.CharField(max_length=255, blank=True, default="")
    stored = models.DecimalField(max_digits=24, decimal_places=4, null=True, blank=True)
    computed = models.DecimalField(max_digits=24, decimal_places=4)

    class Meta:
        indexes = [models.Index(fields=["tenant", "kind"], name="reconciliation_drift_kind")]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_repr or self.object_id}: {self.stored} != {self.computed}"
