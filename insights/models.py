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
