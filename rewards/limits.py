"""Limits on points issued (seed 001 §3.2), checked and counted atomically.

With Redis, one Lua script checks every counter that applies (tenant and member, daily and
total or windowed) and adds the granted points to all of them, so concurrent earnings can
never pass a limit. Keys follow the seed (`limit:{tenantId}:daily`,
`limit:{tenantId}:{memberId}:daily`, plus `:total` and `:window:{start}`), each expiring at
the end of its period in the tenant's time zone.

PostgreSQL stays the source of truth: a missing counter (a new period, or a Redis that lost
its data) is seeded from the ledger. When Redis cannot be reached, the check runs in the
database instead, serialised per tenant by an advisory lock, so no event is lost and no
limit is exceeded; it is slower, not wrong. Redis never saw the points granted meanwhile, so
once it answers again the counters they should have been added to are dropped and seeded
afresh from the ledger.
"""

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from prometheus_client import Counter

from rewards.models import Account, Member, Transfer
from tenants.models import Tenant
from tenants.selectors import limits_effective

logger = logging.getLogger(__name__)
FALLBACKS = Counter("loyalty_limit_checks_in_database_total", "Limit checks done in PostgreSQL because Redis failed")

# Counters that points granted in the database are missing from. A Redis that was only out of
# reach (not restarted) still holds them, and would let those points be granted twice.
_stale: set[str] = set()
_stale_lock = threading.Lock()

# KEYS: the counters. ARGV: requested, mode ("take" or "peek"), then per key: limit, expire-at (ms, 0 = never),
# seed ("" = unknown). Returns {granted, index of the binding counter or 0} or {-1, missing indexes...}.
CHECK_AND_INCR = """
local requested = tonumber(ARGV[1])
local missing = {}
local values = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not current then
    local seed = ARGV[2 + (i - 1) * 3 + 3]
    if seed == '' then
      table.insert(missing, i)
    else
      redis.call('SET', key, seed)
      local expire_at = tonumber(ARGV[2 + (i - 1) * 3 + 2])
      if expire_at > 0 then redis.call('PEXPIREAT', key, expire_at) end
      current = seed
    end
  end
  values[i] = tonumber(current or 0)
end
if #missing > 0 then
  table.insert(missing, 1, -1)
  return missing
end
local granted = requested
local binding = 0
for i, key in ipairs(KEYS) do
  local headroom = tonumber(ARGV[2 + (i - 1) * 3 + 1]) - values[i]
  if headroom < granted then
    granted = headroom
    binding = i
  end
end
if granted < 0 then granted = 0 end
if granted > 0 and ARGV[2] == 'take' then
  for _, key in ipairs(KEYS) do redis.call('INCRBY', key, granted) end
end
return {granted, binding}
"""

RELEASE = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    local left = redis.call('DECRBY', key, ARGV[1])
    if left < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end
return 1
"""


@dataclass(frozen=True)
class LimitCounter:
    """One limit that applies to an earning: which counter, its cap and its period."""

    key: str
    scope: str  # GLOBAL or USER
    window: str  # daily, total or window
    limit: int
    start: datetime | None  # period start (None: since the beginning)
    end: datetime | None  # period end (None: never)


@dataclass(frozen=True)
class Grant:
    requested: int
    granted: int
    counters: tuple[LimitCounter, ...]
    binding: LimitCounter | None
    source: str  # "redis", "database" or "none"

    def explanation(self) -> list[dict]:
        if self.binding is None or self.granted == self.requested:
            return []
        b = self.binding
        return [
            {
                "type": "limit",
                "scope": b.scope,
                "window": b.window,
                "limit": b.limit,
                "requested": self.requested,
                "granted": self.granted,
            }
        ]


def _local_day_bounds(tenant: Tenant, at: datetime) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tenant.timezone)
    day = at.astimezone(zone).date()
    start = datetime.combine(day, time.min, tzinfo=zone)
    return start, datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)


def _window_bounds(tenant: Tenant, at: datetime, days: int) -> tuple[datetime, datetime]:
    """Fixed windows of `days` days, counted from 1970-01-01 in the tenant's time zone."""
    zone = ZoneInfo(tenant.timezone)
    day = at.astimezone(zone).date()
    index = (day - date(1970, 1, 1)).days // days
    first = date(1970, 1, 1) + timedelta(days=index * days)
    start = datetime.combine(first, time.min, tzinfo=zone)
    return start, datetime.combine(first + timedelta(days=days), time.min, tzinfo=zone)


