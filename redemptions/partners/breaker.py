"""A circuit breaker per (tenant, partner code), shared by every worker process through Redis.

pybreaker does the counting: `failure_threshold` consecutive failed calls open the circuit;
after `reset_timeout_seconds` the next call is let through as a trial, and its success closes
the circuit (its failure opens it again). A refusal (PartnerRejected) is the partner working,
so it counts as a success. With `REDIS_URL` set, the state lives under
`loyalty:partner:{tenant_id}:{code}:pybreaker:*`; without it (or while Redis cannot be
reached when a breaker is built) it lives in the process. Redis failing later makes pybreaker
treat the circuit as closed: calls go on, unprotected, rather than stop.

The call that trips the circuit raises its own error, not CircuitOpen
(`throw_new_error_on_trip=False`): a PartnerTimeout must keep saying the order may have been
placed. Only a call the breaker refused to make raises CircuitOpen.
"""

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

import pybreaker
import redis

from redemptions.partners.base import CircuitOpen, PartnerRejected, PartnerSettings

logger = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_breakers: dict[tuple, "PartnerCircuitBreaker"] = {}
_memory: dict[tuple[str, str], pybreaker.CircuitMemoryStorage] = {}
_clients: dict[str, redis.Redis] = {}


class PartnerCircuitBreaker(pybreaker.CircuitBreaker):
    def call(self, func: Callable[..., T], *args, **kwargs) -> T:
        # pybreaker holds its process lock for the whole call, so every thread of a worker would
        # queue behind one slow partner. The state lives in shared storage and other processes
        # do not take that lock anyway; state changes still take it.
        return self.state.call(func, *args, **kwargs)

    @property
    def opened_at(self) -> datetime | None:
        return self._state_storage.opened_at


class PartnerRedisStorage(pybreaker.CircuitRedisStorage):
    """pybreaker's Redis storage keeps when the circuit opened in whole seconds, so it could
    half-open up to a second early (with a 1-second reset timeout: at once). This one keeps
    the fraction."""

    def __init__(self, state: str, redis_object: redis.Redis, namespace: str):
        self._client = redis_object
        self._opened_at_key = f"{namespace}:{self.BASE_NAMESPACE}:opened_at"
        super().__init__(state, redis_object, namespace=namespace)

    @property
    def opened_at(self) -> datetime | None:
        try:
            raw = self._client.get(self._opened_at_key)
        except redis.RedisError:
            logger.exception("partner circuit: Redis error reading opened_at")
            return None
        return datetime.fromtimestamp(float(raw), tz=UTC) if raw else None

    @opened_at.setter
    def opened_at(self, now: datetime) -> None:
        try:
            self._client.set(self._opened_at_key, repr(now.timestamp()))
        except redis.RedisError:
            logger.exception("partner circuit: Redis error writing opened_at")


def partner_breaker(settings: PartnerSettings) -> PartnerCircuitBreaker:
    """The breaker guarding calls to the tenant's partner (one object per process)."""
    redis_url = _redis_url()
    key = (settings.tenant_id, settings.code, settings.failure_threshold, settings.reset_timeout_seconds, redis_url)
    with _lock:
        breaker = _breakers.get(key)
    if breaker is not None:
        return breaker
    cacheable = True
    if redis_url:
        try:
            namespace = f"loyalty:partner:{settings.tenant_id}:{settings.code}"
            storage = PartnerRedisStorage(pybreaker.STATE_CLOSED, _redis_client(redis_url), namespace)
        except redis.RedisError as exc:
            # Not cached: the next call tries Redis again.
            logger.warning(
                "partner circuit: Redis unreachable, keeping the state in this process",
                extra={"partner": settings.code, "tenant": settings.tenant_id, "error": str(exc)},
            )
            storage = _memory_storage(settings)
            cacheable = False
    else:
        storage = _memory_storage(settings)
    breaker = PartnerCircuitBreaker(
        fail_max=settings.failure_threshold,
        reset_timeout=settings.reset_timeout_seconds,
        exclude=[PartnerRejected],
        state_storage=storage,
        name=f"{settings.tenant_id}:{settings.code}",
        throw_new_error_on_trip=False,
    )
    if cacheable:
        with _lock:
            breaker = _breakers.setdefault(key, breaker)
    return breaker


def circuit_call(settings: PartnerSettings, func: Callable[[], T]) -> T:
    """`func()` through the partner's breaker; CircuitOpen when the breaker refuses to call."""
    try:
        return partner_breaker(settings).call(func)
    except pybreaker.CircuitBreakerError as exc:
        raise CircuitOpen(f"partner {settings.code}: circuit open") from exc


def circuit_health(settings: PartnerSettings) -> dict:
    """{"state": "closed" | "open" | "half-open", "failures": n, "openedAt": datetime | None}.
    An open circuit stays "open" past its reset timeout until a call tries it."""
    breaker = partner_breaker(settings)
    state = breaker.current_state
    return {
        "state": state,
        "failures": breaker.fail_counter,
        "openedAt": None if state == pybreaker.STATE_CLOSED else breaker.opened_at,
    }


def circuit_reset(settings: PartnerSettings) -> None:
    """Close the circuit now (an operator who knows the partner is back)."""
    partner_breaker(settings).close()


def _redis_url() -> str:
    from django.conf import settings

    if not settings.configured:
        return ""
    return getattr(settings, "REDIS_URL", "") or ""


def _redis_client(url: str) -> redis.Redis:
    with _lock:
        client = _clients.get(url)
        if client is None:
            # Short timeouts: a hung Redis must not hold up a fulfilment for long.
            client = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        return client


def _memory_storage(settings: PartnerSettings) -> pybreaker.CircuitMemoryStorage:
    with _lock:
        return _memory.setdefault(
            (settings.tenant_id, settings.code), pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        )
