"""Spend categories and multipliers: their writes, reads, outbound events, and the cached
configuration the calculation reads.

The configuration is cached per tenant (`categories:{tenant}:v1`, one hour) under a
generation that every committed category or multiplier write replaces (core.cache.TenantCache):
a value computed from rows a concurrent write has since replaced is never served, and a
transaction that has changed a tenant's categories reads them from the database.
"""

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from core.cache import TenantCache
from rewards.calculation import MultiplierRule
from rewards.exceptions import CategoryAlreadyExists, CategoryNotFound, MultiplierNotFound
from rewards.models import Multiplier, SpendCategory
from rewards.outbox import outbox_write
from tenants.models import Tenant

logger = logging.getLogger(__name__)

CACHE_TTL = 60 * 60
MCC_PATTERN = re.compile(r"^[0-9]{4}$")
CATEGORY_FIELDS = ("name", "parent", "mcc_codes")
MULTIPLIER_FIELDS = ("factor", "valid_from", "valid_to", "tier", "cap_points", "cap_period")


@dataclass(frozen=True)
class CategoryConfig:
    categories: dict[str, str | None]  # code -> parent code
    mcc: dict[str, str]  # MCC -> category code
    multipliers: tuple[MultiplierRule, ...]


# Reads --------------------------------------------------------------------------------


def category_list(*, tenant: Tenant) -> QuerySet[SpendCategory]:
    return SpendCategory.objects.filter(tenant=tenant).select_related("parent").order_by("code")


def category_get(*, tenant: Tenant, code: str) -> SpendCategory:
    """The tenant's category with this code; another tenant's is not found."""
    if "\x00" in code:
        # No code holds NUL, and PostgreSQL refuses it in a query (it would be a 500).
        raise CategoryNotFound(field="code")
    category = category_list(tenant=tenant).filter(code=code).first()
    if category is None:
        raise CategoryNotFound(field="code")
    return category


def multiplier_list(*, category: SpendCategory) -> QuerySet[Multiplier]:
    return (
        Multiplier.objects.filter(tenant_id=category.tenant_id, category=category)
        .select_related("category")
        .order_by("id")
    )


def multiplier_get(*, category: SpendCategory, multiplier_id: int) -> Multiplier:
    multiplier = multiplier_list(category=category).filter(pk=multiplier_id).first()
    if multiplier is None:
        raise MultiplierNotFound(field="multiplierId")
    return multiplier


def _config_load(tenant: Tenant) -> CategoryConfig:
    categories, mcc = {}, {}
    for code, parent_code, codes in SpendCategory.objects.filter(tenant=tenant).values_list(
        "code", "parent__code", "mcc_codes"
    ):
        categories[code] = parent_code
        for value in codes or []:
            mcc.setdefault(str(value), code)
    multipliers = tuple(
        MultiplierRule(
            id=m.id,
            category=m.category.code,
            factor=m.factor,
            valid_from=m.valid_from,
            valid_to=m.valid_to,
            tier=m.tier,
            cap_points=m.cap_points,
            cap_period=m.cap_period,
            version=m.version,
        )
        for m in Multiplier.objects.filter(tenant=tenant).select_related("category").order_by("id")
    )
    return CategoryConfig(categories=categories, mcc=mcc, multipliers=multipliers)


def category_config_get(*, tenant: Tenant) -> CategoryConfig:
    """The tenant's categories, MCC map and multipliers, as the calculation reads them."""
    return config_cache.get_or_load(tenant_pk=tenant.pk, load=lambda: _config_load(tenant))[0]


# Cache invalidation --------------------------------------------------------------------

config_cache = TenantCache("categories", ttl=lambda: CACHE_TTL)


def category_cache_invalidate(*, tenant_pk) -> None:
    """Retire every cached configuration of the tenant (never raises)."""
    config_cache.retire(tenant_pk)


def category_cache_invalidate_on_commit(*, tenant_pk) -> None:
    config_cache.retire_on_commit(tenant_pk)


@receiver([post_save, post_delete], sender=SpendCategory)
@receiver([post_save, post_delete], sender=Multiplier)
def _category_written(sender, instance, **kwargs) -> None:
    # The services invalidate themselves; this catches writes that bypass them (fixtures,
    # data migrations, a shell), so none can leave a stale configuration behind.
    category_cache_invalidate_on_commit(tenant_pk=instance.tenant_id)


# Event data: the resources as the API shows them ----------------------------------------


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def category_data(category: SpendCategory) -> dict:
    return {
        "code": category.code,
        "name": category.name,
        "parent": category.parent.code if category.parent_id else None,
        "mccCodes": list(category.mcc_codes),
        "createdAt": _iso(category.created_at),
        "updatedAt": _iso(category.updated_at),
    }