def counters_for(*, tenant: Tenant, member: Member, at: datetime) -> tuple[LimitCounter, ...]:
    """The counters that limit an earning by this member at this moment."""
    effective = limits_effective(tenant=tenant, member_ref=member.external_ref)
    counters = []
    for scope_key, prefix in (("global", f"limit:{tenant.pk}"), ("user", f"limit:{tenant.pk}:{member.pk}")):
        limit = effective[scope_key]
        if limit.max_per_day is not None:
            start, end = _local_day_bounds(tenant, at)
            counters.append(LimitCounter(f"{prefix}:daily", limit.scope, "daily", limit.max_per_day, start, end))
        if limit.max_total is not None:
            if limit.window_days:
                start, end = _window_bounds(tenant, at, limit.window_days)
                key = f"{prefix}:window:{limit.window_days}:{start.date().isoformat()}"
                counters.append(LimitCounter(key, limit.scope, "window", limit.max_total, start, end))
            else:
                counters.append(LimitCounter(f"{prefix}:total", limit.scope, "total", limit.max_total, None, None))
    return tuple(counters)


def issued_in(*, tenant: Tenant, member: Member | None, start: datetime | None, end: datetime | None) -> int:
    """Points issued by earning (net of reversals) in a period, from the ledger."""
    transfers = Transfer.objects.filter(tenant=tenant, kind__in=[Transfer.Kind.EARN, Transfer.Kind.REVERSAL])
    if start is not None:
        transfers = transfers.filter(created_at__gte=start)
    if end is not None:
        transfers = transfers.filter(created_at__lt=end)
    if member is not None:
        # Earnings credit the member's accounts and reversals debit them: one query per side,
        # each on its account index (an OR of the two sides scans every transfer of the tenant).
        accounts = list(Account.objects.filter(member=member).values_list("pk", flat=True))
        earned = transfers.filter(kind=Transfer.Kind.EARN, credit_account__in=accounts)
        reversed_ = transfers.filter(kind=Transfer.Kind.REVERSAL, debit_account__in=accounts)
        return (earned.aggregate(s=Sum("amount"))["s"] or 0) - (reversed_.aggregate(s=Sum("amount"))["s"] or 0)
    sums = dict(transfers.values_list("kind").annotate(s=Sum("amount")).order_by())
    return (sums.get(Transfer.Kind.EARN) or 0) - (sums.get(Transfer.Kind.REVERSAL) or 0)


def _seed(tenant: Tenant, member: Member, counter: LimitCounter) -> int:
    return issued_in(
        tenant=tenant, member=member if counter.scope == "USER" else None, start=counter.start, end=counter.end
    )


def _redis():
    if not settings.REDIS_URL:
        return None
    from django_redis import get_redis_connection

    return get_redis_connection("default")


def _redis_key(key: str) -> str:
    # Counters live beside the cache; the prefix keeps them apart from cache keys.
    return f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:{key}" if settings.REDIS_URL else key


def _grant_in_redis(client, tenant, member, counters, requested: int, mode: str) -> tuple[int, int]:
    keys = [_redis_key(c.key) for c in counters]
    seeds: dict[int, int] = {}
    for _ in range(3):
        argv: list = [requested, mode]
        for i, counter in enumerate(counters, start=1):
            expire_ms = int(counter.end.timestamp() * 1000) if counter.end else 0
            argv += [counter.limit, expire_ms, seeds.get(i, "")]
        result = client.eval(CHECK_AND_INCR, len(keys), *keys, *argv)
        if int(result[0]) != -1:
            return int(result[0]), int(result[1])
        for index in result[1:]:
            seeds[int(index)] = _seed(tenant, member, counters[int(index) - 1])
    raise RuntimeError("limit counters could not be seeded")


