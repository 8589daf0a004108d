"""The tier endpoints' rate limit (seed 004: 100 requests a second per tenant, in Redis).

One counter per tenant and second, `rate_limit:{tenant}:campaign:{epoch second}` (the seed's
`rate_limit:{merchant_id}:campaign` with its window in the name), incremented and given its
60-second expiry by one Lua script, so concurrent requests on any number of processes can
never be let through beyond the limit. A request over the limit is a 429 in the API's error
shape with `Retry-After` (seconds; the window is a second, so 1).

Without Redis (`make run` on its defaults) and while Redis fails, each process counts for
itself: the limit then holds per process, not per deployment. `TIER_RATE_LIMIT_PER_SECOND`
(default 100) sets the limit; 0 turns it off.
"""

import logging
import math
import threading
import time

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from core.api.principals import MemberClient, request_tenant
from tiers import metrics

logger = logging.getLogger(__name__)

KEY_TTL_SECONDS = 60
DEFAULT_LIMIT = 100

# KEYS[1]: the counter of this tenant and second. ARGV[1]: its expiry. Returns the count.
INCR_WITH_EXPIRY = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

# The clock the windows are cut from; tests replace it to put requests in one second.
clock = time.time

_local: dict[tuple[str, int], int] = {}
_local_lock = threading.Lock()


def rate_limit_key(tenant_pk, second: int) -> str:
    return f"rate_limit:{tenant_pk}:campaign:{second}"


def redis_key(key: str) -> str:
    # Beside the cache's keys, under its prefix, as the points limits' counters are.
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:{key}" if prefix else key


def _redis():
    if not settings.REDIS_URL:
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _count_locally(key: str, second: int) -> int:
    with _local_lock:
        for stale in [k for k in _local if k[1] < second - 1]:
            del _local[stale]
        count = _local.get((key, second), 0) + 1
        _local[(key, second)] = count
        return count


def rate_limit_hit(*, tenant_pk, now: float | None = None) -> tuple[bool, int]:
    """Count one request of the tenant; returns whether it is allowed and, if not, the
    seconds until the next window."""
    limit = getattr(settings, "TIER_RATE_LIMIT_PER_SECOND", DEFAULT_LIMIT)
    if not limit or limit <= 0:
        return True, 0
    now = clock() if now is None else now
    second = int(now)
    key = rate_limit_key(tenant_pk, second)
    client = _redis()
    count = None
    if client is not None:
        try:
            count = int(client.eval(INCR_WITH_EXPIRY, 1, redis_key(key), KEY_TTL_SECONDS))
        except Exception as exc:  # noqa: BLE001 - limit in-process rather than fail the request
            metrics.RATE_LIMIT_FALLBACKS.inc()
            logger.warning("tier rate limit counted in-process: Redis failed", extra={"error": str(exc)})
    if count is None:
        count = _count_locally(key, second)
    if count <= limit:
        return True, 0
    return False, max(1, math.ceil(second + 1 - now))


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
