"""Value optimization (seed 000): what a point is worth on each redemption option.

An item's value per point is its cash value over the points the member pays for it: the
point cost less their tier's discount, rounded up as `catalog.pricing.member_point_cost`
does. Lists are ranked by the database (the same arithmetic in SQL), so a catalog of any
size costs the same queries. The tenant's per-kind rates (seed 000's "rates" cache) are the
average value per point, at list price, of its active items that have a cash value; they
are cached under the catalog's own generation, so any catalog write retires them.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db.models import Avg, Count, DecimalField, ExpressionWrapper, F, IntegerField, QuerySet, Value
from django.db.models.functions import Cast, Ceil, NullIf

from catalog import search as catalog_search
from catalog.models import Item
from catalog.pricing import member_point_cost
from core.cache import TenantCache
from tenants.models import Tenant

PLACES = Decimal("0.000001")
_RATIO = DecimalField(max_digits=30, decimal_places=12)


def value_per_point(cash_value: Decimal, points: int) -> Decimal | None:
    """`cash_value` over `points`, to six places; None for an item that costs no points."""
    if points <= 0:
        return None
    return (Decimal(cash_value) / Decimal(points)).quantize(PLACES, rounding=ROUND_HALF_EVEN)


def member_cost_expression(discount_percentage: Decimal):
    """`member_point_cost` in SQL: ceil(point_cost * (100 - discount) / 100). The discount has
    two decimals, so the product and the division by 100 are exact in numeric arithmetic."""
    if not discount_percentage:
        return F("point_cost")
    # In numeric: the parameters are sent as literals (90, 100), which would divide as integers.
    cost = Cast(F("point_cost"), _RATIO)
    remaining = Value(Decimal(100) - Decimal(discount_percentage), output_field=_RATIO)
    exact = ExpressionWrapper(cost * remaining / Value(Decimal(100), output_field=_RATIO), _RATIO)
    return Cast(Ceil(exact), IntegerField())


def value_per_point_expression(discount_percentage: Decimal):
    """The value per point in SQL: NULL for an item that costs the member no points."""
    return ExpressionWrapper(F("cash_value") / NullIf(member_cost_expression(discount_percentage), 0), _RATIO)


def by_value(items: QuerySet[Item], *, discount_percentage: Decimal) -> QuerySet[Item]:
    """`items` best value per point first (free items, which have none, ahead of all); ties go
    to the cheaper item, then by name and id, so the order is the same on every call."""
    cost = member_cost_expression(discount_percentage)
    value = value_per_point_expression(discount_percentage)
    return items.alias(member_cost=cost, value=value).order_by(
        F("value").desc(nulls_first=True), "member_cost", "name", "pk"
    )


@dataclass(frozen=True)
class ValuedItem:
    """An item as one member sees its worth."""

    item: Item
    member_point_cost: int
    value_per_point: Decimal | None
    points_needed: int  # beyond the member's balance; 0 when they can redeem it now


def valued(items, *, discount_percentage: Decimal, balance: int) -> list[ValuedItem]:
    result = []
    for item in items:
        cost = member_point_cost(item.point_cost, discount_percentage)
        result.append(
            ValuedItem(
                item=item,
                member_point_cost=cost,
                value_per_point=value_per_point(item.cash_value, cost),
                points_needed=max(cost - balance, 0),
            )
        )
    return result


# Per-kind rates --------------------------------------------------------------------------


class _CatalogGenerationCache(TenantCache):
    """Entries of its own namespace stored under the catalog's generation: every catalog write
    (services, admin, imports) already retires that generation (catalog.search), item updates
    included, which are UPDATEs that no model signal would see."""

    def __init__(self, namespace: str, ttl, catalog: TenantCache):
        super().__init__(namespace, ttl)
        self.catalog = catalog

    def generation_key(self, tenant_pk) -> str:
        return self.catalog.generation_key(tenant_pk)

    def retire_pending(self, tenant_pk) -> bool:
        return self.catalog.retire_pending(tenant_pk)


rates_cache = _CatalogGenerationCache(
    "insights:rates", ttl=lambda: settings.INSIGHTS_RATES_CACHE_SECONDS, catalog=catalog_search.results_cache
)


@dataclass(frozen=True)
class KindRate:
    kind: str
    value_per_point: Decimal  # average over the kind's items, at list price
    items: int  # how many items the average is over


def kind_rates(*, tenant: Tenant) -> list[KindRate]:
    """The tenant's average value per point by item kind (cached; one query on a miss). Items
    without a cash value are left out: 0.00 is the default, and means "not stated"."""

    def load() -> list[tuple[str, str, int]]:
        rows = (
            Item.objects.filter(tenant=tenant, is_active=True, cash_value__gt=0)
            .values("kind")
            .annotate(rate=Avg(ExpressionWrapper(F("cash_value") / F("point_cost"), _RATIO)), items=Count("pk"))
            .order_by("kind")
        )
        return [
            (row["kind"], str(Decimal(str(row["rate"])).quantize(PLACES, rounding=ROUND_HALF_EVEN)), row["items"])
            for row in rows
        ]

    rows, _ = rates_cache.get_or_load(tenant_pk=tenant.pk, load=load)
    return [KindRate(kind=kind, value_per_point=Decimal(rate), items=items) for kind, rate, items in rows]