def multiplier_data(multiplier: Multiplier) -> dict:
    return {
        "id": multiplier.pk,
        "category": multiplier.category.code,
        "factor": f"{Decimal(multiplier.factor).quantize(Decimal('0.0001')):f}",
        "validFrom": _iso(multiplier.valid_from),
        "validTo": _iso(multiplier.valid_to),
        "tier": multiplier.tier or None,
        "capPoints": multiplier.cap_points,
        "capPeriod": multiplier.cap_period or None,
        "version": multiplier.version,
        "createdAt": _iso(multiplier.created_at),
        "updatedAt": _iso(multiplier.updated_at),
    }


def _multiplier_event_data(multiplier: Multiplier, action: str) -> dict:
    """A multiplier change is a change of its category (`category.updated`): the category,
    and which multiplier changed and how."""
    return {**category_data(multiplier.category), "multiplier": {**multiplier_data(multiplier), "action": action}}


# Validation ----------------------------------------------------------------------------


def _lock_categories(tenant: Tenant) -> None:
    """Serialise the tenant's category writes: a cycle or a shared MCC takes two rows, so no
    row lock or unique constraint can stop two concurrent writes from making one."""
    if connection.vendor != "postgresql":
        return  # SQLite serialises writers by itself
    key = int.from_bytes(hashlib.sha256(f"categories:{tenant.pk}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _mcc_normalize(mcc_codes) -> list[str]:
    if not isinstance(mcc_codes, (list, tuple)):
        raise ValidationError({"mcc_codes": ValidationError("Give a list of MCCs.", code="invalid")})
    normalized = []
    for value in mcc_codes:
        if not isinstance(value, str) or not MCC_PATTERN.match(value):
            message = f"{value!r} is not an MCC: use four digits, as a string."
            raise ValidationError({"mcc_codes": ValidationError(message, code="invalid_mcc")})
        if value not in normalized:
            normalized.append(value)
    return normalized


def category_validate(
    *, tenant: Tenant, category: SpendCategory | None, parent: SpendCategory | None, mcc_codes
) -> list[str]:
    """Check a category's parent and MCCs against the tenant's other categories (`category`
    is None for a new one); returns the MCCs without duplicates. Raises ValidationError."""
    mcc = _mcc_normalize(mcc_codes)
    others = SpendCategory.objects.filter(tenant=tenant)
    if category is not None and category.pk is not None:
        others = others.exclude(pk=category.pk)
    rows = list(others.values_list("pk", "code", "parent_id", "mcc_codes"))
    if parent is not None:
        if parent.tenant_id != tenant.pk:
            raise ValidationError({"parent": ValidationError("No category of this tenant.", code="does_not_exist")})
        parents = {pk: parent_id for pk, _, parent_id, _ in rows}
        node, seen = parent.pk, set()
        while node is not None and node not in seen:
            if category is not None and node == category.pk:
                message = "A category cannot be its own parent or the parent of one of its ancestors."
                raise ValidationError({"parent": ValidationError(message, code="cycle")})
            seen.add(node)
            node = parents.get(node)
    owner = {value: code for _, code, _, codes in rows for value in codes or []}
    for value in mcc:
        if value in owner:
            message = f"MCC {value} already belongs to category {owner[value]}."
            raise ValidationError({"mcc_codes": ValidationError(message, code="mcc_taken")})
    return mcc


def multiplier_validate(
    *, factor, valid_from: datetime | None, valid_to: datetime | None, cap_points: int | None, cap_period: str
) -> None:
    """The rules no single field can check. Raises ValidationError."""
    if isinstance(factor, bool) or not isinstance(factor, (Decimal, int)):
        # A float has already lost the exact value the tenant meant.
        raise ValidationError({"factor": ValidationError("Give the factor as a Decimal.", code="invalid")})
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise ValidationError({"valid_to": ValidationError("Must be after validFrom.", code="invalid_window")})
    if cap_points is not None and not cap_period:
        message = "A cap needs its period: set both, or neither."
        raise ValidationError({"cap_period": ValidationError(message, code="required_with_cap")})
    if cap_period and cap_points is None:
        message = "A cap period needs its cap: set both, or neither."
        raise ValidationError({"cap_points": ValidationError(message, code="required_with_period")})


# Writes --------------------------------------------------------------------------------


@transaction.atomic
def category_create(
    *, tenant: Tenant, code: str, name: str, parent: SpendCategory | None = None, mcc_codes=()
) -> SpendCategory:
    """Create a spend category; announces `category.created`."""
    category = SpendCategory(tenant=tenant, code=code, name=name, parent=parent, mcc_codes=[])
    category.full_clean(exclude=["tenant", "parent", "mcc_codes"], validate_unique=False, validate_constraints=False)
    _lock_categories(tenant)
    category.mcc_codes = category_validate(tenant=tenant, category=None, parent=parent, mcc_codes=mcc_codes)
    try:
        with transaction.atomic():
            category.save(force_insert=True)
    except IntegrityError as exc:
        raise CategoryAlreadyExists(field="code") from exc
    outbox_write(tenant=tenant, type="category.created", data=category_data(category))
    category_cache_invalidate_on_commit(tenant_pk=tenant.pk)
    return category


@transaction.atomic
def category_update(*, category: SpendCategory, **changes) -> SpendCategory:
    """Change a category's name, parent or MCCs; announces `category.updated` if anything
    changed. Returns the category as saved."""
    unknown = set(changes) - set(CATEGORY_FIELDS)
    if unknown:
        raise TypeError(f"category_update() cannot change {sorted(unknown)}")
    tenant = category.tenant
    _lock_categories(tenant)
    current = SpendCategory.objects.select_related("parent").get(pk=category.pk, tenant=tenant)
    changed = [
        name
        for name in CATEGORY_FIELDS
        if name in changes
        and (changes[name] != current.parent if name == "parent" else changes[name] != getattr(current, name))
    ]
    if not changed:
        return current
    for name in changed:
        setattr(current, name, changes[name])
    current.full_clean(exclude=["tenant", "parent", "mcc_codes"], validate_unique=False, validate_constraints=False)
    current.mcc_codes = category_validate(
        tenant=tenant, category=current, parent=current.parent, mcc_codes=current.mcc_codes
    )
    current.save(update_fields=[*changed, "updated_at"])
    outbox_write(tenant=tenant, type="category.updated", data=category_data(current))
    category_cache_invalidate_on_commit(tenant_pk=tenant.pk)
    return current


@transaction.atomic
def multiplier_create(
    *,
    tenant: Tenant,
    category: SpendCategory,
    factor: Decimal,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    tier: str = "",
    cap_points: int | None = None,
    cap_period: str = "",
) -> Multiplier:
    """Add a multiplier to a category; announces `category.updated`."""
    if category.tenant_id != tenant.pk:
        raise ValidationError({"category": ValidationError("No category of this tenant.", code="does_not_exist")})
    multiplier_validate(
        factor=factor, valid_from=valid_from, valid_to=valid_to, cap_points=cap_points, cap_period=cap_period
    )
    multiplier = Multiplier(
        tenant=tenant,
        category=category,
        factor=factor,
        valid_from=valid_from,
        valid_to=valid_to,
        tier=tier,
        cap_points=cap_points,
        cap_period=cap_period,
    )
    multiplier.full_clean(exclude=["tenant", "category"], validate_unique=False, validate_constraints=False)
    multiplier.save(force_insert=True)
    outbox_write(tenant=tenant, type="category.updated", data=_multiplier_event_data(multiplier, "created"))
    category_cache_invalidate_on_commit(tenant_pk=tenant.pk)
    return multiplier


@transaction.atomic
def multiplier_update(*, multiplier: Multiplier, **changes) -> Multiplier:
    """Change a multiplier; any change makes a new `version` (explanations name the version
    they used) and announces `category.updated`. Returns the multiplier as saved."""
    unknown = set(changes) - set(MULTIPLIER_FIELDS)
    if unknown:
        raise TypeError(f"multiplier_update() cannot change {sorted(unknown)}")
    current = (
        Multiplier.objects.select_for_update(of=("self",)).select_related("tenant", "category").get(pk=multiplier.pk)
    )
    changed = [name for name in MULTIPLIER_FIELDS if name in changes and changes[name] != getattr(current, name)]
    if not changed:
        return current
    for name in changed:
        setattr(current, name, changes[name])
    multiplier_validate(
        factor=current.factor,
        valid_from=current.valid_from,
        valid_to=current.valid_to,
        cap_points=current.cap_points,
        cap_period=current.cap_period,
    )
    current.full_clean(exclude=["tenant", "category"], validate_unique=False, validate_constraints=False)
    current.version += 1
    current.save(update_fields=[*changed, "version", "updated_at"])
    outbox_write(tenant=current.tenant, type="category.updated", data=_multiplier_event_data(current, "updated"))
    category_cache_invalidate_on_commit(tenant_pk=current.tenant_id)
    return current


@transaction.atomic
def multiplier_delete(*, multiplier: Multiplier) -> None:
    """Remove a multiplier (and its cap usage); announces `category.updated`."""
    current = (
        Multiplier.objects.select_for_update(of=("self",))
        .select_related("tenant", "category")
        .filter(pk=multiplier.pk)
        .first()
    )
    if current is None:
        return
    data = _multiplier_event_data(current, "deleted")
    current.delete()
    outbox_write(tenant=current.tenant, type="category.updated", data=data)
    category_cache_invalidate_on_commit(tenant_pk=current.tenant_id)
