"""Recommendations (seed 000 value optimization): for one member, the best-value rewards they
can redeem now, the ones worth saving for, and what to spend points that expire soon on.
Only active, in-stock items the member's tier may see count, priced at the tier's discount.

Every list is ranked and cut in the database (insights.value.by_value), so the queries a
member's recommendations cost do not grow with the catalog.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db.models import Count, Max, Min, Q, QuerySet

from catalog.models import Category, Item
from catalog.pricing import max_affordable_cost
from catalog.selectors import Viewer, category_list, item_filter, item_visible, viewer_for
from insights.value import (
    PLACES,
    KindRate,
    ValuedItem,
    by_value,
    kind_rates,
    member_cost_expression,
    value_per_point_expression,
    valued,
)
from redemptions.models import Redemption
from redemptions.selectors import redemption_list
from rewards.models import Member
from rewards.selectors import points_expiring
from tenants.models import Tenant

DEFAULT_LIMIT = 5
MAX_LIMIT = 20
# Redemptions that went through (or are on their way): what the member chose before.
CHOSEN = (Redemption.Status.PENDING, Redemption.Status.FULFILLING, Redemption.Status.COMPLETED)


@dataclass(frozen=True)
class ExpiringSoon:
    points: int
    expires_at: datetime | None  # the earliest expiry among them
    within_days: int
    items: list[ValuedItem]  # what those points alone can redeem, best value first


@dataclass(frozen=True)
class Recommendations:
    member: Member
    balance: int
    tier_id: str | None
    discount_percentage: Decimal
    currency: str
    affordable_now: list[ValuedItem]
    worth_saving_for: list[ValuedItem]
    expiring_soon: ExpiringSoon
    rates: list[KindRate]


def tier_of(viewer: Viewer) -> str | None:
    # The tiers a member reaches run up to their own (rewards.contributions.tiers_reached).
    return viewer.tiers[-1] if viewer.tiers else None


def shelf(*, tenant: Tenant, viewer: Viewer) -> QuerySet[Item]:
    """What may be recommended to the member: active, in stock, within their tier."""
    return item_filter(item_visible(tenant=tenant, viewer=viewer), viewer=viewer, in_stock=True)


def _top(items: QuerySet[Item], *, viewer: Viewer, limit: int) -> list[ValuedItem]:
    ranked = by_value(items, discount_percentage=viewer.discount_percentage)[:limit]
    return valued(ranked, discount_percentage=viewer.discount_percentage, balance=viewer.balance)


def recommendations_get(*, tenant: Tenant, member: Member, limit: int = DEFAULT_LIMIT) -> Recommendations:
    """The member's recommendations, `limit` items in each list."""
    viewer = viewer_for(tenant=tenant, member=member)  # their tier's items and discount, their balance
    items = shelf(tenant=tenant, viewer=viewer)

    affordable = _top(item_filter(items, viewer=viewer, affordable=True), viewer=viewer, limit=limit)
    saving = _top(item_filter(items, viewer=viewer, affordable=False), viewer=viewer, limit=limit)

    within = timedelta(days=settings.INSIGHTS_EXPIRING_SOON_DAYS)
    expiring = points_expiring(member=member, within=within)
    suggestions: list[ValuedItem] = []
    if expiring["points"]:
        # Priced against the expiring points alone: spending them first is what saves them
        # (a redemption takes the points closest to expiry first).
        spendable = replace(viewer, balance=expiring["points"])
        suggestions = _top(item_filter(items, viewer=spendable, affordable=True), viewer=viewer, limit=limit)

    return Recommendations(
        member=member,
        balance=viewer.balance,
        tier_id=tier_of(viewer),
        discount_percentage=viewer.discount_percentage,
        currency=tenant.currency,
        affordable_now=affordable,
        worth_saving_for=saving,
        expiring_soon=ExpiringSoon(
            points=expiring["points"],
            expires_at=expiring["first_expiry"],
            within_days=within.days,
            items=suggestions,
        ),
        rates=kind_rates(tenant=tenant),
    )


# By category (what the AI recommendation chooses among) ----------------------------------


@dataclass(frozen=True)
class CategoryValue:
    """One catalog category as a member sees it: how many rewards it holds for them, how many
    they can redeem now, the best value per point among those, and how close the cheapest is."""

    category: Category
    rewards: int
    affordable: int
    best_value: Decimal | None  # over all its rewards
    best_affordable_value: Decimal | None  # over those the member can redeem now
    has_free_reward: bool  # one costs the member no points (a 100% tier discount)
    cheapest_points: int  # the member's price of its cheapest reward
    points_needed: int  # to redeem that one; 0 when they can now
    past_redemptions: int  # the member's redemptions of its rewards


def _quantized(value) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def category_values(*, tenant: Tenant, member: Member, viewer: Viewer) -> list[CategoryValue]:
    """The active categories holding a reward the member may be recommended (directly, not
    through a subcategory), in the catalog's order. Three queries, whatever the catalog's size."""
    discount = viewer.discount_percentage
    ceiling = max_affordable_cost(viewer.balance, discount)
    now = Q() if ceiling is None else Q(point_cost__lte=ceiling)
    cost, value = member_cost_expression(discount), value_per_point_expression(discount)
    rows = {
        row["category_id"]: row
        for row in shelf(tenant=tenant, viewer=viewer)
        .filter(category__isnull=False)
        .values("category_id")
        .annotate(
            rewards=Count("pk"),
            affordable=Count("pk", filter=now),
            best_value=Max(value),
            best_affordable_value=Max(value, filter=now),
            cheapest=Min(cost),
        )
        .order_by()
    }
    if not rows:
        return []
    chosen = dict(
        redemption_list(tenant=tenant, member=member)
        .filter(status__in=CHOSEN, item__category_id__in=list(rows))
        .values_list("item__category_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    categories = category_list(tenant=tenant, viewer=viewer).filter(pk__in=list(rows))
    result = []
    for category in categories:
        row = rows[category.pk]
        cheapest = int(row["cheapest"])
        result.append(
            CategoryValue(
                category=category,
                rewards=row["rewards"],
                affordable=row["affordable"],
                best_value=_quantized(row["best_value"]),
                best_affordable_value=_quantized(row["best_affordable_value"]),
                has_free_reward=cheapest == 0,
                cheapest_points=cheapest,
                points_needed=max(cheapest - viewer.balance, 0),
                past_redemptions=chosen.get(category.pk, 0),
            )
        )
    return result


def category_rewards(*, tenant: Tenant, viewer: Viewer, category: Category, limit: int) -> list[ValuedItem]:
    """The category's rewards (its subcategories' included) for the member, best value first."""
    items = item_filter(shelf(tenant=tenant, viewer=viewer), viewer=viewer, category=category.code)
    return _top(items, viewer=viewer, limit=limit)
