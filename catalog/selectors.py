"""Reads of the catalog, always scoped by tenant and by what the viewer may see: a member
sees active items their tier reaches; the tenant's backend and operators see everything
unless they look as a member."""

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Q, QuerySet

from catalog import search
from catalog.exceptions import CategoryNotFound, ItemNotFound
from catalog.models import Category, Item, StockMovement
from catalog.pricing import max_affordable_cost
from core.ids import uuid_or_none
from rewards import contributions
from rewards.selectors import member_balance
from tenants.models import Tenant


@dataclass(frozen=True)
class Viewer:
    """Who looks at the catalog. `member` None: the tenant itself (operators, its backend)."""

    member: object | None = None
    tiers: tuple[str, ...] = ()  # tier ids the member's tier reaches
    tier_code: str = ""  # the member's tier ("" without one)
    discount_percentage: Decimal = Decimal(0)
    balance: int = 0

    @property
    def is_member(self) -> bool:
        return self.member is not None


def viewer_for(*, tenant: Tenant, member=None) -> Viewer:
    """The catalog as `member` sees it (their tier, discount and balance), or as the tenant."""
    if member is None:
        return Viewer()
    tier = contributions.tier_for(tenant, member)
    return Viewer(
        member=member,
        tiers=tuple(contributions.tiers_reached(tenant, member, tier)),
        tier_code=tier.code or "",
        discount_percentage=tier.discount_percentage or Decimal(0),
        balance=member_balance(member=member),
    )


# Categories ------------------------------------------------------------------------------


def category_list(*, tenant: Tenant, viewer: Viewer | None = None) -> QuerySet[Category]:
    categories = Category.objects.filter(tenant=tenant).select_related("parent").order_by("sort_order", "name", "pk")
    if viewer is not None and viewer.is_member:
        categories = categories.filter(is_active=True)
    return categories


def category_get(*, tenant: Tenant, code: str) -> Category:
    if "\x00" in code:
        raise CategoryNotFound(field="code")
    category = category_list(tenant=tenant).filter(code=code).first()
    if category is None:
        raise CategoryNotFound(field="code")
    return category


# Items -----------------------------------------------------------------------------------


def item_visible(*, tenant: Tenant, viewer: Viewer, include_inactive: bool = False) -> QuerySet[Item]:
    """The items `viewer` may see: members only active ones within their tier."""
    items = Item.objects.filter(tenant=tenant).select_related("category", "partner")
    if viewer.is_member:
        items = items.filter(Q(min_tier="") | Q(min_tier__in=viewer.tiers), is_active=True)
    elif not include_inactive:
        items = items.filter(is_active=True)
    return items


def item_filter(
    items: QuerySet[Item],
    *,
    viewer: Viewer,
    category: str | None = None,
    kind: str | None = None,
    min_points: int | None = None,
    max_points: int | None = None,
    in_stock: bool | None = None,
    offer_pool: bool | None = None,
    affordable: bool | None = None,
) -> QuerySet[Item]:
    """The list filters. `category` takes in its subcategories; `affordable` compares the
    member's balance with the price after their tier's discount."""
    if category:
        items = items.filter(Q(category__code=category) | Q(category__parent__code=category))
    if kind:
        items = items.filter(kind=kind)
    if min_points is not None:
        items = items.filter(point_cost__gte=min_points)
    if max_points is not None:
        items = items.filter(point_cost__lte=max_points)
    if in_stock is True:
        items = items.filter(Q(stock_quantity__isnull=True) | Q(stock_quantity__gt=0))
    elif in_stock is False:
        items = items.filter(stock_quantity=0)
    if offer_pool is not None:
        items = items.filter(is_in_offer_pool=offer_pool)
    if affordable is not None and viewer.is_member:
        ceiling = max_affordable_cost(viewer.balance, viewer.discount_percentage)
        if ceiling is not None:
            items = items.filter(point_cost__lte=ceiling) if affordable else items.filter(point_cost__gt=ceiling)
        elif not affordable:
            items = items.none()
    return items


def item_list(*, tenant: Tenant, viewer: Viewer, include_inactive: bool = False, **filters) -> QuerySet[Item]:
    """Cheapest first, then by name."""
    items = item_visible(tenant=tenant, viewer=viewer, include_inactive=include_inactive)
    return item_filter(items, viewer=viewer, **filters).order_by("point_cost", "name", "pk")


def item_get(*, tenant: Tenant, item_id, viewer: Viewer | None = None) -> Item:
    """The tenant's item; another tenant's, or one the member may not see, is not found."""
    pk = uuid_or_none(item_id)
    if pk is None:
        raise ItemNotFound(field="itemId")
    items = item_visible(tenant=tenant, viewer=viewer or Viewer(), include_inactive=True)
    item = items.filter(pk=pk).first()
    if item is None:
        raise ItemNotFound(field="itemId")
    return item


def item_search(
    *, tenant: Tenant, query: str, viewer: Viewer, include_inactive: bool = False, **filters
) -> tuple[list[str], str, bool]:
    """The ids of the items matching `query`, best first, within what `viewer` may see and
    the filters; how they matched ("fulltext" or "similar"); and whether the answer came
    from the cache."""
    items = item_filter(
        item_visible(tenant=tenant, viewer=viewer, include_inactive=include_inactive), viewer=viewer, **filters
    )
    parts = {
        "filters": filters,
        "inactive": include_inactive,
        "member": viewer.is_member,
        "tiers": viewer.tiers,
        "ceiling": max_affordable_cost(viewer.balance, viewer.discount_percentage)
        if viewer.is_member and filters.get("affordable") is not None
        else None,
    }
    return search.search_ids(tenant_pk=tenant.pk, query=query, queryset=items, parts=parts)


def items_by_ids(*, tenant: Tenant, ids: list[str]) -> list[Item]:
    """Items in the order of `ids` (one query)."""
    found = {
        str(item.pk): item
        for item in Item.objects.filter(tenant=tenant, pk__in=ids).select_related("category", "partner")
    }
    return [found[pk] for pk in ids if pk in found]


def stock_movement_list(*, tenant: Tenant, item: Item) -> QuerySet[StockMovement]:
    return StockMovement.objects.filter(tenant=tenant, item=item).order_by("-created_at", "-id")
