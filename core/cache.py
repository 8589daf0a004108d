"""Per-tenant caches retired by writes: every entry is stored with the tenant's generation
(a token under `{namespace}:{tenant}:generation`), and a committed write replaces the
generation, so every entry of the tenant retires at once without being found or deleted one
by one.

A reader reads the generation and the entry in one round trip, and stores what it loads
under the generation it saw first: a value computed from rows that a concurrent write has
since changed is stored under a retired generation and never served, so a read that starts
after a write has committed never sees what the write replaced. A transaction that has
written and not yet committed reads from the database and leaves the cache alone: what it
sees may yet be rolled back. The cache failing costs a database read, never an error.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

# Within `cache_reads_pinned`: what each entry was read as, so that a long unit of work (a
# batch of events) asks the cache once per entry instead of once per use.
_pinned: ContextVar[dict | None] = ContextVar("tenant_cache_pinned", default=None)


@contextmanager
def cache_reads_pinned() -> Iterator[None]:
    """Read each cached entry once for the block and reuse it: one snapshot of the tenant's
    configuration for a whole batch. A write in the block to what an entry caches still
    bypasses the cache (`retire_pending`), as outside."""
    token = _pinned.set({})
    try:
        yield
    finally:
        _pinned.reset(token)


class TenantCache:
    """`namespace` names what is cached (`categories`, `catalog:search`); `ttl()` how long
    entries live, in seconds."""

    def __init__(self, namespace: str, ttl: Callable[[], int]):
        self.namespace = namespace
        self.ttl = ttl

    def generation_key(self, tenant_pk) -> str:
        return f"{self.namespace}:{tenant_pk}:generation"

    def key(self, tenant_pk, parts: dict | None = None) -> str:
        if not parts:
            return f"{self.namespace}:{tenant_pk}:v1"
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return f"{self.namespace}:{tenant_pk}:v1:{digest}"

    def get_or_load(self, *, tenant_pk, load: Callable[[], Any], parts: dict | None = None) -> tuple[Any, bool]:
        """(value, hit): the value for `parts` cached in the tenant's current generation, else
        `load()`, stored for next time."""
        if self.retire_pending(tenant_pk):
            return load(), False
        key, generation_key = self.key(tenant_pk, parts), self.generation_key(tenant_pk)
        pinned = _pinned.get()
        if pinned is not None:
            if key not in pinned:
                pinned[key] = self._get_or_load(key, generation_key, load)
            return pinned[key]
        return self._get_or_load(key, generation_key, load)

    def _get_or_load(self, key: str, generation_key: str, load: Callable[[], Any]) -> tuple[Any, bool]:
        try:
            found = cache.get_many([key, generation_key])
            generation = found.get(generation_key)
            if generation is None:
                # Kept without expiry: losing it only retires the tenant's entries.
                cache.add(generation_key, uuid.uuid4().hex, timeout=None)
                generation = cache.get(generation_key)
            entry = found.get(key)
            if isinstance(entry, tuple) and len(entry) == 2 and generation is not None and entry[0] == generation:
                return entry[1], True
        except Exception as exc:  # noqa: BLE001 - the database answers while the cache cannot
            logger.warning("read from the database: cache failed", extra={"cache": self.namespace, "error": str(exc)})
            return load(), False
        value = load()
        if generation is not None:
            try:
                cache.set(key, (generation, value), self.ttl())
            except Exception as exc:  # noqa: BLE001
                logger.warning("not cached", extra={"cache": self.namespace, "error": str(exc)})
        return value, False

    def retire(self, tenant_pk) -> None:
        """Retire every entry of the tenant. Never raises: it runs after commit, where an
        error would turn a saved change into a failed request."""
        try:
            cache.set(self.generation_key(tenant_pk), uuid.uuid4().hex, timeout=None)
        except Exception as exc:  # noqa: BLE001
            # Readers use the database while the cache is down; one that was only out of reach
            # may serve old entries until they expire (ttl).
            logger.error(
                "cache not retired", extra={"cache": self.namespace, "tenant": str(tenant_pk), "error": str(exc)}
            )

    def retire_on_commit(self, tenant_pk) -> None:
        """Retire the tenant's entries once the current transaction commits (at once outside one)."""
        if not self.retire_pending(tenant_pk):
            transaction.on_commit(_Retirement(self, tenant_pk))

    def retire_pending(self, tenant_pk) -> bool:
        # A rollback (of the transaction or of a savepoint) drops the callbacks it covers, so a
        # queued retirement means exactly: this transaction has written the tenant's data.
        return any(
            isinstance(callback, _Retirement)
            and callback.cache is self
            and callback.tenant_pk == tenant_pk
            and not callback.done
            for _, callback, _ in transaction.get_connection().run_on_commit
        )


class _Retirement:
    """The on-commit callback of a tenant's writes; while it waits in the connection's queue,
    the transaction holds uncommitted changes."""

    def __init__(self, cache_: TenantCache, tenant_pk):
        self.cache, self.tenant_pk, self.done = cache_, tenant_pk, False

    def __call__(self) -> None:
        self.done = True
        self.cache.retire(self.tenant_pk)
