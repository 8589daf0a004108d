"""A member's spending insights, read from the rollups (and cached under the member's
generation, which changes whenever their rollups do)."""

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Sum
from django.db.models.functions import TruncMonth
from django.utils import timezone

from insights.models import ALL_CATEGORIES, UNCATEGORIZED, RollupCursor, SpendingRollup
from insights.rollups import insights_cache_generation, rollups_update
from rewards.models import Member, SpendCategory
from tiers.qualification import member_tier_summary

PERIODS = ("day", "month")
MAX_BUCKETS = {"day": 366, "month": 120}
PACE_DAYS = 90
TOP_CATEGORIES = 5
SUMS = {
    "amount": Sum("amount"),
    "transactions": Sum("transactions"),
    "base": Sum("points_base"),
    "multiplier": Sum("points_multiplier"),
    "tier": Sum("points_tier"),
    "campaign": Sum("points_campaign"),
}


@dataclass(frozen=True)
class Window:
    period: str
    start: date  # first day, inclusive
    end: date  # last day, inclusive

    @property
    def buckets(self) -> int:
        if self.period == "day":
            return (self.end - self.start).days + 1
        return (self.end.year - self.start.year) * 12 + self.end.month - self.start.month + 1

    def previous(self) -> "Window":
        """The window of the same length just before this one."""
        if self.period == "day":
            length = self.end - self.start + timedelta(days=1)
            return Window("day", self.start - length, self.start - timedelta(days=1))
        start = _add_months(self.start, -self.buckets)
        return Window("month", start, self.start - timedelta(days=1))


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month_end(day: date) -> date:
    return _add_months(day, 1) - timedelta(days=1)


def window_for(*, tenant, period: str, start: date | None, end: date | None) -> Window:
    """The asked window, whole months for `month`; defaults: the last 6 months or 30 days
    up to today in the tenant's timezone. Raises ValueError(field, message)."""
    today = timezone.now().astimezone(ZoneInfo(tenant.timezone)).date()
    if period == "month":
        end = _month_end(end or today)
        start = (start or _add_months(end, -5)).replace(day=1)
    else:
        end = end or today
        start = start or end - timedelta(days=29)
    window = Window(period, start, end)
    if start > end:
        raise ValueError("to", "`to` is before `from`.")
    if window.buckets > MAX_BUCKETS[period]:
        raise ValueError("from", f"At most {MAX_BUCKETS[period]} {period}s at a time.")
    return window


def _points(row: dict) -> dict:
    return {
        "base": row.get("base") or 0,
        "multipliers": row.get("multiplier") or 0,
        "tier": row.get("tier") or 0,
        "campaigns": row.get("campaign") or 0,
    }


def _figures(row: dict) -> dict:
    by_source = _points(row)
    return {
        "amount_spent": (row.get("amount") or Decimal(0)).quantize(Decimal("0.01")),
        "transaction_count": row.get("transactions") or 0,
        "points_earned": sum(by_source.values()),
        "points_by_source": by_source,
    }


def _change(now, before) -> str | None:
    """Percent change against the previous period, one decimal; None when it had nothing."""
    if not before:
        return None
    return str((Decimal(now - before) * 100 / Decimal(before)).quantize(Decimal("0.1")))


def member_insights(*, member: Member, window: Window) -> dict:
    if settings.INSIGHTS_ROLLUPS_ON_READ:
        rollups_update()
    generation = _generation(member)
    key = f"insights:member:{member.tenant_id}:{member.pk}:{generation}:{window.period}:{window.start}:{window.end}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    answer = _member_insights(member=member, window=window)
    cache.set(key, answer, timeout=settings.INSIGHTS_CACHE_SECONDS)
    return answer


def _generation(member: Member) -> str:
    return insights_cache_generation(member.tenant_id, member.pk)


