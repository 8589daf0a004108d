"""Writes to the catalog: categories, items (optimistic locking on operator edits) and stock,
which moves only by conditional updates, each recorded as a stock movement."""

import copy
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from catalog import search
from catalog.exceptions import (
    CategoryAlreadyExists,
    InvalidReference,
    OutOfStock,
    SkuAlreadyExists,
    StaleVersion,
    StockNotTracked,
)
from catalog.models import Category, Item, Partner, StockMovement
from core.audit.records import audit_change
from rewards import contributions
from tenants.models import Tenant

ITEM_FIELDS = (
    "sku",
    "name",
    "names",
    "description",
    "category",
    "kind",
    "point_cost",
    "cash_value",
    "is_active",
    "is_in_offer_pool",
    "image_url",
    "partner",
    "min_tier",
)
CATEGORY_FIELDS = ("name", "names", "description", "parent", "sort_order", "is_active")
MAX_NAMES = 50


def names_check(names, *, field: str = "names") -> dict:
    """A name per locale: {"ar": "..."} with short, non-empty strings."""
    if not isinstance(names, dict):
        raise ValidationError({field: ["Give an object of locale to name."]})
    if len(names) > MAX_NAMES:
        raise ValidationError({field: [f"At most {MAX_NAMES} locales."]})
    for locale, name in names.items():
        if not isinstance(locale, str) or not 1 <= len(locale) <= 35:
            raise ValidationError({field: ["Locales are language tags such as en or pt-BR."]})
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValidationError({f"{field}.{locale}": ["A name is 1 to 200 characters."]})
    return names


def _code_ref(tenant: Tenant, model, value, *, field: str):
    """The tenant's `model` row named by its code (or given as a row); None for none."""
    if value in (None, ""):
        return None
    if isinstance(value, model):
        found = value if value.tenant_id == tenant.pk else None
    else:
        found = model.objects.filter(tenant=tenant, code=str(value)).first()
    if found is None:
        raise InvalidReference(f"No {field} with this code.", field=field, code=f"{field}_not_found")
    return found


def _category_ref(tenant: Tenant, value) -> Category | None:
    return _code_ref(tenant, Category, value, field="category")


def _partner_ref(tenant: Tenant, value) -> Partner | None:
    return _code_ref(tenant, Partner, value, field="partner")


def _tier_check(tenant: Tenant, tier_id: str) -> str:
    if tier_id and tier_id not in contributions.tier_ladder(tenant):
        raise InvalidReference("No tier with this tierId.", field="minTier", code="tier_not_found")
    return tier_id or ""


def _resolve(tenant: Tenant, fields: dict) -> dict:
    """Turn the codes callers name (category, partner, tier) into rows, checked in the tenant."""
    fields = dict(fields)
    if "category" in fields:
        fields["category"] = _category_ref(tenant, fields["category"])
    if "partner" in fields:
        fields["partner"] = _partner_ref(tenant, fields["partner"])
    if "min_tier" in fields:
        fields["min_tier"] = _tier_check(tenant, fields["min_tier"])
    if "names" in fields:
        fields["names"] = names_check(fields["names"] or {})
    return fields


# Categories ------------------------------------------------------------------------------


