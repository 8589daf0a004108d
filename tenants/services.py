import copy
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from core.audit.records import audit_change
from core.exceptions import Conflict
from tenants.models import ApiKey, Limit, Tenant

API_KEY_PREFIX = "lk_"
LAST_USED_RESOLUTION = timedelta(minutes=5)
LIMIT_FIELDS = ("max_per_day", "max_total", "window_days")


@dataclass(frozen=True)
class IssuedApiKey:
    """A freshly made key: `raw` is shown to the caller once and never stored."""

    api_key: ApiKey
    raw: str


def api_key_hash(raw: str) -> str:
    # Keys are 256-bit random tokens, so a plain SHA-256 is enough (no password stretching).
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, tenant: Tenant, name: str = "default") -> IssuedApiKey:
    """Create an API key for the tenant; the raw key is returned once."""
    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(tenant=tenant, name=name, prefix=raw[:10], key_hash=api_key_hash(raw))
    return IssuedApiKey(api_key=api_key, raw=raw)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    """Revoke the key at once; requests using it get 401 from now on."""
    if api_key.revoked_at is None:
        before = copy.copy(api_key)
        now = timezone.now()
        if ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now):
            api_key.revoked_at = now
            # A conditional UPDATE, which the audit log's save signals miss.
            audit_change(before=before, after=api_key)
        else:
            # Revoked by someone else meanwhile: theirs is the entry.
            api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def api_key_touch(*, api_key: ApiKey) -> None:
    """Record use, at most once per few minutes so that reads do not all become writes."""
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def tenant_create(
    *, name: str, slug: str | None = None, limits: dict | None = None, **fields
) -> tuple[Tenant, IssuedApiKey]:
    """Create a tenant with its default limits and its first API key."""
    tenant = Tenant(name=name, slug=slug or _unique_slug(name), **fields)
    # The unique slug is left to the database so that a duplicate is always the 409 below,
    # whether or not it arrives in a race.
    tenant.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            tenant.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict("A tenant with this slug already exists.", field="slug", code="unique") from exc
    # The API sends `global` and `user`; the settings name the scopes GLOBAL and USER.
    limits = {scope.upper(): values for scope, values in (limits or {}).items()}
    for scope, defaults in settings.DEFAULT_TENANT_LIMITS.items():
        values = {**defaults, **(limits.get(scope) or {})}
        Limit.objects.create(tenant=tenant, scope=scope, **{f: values.get(f) for f in LIMIT_FIELDS})
    return tenant, api_key_create(tenant=tenant, name="default")


def limit_upsert(*, tenant: Tenant, scope: str, member_ref: str = "", **values) -> Limit:
    """Create or replace the limit for a scope (and member, for an override)."""
    fields = {f: values.get(f) for f in LIMIT_FIELDS}
    limit, _ = Limit.objects.update_or_create(tenant=tenant, scope=scope, member_ref=member_ref, defaults=fields)
    return limit
