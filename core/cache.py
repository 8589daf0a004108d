"""Versioned cache keys: every entry of a tenant's namespace carries the tenant's current
version in its key, and a write replaces the version, so all of them retire at once without
being found or deleted one by one.

A reader reads the version before it reads the database. A value computed from rows that a
write has since changed is stored under the old version, which nobody asks for any more, so
a read that starts after a write has committed never sees what the write replaced. The cache
failing costs a database read, never an error.
"""

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from django.db import transaction

logger = logging.getLogger(__name__)

_MISS = object()


class VersionedCache:
    """`namespace` names what is cached (`catalog:search`); `ttl()` how long entries live."""

    def __init__(self, namespace: str, ttl: Callable[[], int]):
        self.namespace = namespace
        self.ttl = ttl

    def version_key(self, tenant_pk) -> str:
        return f"{self.namespace}:{tenant_pk}:version"

    def _version(self, tenant_pk) -> str | None:
        key = self.version_key(tenant_pk)
        version = cache.get(key)
        if version is None:
            # Kept without expiry: losing it only retires the tenant's entries.
            cache.add(key, uuid.uuid4().hex, timeout=None)
            version = cache.get(key)
        return version

    def key(self, tenant_pk, version: str, parts: dict) -> str:
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return f"{self.namespace}:{tenant_pk}:{version}:{digest}"

    def get_or_load(self, *, tenant_pk, parts: dict, load: Callable[[], Any]) -> tuple[Any, bool]:
        """(value, hit): the cached value for `parts` in the tenant's current version, else
        `load()`, stored for next time."""
        try:
            version = self._version(tenant_pk)
            key = self.key(tenant_pk, version, parts) if version else None
            found = cache.get(key, _MISS) if key else _MISS
        except Exception as exc:  # noqa: BLE001 - the database answers while the cache cannot
            logger.warning("cache unavailable", extra={"namespace": self.namespace, "error": str(exc)})
            return load(), False
        if found is not _MISS:
            return found, True
        value = load()
        if key:
            try:
                cache.set(key, value, self.ttl())
            except Exception as exc:  # noqa: BLE001
                logger.warning("not cached", extra={"namespace": self.namespace, "error": str(exc)})
        return value, False

    def retire(self, tenant_pk) -> None:
        """Retire every entry of the tenant. Never raises: it runs after commit, where an
        error would turn a saved change into a failed request."""
        try:
            cache.set(self.version_key(tenant_pk), uuid.uuid4().hex, timeout=None)
        except Exception as exc:  # noqa: BLE001
            # Readers use the database while the cache is down; one that was only out of reach
            # may serve old entries until they expire (ttl).
            logger.error("cache not retired", extra={"namespace": self.namespace, "error": str(exc)})

    def retire_on_commit(self, tenant_pk) -> None:
        """Retire the tenant's entries once the current transaction commits (at once outside one)."""
        transaction.on_commit(lambda: self.retire(tenant_pk))
