"""Writes of VIP tiers and of the tenant's tier policy.

A tier change bumps the tier's `version`, announces `vip_tier.created` or `vip_tier.updated`
(seed 004: `{eventId, tierId, updatedFields, updatedAt}`) through the outbox in the same
transaction, and retires the cached tiers once it commits (tiers/cache.py).
"""

import logging
from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.api.casing import camel
from rewards.outbox import outbox_write
from tenants.models import Tenant, locale_validator
from tiers import metrics
from tiers.cache import tier_cache_invalidate_on_commit
from tiers.exceptions import TierAlreadyExists, TierNotFound
from tiers.models import Tier, TierPolicy

logger = logging.getLogger(__name__)

TIER_FIELDS = (
    "names",
    "min_points",
    "discount_percentage",
    "free_shipping",
    "exclusive_access",
    "benefits",
    "earn_multiplier",
    "rank",
)
POLICY_FIELDS = ("qualification", "window_months", "downgrade_grace_days")
NAME_MAX_LENGTH = 100
MAX_LOCALES = 50
MAX_BONUS_POINTS = 1_000_000_000

# The benefits as stored (snake_case; the API spells them bonusPoints and customPerks). The
# database checks the same shape (migration 0002); this one also bounds the sizes.
BENEFITS_SCHEMA = {
    "type": "object",
    "properties": {
        "bonus_points": {"type": "integer", "minimum": 0, "maximum": MAX_BONUS_POINTS},
        "custom_perks": {
            "type": "array",
            "maxItems": 50,
            "items": {"type": "string", "minLength": 1, "maxLength": 200},
        },
    },
    "additionalProperties": False,
}
_BENEFITS_VALIDATOR = jsonschema.Draft202012Validator(BENEFITS_SCHEMA)


# Validation ------------------------------------------------------------------------------


