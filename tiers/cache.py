"""The tier cache (seed 004): `cache:{tenant}:{tierId}` holds one tier (GetVIPTier),
`cache:{tenant}:tiers` the tenant's list (ListVIPTiers), one hour each.

Every entry is tagged with the tenant's generation (`cache:{tenant}:tiers:generation`), which
every committed tier write replaces before the request that made it returns. A reader notes
the generation before it reads the database, so a value read before a write committed is
stored under an old generation and never served: a read that starts after a write returned
sees the write. A transaction that has changed a tenant's tiers and not yet committed reads
them from the database and leaves the cache alone: what it sees may yet be rolled back.

Entries are also tagged with their kind, so a tier whose tierId is "tiers" (it shares its
key with the list) only costs cache misses. Misses (unknown tier ids) are not cached.
"""

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tiers import metrics
from tiers.models import Tier, TierPolicy

logger = logging.getLogger(__name__)

CACHE_TTL = 60 * 60
LIST = "list"
ONE = "tier"
POLICY = "policy"


def list_key(tenant_pk) -> str:
    return f"cache:{tenant_pk}:tiers"


def tier_key(tenant_pk, tier_id: str) -> str:
    return f"cache:{tenant_pk}:{tier_id}"


def policy_key(tenant_pk) -> str:
    # Not a valid tierId (it has a colon), so never a tier's key.
    return f"cache:{tenant_pk}:policy:v1"


def generation_key(tenant_pk) -> str:
    return f"cache:{tenant_pk}:tiers:generation"


def cached(*, tenant_pk, key: str, kind: str, load: Callable[[], Any], store: Callable[[Any], bool] = bool) -> Any:
    """The value under `key` if it was computed in the current generation, else `load()`,
    stored when `store(value)` says so. The cache failing only costs a database read."""
    if invalidation_pending(tenant_pk):
        return load()
    generation_key_ = generation_key(tenant_pk)
    try:
        found = cache.get_many([key, generation_key_])
        generation = found.get(generation_key_)
        if generation is None:
            # Kept without expiry: losing it only retires every entry of the tenant.
            cache.add(generation_key_, uuid.uuid4().hex, timeout=None)
            generation = cache.get(generation_key_)
        entry = found.get(key)
        if (
            isinstance(entry, tuple)
            and len(entry) == 3
            and entry[0] == kind
            and generation is not None
            and entry[1] == generation
        ):
            return entry[2]
    except Exception as exc:  # noqa: BLE001 - the database answers while the cache cannot
        metrics.LOOKUP_ERRORS.labels(type="cache_unavailable").inc()
        logger.warning("tiers read from the database: cache failed", extra={"error": str(exc)})
        return load()
    value = load()
    if generation is not None and store(value):
        try:
            cache.set(key, (kind, generation, value), CACHE_TTL)
        except Exception as exc:  # noqa: BLE001
            logger.warning("tiers not cached", extra={"error": str(exc)})
    return value


def tier_cache_invalidate(*, tenant_pk, tier_ids=()) -> None:
    """Retire every cached tier and list of the tenant. Never raises: it runs after commit,
    where an error would turn a saved change into a failed request."""
    try:
        cache.set(generation_key(tenant_pk), uuid.uuid4().hex, timeout=None)
        cache.delete_many([list_key(tenant_pk), *(tier_key(tenant_pk, tier_id) for tier_id in tier_ids)])
    except Exception as exc:  # noqa: BLE001
        # Readers use the database while the cache is down; one that was only out of reach
        # may serve the old tiers until they expire (CACHE_TTL).
        logger.error("tier cache not invalidated", extra={"tenant": str(tenant_pk), "error": str(exc)})


class _Invalidation:
    """The on-commit callback of a tenant's tier writes. While it waits in the connection's
    queue, the transaction holds uncommitted tier changes."""

    def __init__(self, tenant_pk):
        self.tenant_pk = tenant_pk
        self.tier_ids: set[str] = set()
        self.done = False

    def __call__(self) -> None:
        self.done = True
        tier_cache_invalidate(tenant_pk=self.tenant_pk, tier_ids=sorted(self.tier_ids))


def _pending(tenant_pk) -> _Invalidation | None:
    # A rollback (of the transaction or of a savepoint) drops the callbacks it covers, so a
    # queued callback means exactly: this transaction has written the tenant's tiers.
    for _, callback, _ in transaction.get_connection().run_on_commit:
        if isinstance(callback, _Invalidation) and callback.tenant_pk == tenant_pk and not callback.done:
            return callback
    return None


def invalidation_pending(tenant_pk) -> bool:
    return _pending(tenant_pk) is not None


def tier_cache_invalidate_on_commit(*, tenant_pk, tier_id: str | None = None) -> None:
    """Retire the tenant's cached tiers once the current transaction commits (at once
    outside a transaction)."""
    callback = _pending(tenant_pk)
    if callback is None:
        callback = _Invalidation(tenant_pk)
        if tier_id:
            callback.tier_ids.add(tier_id)
        transaction.on_commit(callback)
    elif tier_id:
        callback.tier_ids.add(tier_id)


@receiver([post_save, post_delete], sender=Tier)
def _tier_written(sender, instance, **kwargs) -> None:
    # The services invalidate themselves; this catches writes that bypass them (the admin,
    # fixtures, a shell), so none can leave a stale tier behind.
    tier_cache_invalidate_on_commit(tenant_pk=instance.tenant_id, tier_id=instance.tier_id)


@receiver([post_save, post_delete], sender=TierPolicy)
def _policy_written(sender, instance, **kwargs) -> None:
    # The earning path reads the policy from the cache (qualification.policy_cached).
    tier_cache_invalidate_on_commit(tenant_pk=instance.tenant_id)