@transaction.atomic
def category_create(*, tenant: Tenant, code: str, name: str, **fields) -> Category:
    """A new shelf of the tenant's catalog; `parent` is a category code."""
    parent = _category_ref(tenant, fields.pop("parent", None))
    if parent is not None:
        fields["parent"] = parent
    category = Category(tenant=tenant, code=code, name=name, **fields)
    category.names = names_check(category.names or {})
    category.full_clean(exclude=["tenant", "parent"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            category.save(force_insert=True)
    except IntegrityError as exc:
        raise CategoryAlreadyExists(field="code") from exc
    search.catalog_changed(tenant.pk)
    return category


@transaction.atomic
def category_update(*, category: Category, **fields) -> Category:
    if "parent" in fields:
        parent = _category_ref(category.tenant, fields["parent"])
        ancestor = parent
        while ancestor is not None:
            if ancestor.pk == category.pk:
                raise ValidationError({"parent": ["A category cannot sit under itself."]})
            ancestor = ancestor.parent
        fields["parent"] = parent
    if "names" in fields:
        fields["names"] = names_check(fields["names"] or {})
    for name in CATEGORY_FIELDS:
        if name in fields:
            setattr(category, name, fields[name])
    category.full_clean(exclude=["tenant", "parent"], validate_unique=False, validate_constraints=False)
    category.save(update_fields=[*[n for n in CATEGORY_FIELDS if n in fields], "updated_at"])
    search.catalog_changed(category.tenant_id)
    return category


# Items -----------------------------------------------------------------------------------


def _item_clean(item: Item) -> None:
    item.full_clean(
        exclude=["tenant", "category", "partner", "image", "search_vector"],
        validate_unique=False,
        validate_constraints=False,
    )


@transaction.atomic
def item_create(*, tenant: Tenant, actor: str = "", stock_quantity: int | None = None, **fields) -> Item:
    """A new catalog item; its opening stock (None: unlimited) is recorded as a movement."""
    fields = _resolve(tenant, {name: value for name, value in fields.items() if name in ITEM_FIELDS})
    item = Item(tenant=tenant, stock_quantity=stock_quantity, **fields)
    _item_clean(item)
    try:
        with transaction.atomic():
            item.save(force_insert=True)
    except IntegrityError as exc:
        raise SkuAlreadyExists(field="sku") from exc
    _opening_stock(item=item, quantity=stock_quantity, actor=actor)
    search.catalog_changed(tenant.pk)
    return item


def _opening_stock(*, item: Item, quantity: int | None, reason: str = "", actor: str = "") -> None:
    """The first movement of an item whose stock starts being counted (none for 0 or unlimited)."""
    if quantity:
        StockMovement.objects.create(
            tenant_id=item.tenant_id,
            item=item,
            kind=StockMovement.Kind.INITIAL,
            quantity=quantity,
            stock_after=quantity,
            reason=reason,
            actor=actor,
        )


@transaction.atomic
def item_update(*, item: Item, expected_version: int, fields: dict) -> Item:
    """An operator's edit made on `expected_version` of the item: applied and the version
    moved on, or refused (StaleVersion) if someone changed the item since. Stock is not
    edited here: it moves through stock movements, so an edit never overwrites a reservation."""
    fields = _resolve(item.tenant, {name: value for name, value in fields.items() if name in ITEM_FIELDS})
    candidate = Item(**{f.attname: getattr(item, f.attname) for f in Item._meta.concrete_fields})
    for name, value in fields.items():
        setattr(candidate, name, value)
    _item_clean(candidate)
    # The row as stored (the caller's copy may carry the new values already): if it is not at
    # `expected_version`, the UPDATE below changes nothing and the edit is refused.
    before = Item.objects.filter(pk=item.pk).first()
    try:
        with transaction.atomic():
            updated = Item.objects.filter(pk=item.pk, tenant_id=item.tenant_id, version=expected_version).update(
                **fields, version=F("version") + 1, updated_at=timezone.now()
            )
    except IntegrityError as exc:
        raise SkuAlreadyExists(field="sku") from exc
    if not updated:
        raise StaleVersion(field="version")
    search.catalog_changed(item.tenant_id)
    saved = Item.objects.select_related("category", "partner").get(pk=item.pk)
    # A versioned UPDATE, which the audit log's save signals miss: recorded here, so that the
    # API, the admin and imports each leave one entry.
    audit_change(before=before, after=saved)
    return saved


@transaction.atomic
def item_deactivate(*, item: Item) -> Item:
    """DELETE: the item leaves the catalog (redemptions and history keep pointing at it)."""
    before = copy.copy(item)
    Item.objects.filter(pk=item.pk, tenant_id=item.tenant_id).update(
        is_active=False, version=F("version") + 1, updated_at=timezone.now()
    )
    search.catalog_changed(item.tenant_id)
    item.refresh_from_db()
    # An UPDATE, which the save signals miss; nothing is recorded when it was inactive already.
    audit_change(before=before, after=item)
    return item


# Stock -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StockChange:
    movement: StockMovement | None  # None for an item with unlimited stock
    stock_after: int | None


def _stock_move(
    *,
    tenant: Tenant,
    item_id,
    quantity: int,
    kind: str,
    reason: str = "",
    actor: str = "",
    reference_type: str = "",
    reference_id: str = "",
    untracked_ok: bool,
) -> StockChange:
    """Move an item's stock by `quantity` with one conditional UPDATE (never below zero,
    whatever runs at the same time) and record the movement in the same transaction."""
    tracked = Item.objects.filter(pk=item_id, tenant=tenant, stock_quantity__isnull=False)
    with transaction.atomic():
        guard = tracked.filter(stock_quantity__gte=-quantity) if quantity < 0 else tracked
        if not guard.update(stock_quantity=F("stock_quantity") + quantity):
            if not tracked.exists():
                if untracked_ok and Item.objects.filter(pk=item_id, tenant=tenant).exists():
                    return StockChange(movement=None, stock_after=None)
                raise StockNotTracked(field="quantity")
            raise OutOfStock(field="quantity")
        # The row is ours until commit: this read sees exactly our change.
        stock_after = tracked.values_list("stock_quantity", flat=True).get()
        movement = StockMovement.objects.create(
            tenant=tenant,
            item_id=item_id,
            kind=kind,
            quantity=quantity,
            stock_after=stock_after,
            reason=reason,
            actor=actor,
            reference_type=reference_type,
            reference_id=reference_id,
        )
    if stock_after == 0 or stock_after - quantity == 0:
        # In stock became out of stock or the other way round: "inStock" answers change.
        search.catalog_changed(tenant.pk)
    return StockChange(movement=movement, stock_after=stock_after)


def stock_reserve(
    *, tenant: Tenant, item_id, quantity: int, reference_type: str, reference_id: str, actor: str = ""
) -> StockChange:
    """Take `quantity` for a redemption; OutOfStock if there is not that much left.
    Items with unlimited stock always succeed (and record nothing)."""
    if quantity <= 0:
        raise ValidationError({"quantity": ["Must be at least 1."]})
    return _stock_move(
        tenant=tenant,
        item_id=item_id,
        quantity=-quantity,
        kind=StockMovement.Kind.RESERVE,
        actor=actor,
        reference_type=reference_type,
        reference_id=reference_id,
        untracked_ok=True,
    )


def stock_release(
    *, tenant: Tenant, item_id, quantity: int, reference_type: str, reference_id: str, reason: str = ""
) -> StockChange:
    """Give back what a reservation took (a redemption cancelled or failed)."""
    if quantity <= 0:
        raise ValidationError({"quantity": ["Must be at least 1."]})
    return _stock_move(
        tenant=tenant,
        item_id=item_id,
        quantity=quantity,
        kind=StockMovement.Kind.RELEASE,
        reason=reason,
        reference_type=reference_type,
        reference_id=reference_id,
        untracked_ok=True,
    )


def stock_record(*, tenant: Tenant, item: Item, kind: str, quantity: int, reason: str = "", actor: str = ""):
    """An operator's stock movement: RESTOCK adds (quantity > 0); ADJUST corrects either way
    (a count, damage, loss), never below zero."""
    if kind == StockMovement.Kind.RESTOCK and quantity <= 0:
        raise ValidationError({"quantity": ["A restock adds at least 1."]})
    if kind == StockMovement.Kind.ADJUST and quantity == 0:
        raise ValidationError({"quantity": ["An adjustment changes the stock by at least 1 either way."]})
    if kind not in (StockMovement.Kind.RESTOCK, StockMovement.Kind.ADJUST):
        raise ValidationError({"kind": ["Operators record RESTOCK or ADJUST movements."]})
    return _stock_move(
        tenant=tenant,
        item_id=item.pk,
        quantity=quantity,
        kind=kind,
        reason=reason,
        actor=actor,
        untracked_ok=False,
    )


@transaction.atomic
def stock_track(*, tenant: Tenant, item: Item, quantity: int | None, reason: str = "", actor: str = "") -> Item:
    """Start counting an unlimited item's stock at `quantity`, or (None) stop counting it."""
    if quantity is not None and quantity < 0:
        raise ValidationError({"quantity": ["Stock is never negative."]})
    locked = Item.objects.select_for_update().get(pk=item.pk, tenant=tenant)
    if quantity is None:
        Item.objects.filter(pk=locked.pk).update(stock_quantity=None)
    elif locked.stock_quantity is None:
        Item.objects.filter(pk=locked.pk).update(stock_quantity=quantity)
        _opening_stock(item=locked, quantity=quantity, reason=reason, actor=actor)
    else:
        raise ValidationError({"quantity": ["The stock is already counted; record a movement instead."]})
    search.catalog_changed(tenant.pk)
    locked.refresh_from_db()
    return locked