def benefits_validate(benefits) -> dict:
    """The benefits, checked against BENEFITS_SCHEMA and completed with their defaults
    (`{"bonus_points": 0, "custom_perks": []}`). Raises ValidationError naming the key."""
    if benefits is None:
        benefits = {}
    errors = sorted(_BENEFITS_VALIDATOR.iter_errors(benefits), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        error = errors[0]
        path = [str(part) for part in error.absolute_path]
        if error.validator == "additionalProperties":
            unknown = sorted(set(benefits) - set(BENEFITS_SCHEMA["properties"]))
            message = f"Unknown benefit {', '.join(camel(str(k)) for k in unknown)}: use bonusPoints and customPerks."
        elif error.validator == "type" and not path:
            message = "Give an object: {bonusPoints, customPerks}."
        elif path and path[0] == "bonus_points":
            message = f"Use a whole number from 0 to {MAX_BONUS_POINTS}."
        elif path and path[0] == "custom_perks":
            message = "Use a list of at most 50 non-empty strings (200 characters at most each)."
        else:  # pragma: no cover - the schema has no other rule
            message = error.message
        field = ".".join(["benefits", *path[:1]])
        raise ValidationError({field: ValidationError(message, code="invalid")})
    bonus_points = benefits.get("bonus_points", 0)
    return {"bonus_points": int(bonus_points), "custom_perks": list(benefits.get("custom_perks", []))}


def names_validate(*, tenant: Tenant, names) -> dict:
    """The names by locale: BCP 47 tags (one spelling each), non-empty names, and one in
    English or in the tenant's default locale. Raises ValidationError."""

    def fail(message: str, code: str = "invalid"):
        raise ValidationError({"names": ValidationError(message, code=code)})

    if not isinstance(names, dict) or not names:
        fail('Give the name per locale, e.g. {"en": "Gold", "ar": "ذهبي"}.')
    if len(names) > MAX_LOCALES:
        fail(f"At most {MAX_LOCALES} locales.")
    cleaned, seen = {}, set()
    for tag, name in names.items():
        try:
            locale_validator(tag)
        except ValidationError:
            fail(f"{tag!r} is not a BCP 47 language tag (e.g. en, ar, pt-BR).", "invalid_locale")
        if tag.lower() in seen:
            fail(f"{tag!r} is given twice.", "duplicate_locale")
        seen.add(tag.lower())
        if not isinstance(name, str) or not name.strip():
            fail(f"The {tag} name must be a non-empty string.", "blank")
        if len(name.strip()) > NAME_MAX_LENGTH:
            fail(f"The {tag} name is longer than {NAME_MAX_LENGTH} characters.", "max_length")
        cleaned[tag] = name.strip()
    required = {"en", (tenant.default_locale or "en").lower()}
    if not seen & required:
        fail(f"Give at least the name in {' or '.join(sorted(required))}.", "default_locale_missing")
    return cleaned


def _decimal(field: str, value) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        # A float has already lost the exact value the tenant meant.
        raise ValidationError({field: ValidationError("Give a Decimal.", code="invalid")})
    return Decimal(value)


def _tier_clean(tier: Tier) -> None:
    tier.discount_percentage = _decimal("discount_percentage", tier.discount_percentage)
    tier.earn_multiplier = _decimal("earn_multiplier", tier.earn_multiplier)
    tier.full_clean(exclude=["tenant", "names", "benefits"], validate_unique=False, validate_constraints=False)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _announce(*, tenant: Tenant, type: str, data: dict) -> str:
    outbox = outbox_write(tenant=tenant, type=type, data=data)
    # As in tiers.qualification: the seed's eventId is the outbox event's own id, unique and
    # what consumers dedupe on.
    outbox.data = {"eventId": str(outbox.event_id), **outbox.data}
    outbox.save(update_fields=["data"])
    return str(outbox.event_id)


# Writes ----------------------------------------------------------------------------------


@transaction.atomic
def tier_create(
    *,
    tenant: Tenant,
    tier_id: str,
    names: dict,
    min_points: int = 0,
    discount_percentage: Decimal | int = 0,
    free_shipping: bool = False,
    exclusive_access: bool = False,
    benefits: dict | None = None,
    earn_multiplier: Decimal | int = 1,
    rank: int = 0,
) -> Tier:
    """Create a tier; announces `vip_tier.created`. A taken tierId is a 409."""
    tier = Tier(
        tenant=tenant,
        tier_id=tier_id,
        names=names_validate(tenant=tenant, names=names),
        min_points=min_points,
        discount_percentage=discount_percentage,
        free_shipping=free_shipping,
        exclusive_access=exclusive_access,
        benefits=benefits_validate(benefits),
        earn_multiplier=earn_multiplier,
        rank=rank,
    )
    _tier_clean(tier)
    try:
        with transaction.atomic():
            tier.save(force_insert=True)
    except IntegrityError as exc:
        if "unique_vip_tiers_tenant_tier_id" not in str(exc):
            raise
        raise TierAlreadyExists(field="tier_id") from exc
    _announce(
        tenant=tenant,
        type="vip_tier.created",
        data={"tierId": tier.tier_id, "version": tier.version, "createdAt": _iso(tier.created_at)},
    )
    tier_cache_invalidate_on_commit(tenant_pk=tenant.pk, tier_id=tier.tier_id)
    transaction.on_commit(lambda: _count_tiers(tenant.pk))
    logger.info("vip tier created", extra={"tenant": str(tenant.pk), "tier_id": tier.tier_id})
    return tier


def _count_tiers(tenant_pk) -> None:
    metrics.TIERS_TOTAL.labels(tenant=str(tenant_pk)).set(Tier.objects.filter(tenant_id=tenant_pk).count())


@transaction.atomic
def tier_update(*, tenant: Tenant, tier: Tier, **fields) -> tuple[Tier, list[str]]:
    """Change a tier (only the fields given: PUT passes them all, PATCH some). If anything
    changed, the version goes up and `vip_tier.updated` names the changed fields. Returns
    the tier as saved and the changed fields (camelCase, as the event names them)."""
    unknown = set(fields) - set(TIER_FIELDS)
    if unknown:
        raise TypeError(f"tier_update() cannot change {sorted(unknown)}")
    current = Tier.objects.select_for_update().filter(tenant=tenant, pk=tier.pk).first()
    if current is None:
        raise TierNotFound(field="tier_id")
    if "names" in fields:
        fields["names"] = names_validate(tenant=tenant, names=fields["names"])
    if "benefits" in fields:
        fields["benefits"] = benefits_validate(fields["benefits"])
    for name in ("discount_percentage", "earn_multiplier"):
        if name in fields:
            fields[name] = _decimal(name, fields[name])
    changed = [name for name in TIER_FIELDS if name in fields and fields[name] != getattr(current, name)]
    if not changed:
        return current, []
    for name in changed:
        setattr(current, name, fields[name])
    _tier_clean(current)
    current.version += 1
    current.updated_at = timezone.now()
    current.save(update_fields=[*changed, "version", "updated_at"])
    updated_fields = [camel(name) for name in changed]
    _announce(
        tenant=tenant,
        type="vip_tier.updated",
        data={
            "tierId": current.tier_id,
            "updatedFields": updated_fields,
            "version": current.version,
            "updatedAt": _iso(current.updated_at),
        },
    )
    tier_cache_invalidate_on_commit(tenant_pk=tenant.pk, tier_id=current.tier_id)
    logger.info(
        "vip tier updated",
        extra={"tenant": str(tenant.pk), "tier_id": current.tier_id, "updated_fields": updated_fields},
    )
    return current, updated_fields


def tier_policy_get(*, tenant: Tenant) -> TierPolicy:
    """The tenant's tier policy, created with the defaults (LIFETIME) on first read."""
    policy, _ = TierPolicy.objects.get_or_create(tenant=tenant)
    return policy


@transaction.atomic
def tier_policy_update(*, tenant: Tenant, **fields) -> TierPolicy:
    """Change how the tenant's members qualify for tiers. Members move on their next
    evaluation (tiers.qualification)."""
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise TypeError(f"tier_policy_update() cannot change {sorted(unknown)}")
    tier_policy_get(tenant=tenant)
    policy = TierPolicy.objects.select_for_update().get(tenant=tenant)
    changed = [name for name in POLICY_FIELDS if name in fields and fields[name] != getattr(policy, name)]
    if not changed:
        return policy
    for name in changed:
        setattr(policy, name, fields[name])
    policy.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    policy.save(update_fields=[*changed, "updated_at"])
    logger.info("tier policy updated", extra={"tenant": str(tenant.pk), "updated_fields": changed})
    return policy
