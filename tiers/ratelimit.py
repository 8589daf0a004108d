"""The tier endpoints' rate limit (seed 004: 100 requests a second per tenant, in Redis).

One counter per tenant and second, `rate_limit:{tenant}:campaign:{epoch second}` (the seed's
`rate_limit:{merchant_id}:campaign` with its window in the name), counted by the API's one
rate limiter (core/api/ratelimit.py: a Lua script increments it and gives it its expiry), so
concurrent requests on any number of processes can never be let through beyond the limit. A
request over the limit is a 429 in the API's error shape with `Retry-After` (seconds; the
window is a second, so 1). Every request counts, reads as well as writes.

Without Redis (`make run` on its defaults) and while Redis fails, each process counts for
itself: the limit then holds per process, not per deployment. `TIER_RATE_LIMIT_PER_SECOND`
(default 100) sets the limit; 0 turns it off.
"""

import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from core.api import ratelimit as core_ratelimit
from core.api.principals import MemberClient, request_tenant
from tiers import metrics

DEFAULT_LIMIT = 100
SCOPE = "tiers"

# The clock the windows are cut from; tests replace it to put requests in one second.
clock = time.time

# The per-process counters used while Redis fails (shared with every other limit).
_local = core_ratelimit._local
redis_key = core_ratelimit.redis_key


def rate_limit_key(tenant_pk, second: int) -> str:
    return f"rate_limit:{tenant_pk}:campaign:{second}"


def _redis():
    return core_ratelimit.redis_client()


def rate_limit_hit(*, tenant_pk, now: float | None = None) -> tuple[bool, int]:
    """Count one request of the tenant; returns whether it is allowed and, if not, the
    seconds until the next window."""
    limit = getattr(settings, "TIER_RATE_LIMIT_PER_SECOND", DEFAULT_LIMIT)
    if not limit or limit <= 0:
        return True, 0
    now = clock() if now is None else now
    bucket = core_ratelimit.Bucket(
        "tenant", f"rate_limit:{tenant_pk}:campaign", core_ratelimit.Rate(limit=limit, period=1)
    )
    # Refused requests count too (the seed's counter counts every request of the second).
    verdict = core_ratelimit.buckets_hit(buckets=[bucket], scope=SCOPE, now=now, client=_redis(), keep_refused=True)
    if verdict.redis_failed:
        metrics.RATE_LIMIT_FALLBACKS.inc()
    if verdict.allowed:
        return True, 0
    core_ratelimit.THROTTLED.labels(scope=SCOPE, bucket="tenant").inc()
    return False, verdict.retry_after


class TierRateThrottle(BaseThrottle):
    """DRF throttle of the tier endpoints: per tenant, whoever calls for it (API key,
    operator, member app). Runs after authentication, so callers without a tenant have
    already been refused."""

    def allow_request(self, request, view) -> bool:
        user = getattr(request, "user", None)
        tenant = user.tenant if isinstance(user, MemberClient) else request_tenant(request)
        if tenant is None:
            return True
        allowed, self._wait = rate_limit_hit(tenant_pk=tenant.pk)
        return allowed

    def wait(self) -> float | None:
        return getattr(self, "_wait", None) or None