def _member_insights(*, member: Member, window: Window) -> dict:
    tenant = member.tenant
    rows = SpendingRollup.objects.filter(tenant=tenant, member=member)
    inside = rows.filter(day__gte=window.start, day__lte=window.end)
    totals = inside.filter(category=ALL_CATEGORIES).aggregate(**SUMS)
    previous_window = window.previous()
    previous = rows.filter(
        category=ALL_CATEGORIES, day__gte=previous_window.start, day__lte=previous_window.end
    ).aggregate(**SUMS)
    bucket = TruncMonth("day") if window.period == "month" else F("day")
    series = {
        row["bucket"]: row
        for row in inside.filter(category=ALL_CATEGORIES)
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(**SUMS)
        .order_by("bucket")
    }
    categories = list(
        inside.exclude(category=ALL_CATEGORIES)
        .values("category")
        .annotate(**SUMS)
        .order_by("-amount", "category")[: TOP_CATEGORIES + 1]
    )
    categories = [c for c in categories if c["category"] != UNCATEGORIZED or c["amount"]][:TOP_CATEGORIES]
    names = dict(
        SpendCategory.objects.filter(tenant=tenant, code__in=[c["category"] for c in categories]).values_list(
            "code", "name"
        )
    )
    now_figures, previous_figures = _figures(totals), _figures(previous)
    spent = now_figures["amount_spent"]
    return {
        "member_ref": member.external_ref,
        "period": window.period,
        "from": window.start,
        "to": window.end,
        "currency": tenant.currency,
        "totals": now_figures,
        "previous": {"from": previous_window.start, "to": previous_window.end, **previous_figures},
        "change": {
            "amount_spent": _change(spent, previous_figures["amount_spent"]),
            "transaction_count": _change(now_figures["transaction_count"], previous_figures["transaction_count"]),
            "points_earned": _change(now_figures["points_earned"], previous_figures["points_earned"]),
        },
        "top_categories": [
            {
                "category": None if c["category"] == UNCATEGORIZED else c["category"],
                "name": names.get(c["category"], "Uncategorized" if c["category"] == UNCATEGORIZED else c["category"]),
                **_figures(c),
                "share": str((c["amount"] * 100 / spent).quantize(Decimal("0.1"))) if spent else None,
            }
            for c in categories
        ],
        "series": [
            {"start": start, **_figures(series[start])} if start in series else {"start": start, **_figures({})}
            for start in _bucket_starts(window)
        ],
        "tier": _tier_projection(member, rows),
        "rollups_updated_at": RollupCursor.objects.filter(key="spending").values_list("updated_at", flat=True).first(),
    }


def _bucket_starts(window: Window) -> list[date]:
    if window.period == "day":
        return [window.start + timedelta(days=i) for i in range(window.buckets)]
    return [_add_months(window.start, i) for i in range(window.buckets)]


def _tier_projection(member: Member, rows) -> dict | None:
    """The member's tier, the next one, and when they would reach it at their pace of the
    last 90 days (points earned per day); None without tiers, no date without a pace."""
    summary = member_tier_summary(member)
    if summary is None:
        return None
    upcoming = summary["next_tier"]
    today = timezone.now().astimezone(ZoneInfo(member.tenant.timezone)).date()
    earned = rows.filter(category=ALL_CATEGORIES, day__gt=today - timedelta(days=PACE_DAYS)).aggregate(**SUMS)
    pace = Decimal(sum(_points(earned).values())) / PACE_DAYS
    projected = None
    if upcoming is not None and upcoming["points_to_go"] > 0 and pace > 0:
        projected = today + timedelta(days=math.ceil(upcoming["points_to_go"] / pace))
    elif upcoming is not None and upcoming["points_to_go"] == 0:
        projected = today
    return {
        "tier_id": summary["tier_id"],
        "name": summary["name"],
        "qualifying_points": summary["qualifying_points"],
        "next_tier": upcoming,
        "points_per_day": str(pace.quantize(Decimal("0.01"))),
        "projected_date": projected,
    }
