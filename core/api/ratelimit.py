"""Rate limits, counted atomically in Redis: one DRF throttle for the endpoints that move
points or stock, and the counting that the tier endpoints' limiter (tiers/ratelimit.py) shares.

A limit is a fixed window: `N/min` allows N in each calendar minute (the window's start is in
the counter's name, `rate_limit:<scope>:<bucket>:<who>:<window start>`). One Lua script adds
the request to every bucket it counts against (the caller's API key, the member it acts for)
and, if any bucket is then over its limit, takes it back again, so a refused request uses up
nobody's allowance: a member refused does not eat into its API key's, and a client that
retries after `Retry-After` is not punished for having tried. Concurrent requests on any
number of processes can never be let through beyond a limit.

An endpoint opts in with `rate_limit_scope = "<scope>"` on its view; the scope's rates are
`settings.RATE_LIMITS[scope]` (`{"api_key": "600/min", "member": "60/min"}`; a missing,
`None` or `0` rate is no limit) and `RATE_LIMITS_ENABLED` turns them all off. Only writes
(POST, PUT, PATCH, DELETE) count. A refused request is a 429 in the API's error shape
(`code: throttled`) with `Retry-After` in seconds, and is refused before the view runs, so it
changes nothing.

Buckets:
- `api_key`: per API key (an operator signed in to the API counts as one key of their own);
  member tokens do not count here.
- `member`: per member of the tenant, whoever calls for it: the member token's member, or
  the member an API-key call acts for (`memberRef` in the path or the body, or what the view's
  `rate_limit_member_ref(request)` says). A member app and the tenant's backend acting for the
  same member share the bucket.
A view's `rate_limit_amount(request)` may count a request as more than one: a batch of events
counts as its number of events, against the API key's bucket only (it carries many members).

While Redis is unreachable (and without Redis, `make run` on its defaults) each process counts
for itself: a limit then holds per process, not per deployment; this fails open rather than
refusing writes. While Redis fails, every check is counted in
`loyalty_rate_limit_local_checks_total` and logged as a warning; every refusal is counted in
`loyalty_rate_limited_requests_total` (by scope and refusing bucket).
"""

import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from prometheus_client import Counter
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import BaseThrottle

from core.api.principals import ApiClient, MemberClient, operator_tenant

logger = logging.getLogger(__name__)

THROTTLED = Counter(
    "loyalty_rate_limited_requests",
    "Requests refused (429) by a rate limit, by scope and by the bucket that refused them",
    ["scope", "bucket"],
)
LOCAL_CHECKS = Counter(
    "loyalty_rate_limit_local_checks",
    "Rate-limit checks counted in-process because Redis failed",
    ["scope"],
)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "day": 86400}
MAX_MEMBER_REF = 128  # the API's own limit on a memberRef
# Counters outlive their window by this much, so a slow clock on one process still finds its count.
TTL_MARGIN_SECONDS = 60

# KEYS: the counters of this window, one per bucket. ARGV[1]: "1" if a refused request still
# counts in the buckets that refused it (the tier limiter's way), else "0"; then limit, amount
# and expiry (seconds) for each key in turn. Returns the 1-based indexes of the buckets over
# their limit (empty: allowed), having taken the amount back from the buckets it must not stay in.
HIT_BUCKETS = """
local keep_refused = ARGV[1] == '1'
local counts, over = {}, {}
for i, key in ipairs(KEYS) do
  local limit, amount = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  local count = redis.call('INCRBY', key, amount)
  if count == amount then redis.call('EXPIRE', key, ARGV[3 * i + 1]) end
  counts[i] = count
  if count > limit then over[#over + 1] = i end
end
if #over > 0 then
  for i, key in ipairs(KEYS) do
    if not (keep_refused and counts[i] > tonumber(ARGV[3 * i - 1])) then
      redis.call('DECRBY', key, ARGV[3 * i])
    end
  end
end
return over
"""

# The clock the windows are cut from; tests replace it to put requests in one window or the next.
clock = time.time