def _mark_stale(keys: list[str]) -> None:
    with _stale_lock:
        _stale.update(keys)


def _drop_stale(client) -> None:
    """Delete the counters database checks have overtaken; raises while Redis is still down."""
    with _stale_lock:
        keys = list(_stale)
    if not keys:
        return
    client.delete(*keys)
    with _stale_lock:
        _stale.difference_update(keys)


def _advisory_lock(tenant: Tenant) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite serialises writers by itself
    key = int.from_bytes(hashlib.sha256(f"limits:{tenant.pk}".encode()).digest()[:8], "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _grant_in_database(tenant, member, counters, requested: int) -> tuple[int, int]:
    _advisory_lock(tenant)
    granted, binding = requested, 0
    for i, counter in enumerate(counters, start=1):
        headroom = counter.limit - _seed(tenant, member, counter)
        if headroom < granted:
            granted, binding = headroom, i
    return max(0, granted), binding


def limits_preseed(*, tenant: Tenant, members: list[Member], at: datetime) -> int:
    """Seed, for many members at once, the member counters that Redis does not hold yet (each
    member's first earning of a period): one Redis round trip to find them, two queries per
    period for their ledger sums, one to set them. Without it each would cost its member
    three queries in `limits_grant`. A counter set meanwhile by someone else is left as it is
    (SET NX), so the result is what `limits_grant` would have seeded. Returns how many."""
    client = _redis()
    if client is None or not members:
        return 0
    wanted: dict[str, tuple[Member, LimitCounter]] = {}
    for member in members:
        for counter in counters_for(tenant=tenant, member=member, at=at):
            if counter.scope == "USER":
                wanted[_redis_key(counter.key)] = (member, counter)
    if not wanted:
        return 0
    try:
        _drop_stale(client)
        keys = list(wanted)
        present = client.pipeline(transaction=False)
        for key in keys:
            present.exists(key)
        missing = [key for key, found in zip(keys, present.execute(), strict=True) if not found]
    except Exception as exc:  # noqa: BLE001 - limits_grant falls back event by event
        logger.warning("limit preseed skipped: Redis failed", extra={"error": str(exc)})
        return 0
    periods: dict[tuple, list[str]] = {}
    for key in missing:
        counter = wanted[key][1]
        periods.setdefault((counter.start, counter.end), []).append(key)
    seeds: dict[str, int] = {}
    for (start, end), keys in periods.items():
        by_member = {wanted[key][0].pk: key for key in keys}
        transfers = Transfer.objects.filter(tenant=tenant)
        if start is not None:
            transfers = transfers.filter(created_at__gte=start)
        if end is not None:
            transfers = transfers.filter(created_at__lt=end)
        earned = dict(
            transfers.filter(kind=Transfer.Kind.EARN, credit_account__member__in=list(by_member))
            .values_list("credit_account__member")
            .annotate(s=Sum("amount"))
            .order_by()
        )
        reversed_ = dict(
            transfers.filter(kind=Transfer.Kind.REVERSAL, debit_account__member__in=list(by_member))
            .values_list("debit_account__member")
            .annotate(s=Sum("amount"))
            .order_by()
        )
        for member_pk, key in by_member.items():
            seeds[key] = (earned.get(member_pk) or 0) - (reversed_.get(member_pk) or 0)
    try:
        setting = client.pipeline(transaction=False)
        for key, seed in seeds.items():
            end = wanted[key][1].end
            if end is not None:
                setting.set(key, seed, nx=True, pxat=int(end.timestamp() * 1000))
            else:
                setting.set(key, seed, nx=True)
        setting.execute()
    except Exception as exc:  # noqa: BLE001 - as above
        logger.warning("limit preseed skipped: Redis failed", extra={"error": str(exc)})
        return 0
    return len(seeds)


def limits_grant(*, tenant: Tenant, member: Member, points: int, at: datetime, peek: bool = False) -> Grant:
    """Grant up to `points` within every limit and count them (unless `peek`). Call inside
    the earning's transaction; if it rolls back, call `limits_release` with the grant."""
    counters = counters_for(tenant=tenant, member=member, at=at)
    if points <= 0 or not counters:
        return Grant(points, max(points, 0), counters, None, "none")
    client = _redis()
    source = "redis"
    try:
        if client is None:
            raise ConnectionError("no Redis configured")
        _drop_stale(client)
        granted, binding = _grant_in_redis(client, tenant, member, counters, points, "peek" if peek else "take")
    except Exception as exc:  # noqa: BLE001 - any Redis failure falls back to the database
        if client is not None:
            logger.warning("limit check in the database: Redis failed", extra={"error": str(exc)})
            FALLBACKS.inc()
        source = "database"
        granted, binding = _grant_in_database(tenant, member, counters, points)
        if client is not None and granted > 0 and not peek:
            # Marked once committed, so a reseed cannot miss these points while they are in flight.
            keys = [_redis_key(c.key) for c in counters]
            transaction.on_commit(lambda: _mark_stale(keys))
    return Grant(points, granted, counters, counters[binding - 1] if binding else None, source)


def limits_release(*, grant: Grant, points: int | None = None) -> None:
    """Give headroom back (a rolled-back earning, a refund). Only counters whose period is
    still current are touched; the database path needs nothing (it reads the ledger)."""
    if grant.source != "redis":
        return
    amount = grant.granted if points is None else points
    client = _redis()
    if client is None or amount <= 0:
        return
    keys = [_redis_key(c.key) for c in grant.counters]
    try:
        client.eval(RELEASE, len(keys), *keys, amount)
    except Exception as exc:  # noqa: BLE001 - the counter is rebuilt from the ledger when it expires
        logger.warning("limit release failed", extra={"error": str(exc)})


def limits_release_for(*, tenant: Tenant, member: Member, points: int, earned_at: datetime, now: datetime) -> None:
    """A refund gives back headroom in the counters of the period the points were earned in,
    if that period is still the current one."""
    # The daily key has no date in it (as the seed names it), so compare periods, not names.
    current = {(c.key, c.start) for c in counters_for(tenant=tenant, member=member, at=now)}
    then = tuple(c for c in counters_for(tenant=tenant, member=member, at=earned_at) if (c.key, c.start) in current)
    if not then:
        return
    limits_release(grant=Grant(points, points, then, None, "redis"), points=points)


@dataclass(frozen=True)
class CounterState:
    """A limit counter as Redis holds it beside what the ledger says it should hold."""

    key: str
    member_id: str | None  # None for the tenant-wide counters
    stored: int
    computed: int


def limit_counters_check(*, tenant: Tenant, now: datetime) -> list[CounterState]:
    """Every limit counter Redis holds for the tenant, with the points the ledger says were
    issued in its period (what `_seed` would start it at). Reads only; for reconciliation.
    An earning in flight has counted its points in Redis before its transfer commits, so a
    counter may run ahead for a moment; a difference that stays is drift."""
    client = _redis()
    if client is None:
        return []
    prefix = _redis_key(f"limit:{tenant.pk}:")
    members = {str(pk): pk for pk in Member.objects.filter(tenant=tenant).values_list("pk", flat=True)}
    states = []
    for raw in client.scan_iter(match=f"{prefix}*", count=500):
        full = raw.decode() if isinstance(raw, bytes) else raw
        parts = full[len(prefix) :].split(":")
        member_id = None
        if parts and parts[0] not in ("daily", "total", "window"):
            member_id, parts = parts[0], parts[1:]
            if member_id not in members:
                continue
        if parts == ["daily"]:
            start, end = _local_day_bounds(tenant, now)
        elif parts == ["total"]:
            start, end = None, None
        elif len(parts) == 3 and parts[0] == "window":
            zone = ZoneInfo(tenant.timezone)
            start = datetime.combine(date.fromisoformat(parts[2]), time.min, tzinfo=zone)
            end = start + timedelta(days=int(parts[1]))
        else:
            continue
        value = client.get(full)
        if value is None:  # expired meanwhile
            continue
        member = Member(pk=members[member_id], tenant=tenant) if member_id else None
        computed = issued_in(tenant=tenant, member=member, start=start, end=end)
        states.append(CounterState(full[len(_redis_key("")) :], member_id, int(value), computed))
    return states