# The per-process counters used while Redis fails: counter key -> (count, expires at). Ended
# windows are swept at most once a second, so a long outage with many members stays cheap.
_local: dict[str, tuple[int, float]] = {}
_local_lock = threading.Lock()
_local_swept = [0.0]


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # seconds


@dataclass(frozen=True)
class Bucket:
    """One counter a request is counted against: `name` is its kind (api_key, member, tenant)."""

    name: str
    key: str  # without its window
    rate: Rate
    amount: int = 1

    def window(self, now: float) -> int:
        return int(now // self.rate.period) * self.rate.period

    def counter_key(self, now: float) -> str:
        return f"{self.key}:{self.window(now)}"

    def retry_after(self, now: float) -> int:
        return max(1, math.ceil(self.window(now) + self.rate.period - now))


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds, when refused
    refused_by: tuple[Bucket, ...] = ()
    in_process: bool = False  # counted in this process, not in Redis
    redis_failed: bool = False


def rate_parse(value) -> Rate | None:
    """`"600/min"`, `"10/s"`, `"5000/hour"`, `"100000/day"`; None, 0 or `"0/min"` is no limit."""
    if not value:
        return None
    count, _, unit = str(value).partition("/")
    limit = int(count)
    if limit <= 0:
        return None
    unit = unit.strip().lower() or "min"
    if unit not in PERIODS:
        raise ValueError(f"Unknown rate period {unit!r} in {value!r}: use one of {', '.join(PERIODS)}.")
    return Rate(limit, PERIODS[unit])


def redis_key(key: str) -> str:
    # Beside the cache's keys, under its prefix, as the points limits' counters are.
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:{key}" if prefix else key


def redis_client():
    if not settings.REDIS_URL:
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _hit_locally(buckets: list[Bucket], now: float, keep_refused: bool) -> list[int]:
    with _local_lock:
        if abs(now - _local_swept[0]) >= 1:
            _local_swept[0] = now
            for stale in [key for key, (_, expires) in _local.items() if expires <= now]:
                del _local[stale]
        keys = [bucket.counter_key(now) for bucket in buckets]
        counts = []
        for bucket, key in zip(buckets, keys, strict=True):
            count, expires = _local.get(key, (0, 0.0))
            if expires <= now:  # an ended window not swept yet
                count = 0
            counts.append(count + bucket.amount)
            _local[key] = (count + bucket.amount, bucket.window(now) + bucket.rate.period)
        over = [i for i, (bucket, count) in enumerate(zip(buckets, counts, strict=True)) if count > bucket.rate.limit]
        if over:
            for i, (bucket, key) in enumerate(zip(buckets, keys, strict=True)):
                if not (keep_refused and i in over):
                    count, expires = _local[key]
                    _local[key] = (count - bucket.amount, expires)
        return over


_UNSET = object()


def buckets_hit(
    *, buckets: list[Bucket], scope: str, now: float | None = None, client=_UNSET, keep_refused: bool = False
) -> Verdict:
    """Count one request against every bucket at once; refused if any is then over its limit.
    `client` is the Redis connection (default: the cache's; None counts in-process);
    `keep_refused` leaves a refused request counted in the buckets that refused it."""
    if not buckets:
        return Verdict(allowed=True)
    now = clock() if now is None else now
    client = redis_client() if client is _UNSET else client
    over = None
    redis_failed = False
    if client is not None:
        args = ["1" if keep_refused else "0"]
        for bucket in buckets:
            args += [bucket.rate.limit, bucket.amount, bucket.rate.period + TTL_MARGIN_SECONDS]
        keys = [redis_key(bucket.counter_key(now)) for bucket in buckets]
        try:
            over = [int(i) - 1 for i in client.eval(HIT_BUCKETS, len(keys), *keys, *args)]
        except Exception as exc:  # noqa: BLE001 - fail open to a per-process count rather than fail the request
            redis_failed = True
            LOCAL_CHECKS.labels(scope=scope).inc()
            logger.warning("rate limit counted in-process: Redis failed", extra={"scope": scope, "error": str(exc)})
    in_process = over is None
    if over is None:
        over = _hit_locally(buckets, now, keep_refused)
    if not over:
        return Verdict(allowed=True, in_process=in_process, redis_failed=redis_failed)
    refused = tuple(buckets[i] for i in over)
    return Verdict(
        allowed=False,
        retry_after=max(bucket.retry_after(now) for bucket in refused),
        refused_by=refused,
        in_process=in_process,
        redis_failed=redis_failed,
    )


def scope_rates(scope: str) -> dict[str, Rate]:
    """The scope's limits in force, by bucket; empty when off."""
    if not getattr(settings, "RATE_LIMITS_ENABLED", True):
        return {}
    configured = getattr(settings, "RATE_LIMITS", {}).get(scope) or {}
    rates = {name: rate_parse(value) for name, value in configured.items()}
    return {name: rate for name, rate in rates.items() if rate is not None}


def is_rate_limited(view, method: str) -> bool:
    return bool(getattr(view, "rate_limit_scope", None)) and method.upper() not in SAFE_METHODS


def _caller_key(user) -> str | None:
    if isinstance(user, ApiClient):
        return f"key:{user.api_key.pk}"
    if isinstance(user, MemberClient):
        return None
    if operator_tenant(user) is not None:
        return f"operator:{user.pk}"
    return None


def _member_ref(request, view) -> str | None:
    hook = getattr(view, "rate_limit_member_ref", None)
    if hook is not None:
        return hook(request)
    user = request.user
    if isinstance(user, MemberClient):
        return user.member.external_ref
    ref = view.kwargs.get("member_ref") if getattr(view, "kwargs", None) else None
    if ref is None and isinstance(request.data, dict):
        ref = request.data.get("member_ref")
    # Not yet validated: a memberRef the view will refuse (too long, not text) gets no bucket.
    return ref if isinstance(ref, str) and 0 < len(ref) <= MAX_MEMBER_REF else None


def _tenant_pk(user):
    tenant = getattr(user, "tenant", None) or operator_tenant(user)
    return tenant.pk if tenant is not None else None


def request_buckets(request, view, scope: str) -> list[Bucket]:
    """The buckets this request counts against under the scope's limits."""
    rates = scope_rates(scope)
    if not rates:
        return []
    hook = getattr(view, "rate_limit_amount", None)
    amount = max(1, int(hook(request))) if hook is not None else 1
    user = request.user
    buckets = []
    caller = _caller_key(user)
    if "api_key" in rates and caller is not None:
        buckets.append(Bucket("api_key", f"rate_limit:{scope}:api_key:{caller}", rates["api_key"], amount))
    if "member" in rates:
        tenant_pk = _tenant_pk(user)
        ref = _member_ref(request, view) if tenant_pk is not None else None
        if ref is not None:
            buckets.append(Bucket("member", f"rate_limit:{scope}:member:{tenant_pk}:{ref}", rates["member"], amount))
    return buckets


class ScopedRateThrottle(BaseThrottle):
    """The API's default throttle: writes to a view with `rate_limit_scope` count against
    that scope's limits (see the module's docstring). Runs after authentication, so the
    caller is known; anonymous callers have already been refused."""

    def allow_request(self, request, view) -> bool:
        if not is_rate_limited(view, request.method):
            return True
        scope = view.rate_limit_scope
        verdict = buckets_hit(buckets=request_buckets(request, view, scope), scope=scope)
        if verdict.allowed:
            return True
        THROTTLED.labels(scope=scope, bucket=verdict.refused_by[0].name).inc()
        self._wait = verdict.retry_after
        return False

    def wait(self) -> float | None:
        return getattr(self, "_wait", None) or None


def rate_limits_describe(scope: str) -> str:
    """The scope's limits as the API's documentation states them."""
    rates = scope_rates(scope)
    if not rates:
        return f"Rate limited (scope `{scope}`): no limit is configured."
    names = {"api_key": "per API key", "member": "per member"}
    units = {1: "s", 60: "min", 3600: "hour", 86400: "day"}
    parts = [f"{names.get(name, name)} {rate.limit}/{units[rate.period]}" for name, rate in sorted(rates.items())]
    return (
        f"throttled: over a rate limit of scope `{scope}` ({', '.join(parts)}); nothing was changed. "
        "Retry after `Retry-After` seconds."
    )
