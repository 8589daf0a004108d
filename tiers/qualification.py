"""Which tier a member is in, and why: qualifying points, upgrades, downgrades, history.

Qualifying points are what the member earned, less what refunds reversed and what expired,
kept per calendar month (`QualifyingPoints`): the tenant's policy counts all of them
(LIFETIME) or the last N months (ROLLING). The earning engine tells us about every change
inside its transaction, with the member's account row locked, so one member's tier moves
one step at a time: an upgrade happens as soon as the member qualifies, and is announced
once (`vip_tier.assigned`). A downgrade waits for re-evaluation (celery beat) and for the
tenant's grace period.
"""

import logging
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from rewards.contributions import PointsChange, TierContext
from rewards.models import Member
from rewards.outbox import outbox_write
from tenants.models import Tenant
from tiers import cache as tier_cache
from tiers.models import ProcessedEvent, QualifyingPoints, Tier, TierAssignment, TierHistory, TierPolicy
from tiers.selectors import assignment_with_points, tier_list

logger = logging.getLogger(__name__)


def _metrics():
    # Defined with the tier API's metrics (seed 004 names); imported lazily so this module
    # does not depend on the order the two are written in.
    try:
        from tiers import metrics
    except ImportError:  # pragma: no cover
        return None
    return metrics


def policy_get(tenant: Tenant) -> TierPolicy:
    policy = TierPolicy.objects.filter(tenant=tenant).first()
    return policy or TierPolicy(tenant=tenant)


POLICY_FIELDS = ("qualification", "window_months", "downgrade_grace_days")


def policy_cached(tenant: Tenant) -> TierPolicy:
    """The tenant's tier policy for the earning path, from the tier cache (retired with the
    tiers on every committed policy or tier write, tiers/cache.py): every purchase reads it."""

    def load():
        policy = policy_get(tenant)
        return tuple(getattr(policy, name) for name in POLICY_FIELDS)

    values = tier_cache.cached(
        tenant_pk=tenant.pk, key=tier_cache.policy_key(tenant.pk), kind=tier_cache.POLICY, load=load, store=bool
    )
    return TierPolicy(tenant=tenant, **dict(zip(POLICY_FIELDS, values, strict=True)))


def _month_of(tenant: Tenant, at: datetime) -> date:
    return at.astimezone(ZoneInfo(tenant.timezone)).date().replace(day=1)


def _window_start(tenant: Tenant, policy: TierPolicy, now: datetime) -> date | None:
    if policy.qualification != TierPolicy.Qualification.ROLLING:
        return None
    month = _month_of(tenant, now)
    index = month.year * 12 + (month.month - 1) - (policy.window_months - 1)
    return date(index // 12, index % 12 + 1, 1)


def qualifying_points(*, member: Member, policy: TierPolicy, now: datetime) -> int:
    rows = QualifyingPoints.objects.filter(member=member)
    start = _window_start(member.tenant, policy, now)
    if start is not None:
        rows = rows.filter(month__gte=start)
    return max(0, rows.aggregate(total=Sum("points"))["total"] or 0)


def tiers_of(tenant: Tenant) -> list[Tier]:
    """The tenant's tiers, lowest first."""
    return list(Tier.objects.filter(tenant=tenant).order_by("min_points", "rank", "pk"))


def tier_qualified(tiers: list[Tier], points: int) -> Tier | None:
    """The highest tier whose minimum the points reach (exactly minPoints qualifies)."""
    qualified = [tier for tier in tiers if tier.min_points <= points]
    return max(qualified, key=lambda t: (t.min_points, t.rank, t.pk)) if qualified else None


def _order(tier: Tier | None) -> tuple:
    return (-1, -1, -1) if tier is None else (tier.min_points, tier.rank, tier.pk)


def _assignment_lock(member: Member, now: datetime) -> TierAssignment:
    assignment = (
        TierAssignment.objects.select_for_update(of=("self",)).select_related("tier").filter(member=member).first()
    )
    if assignment is None:
        try:
            with transaction.atomic():
                TierAssignment.objects.create(member=member, tenant_id=member.tenant_id, tier=None, assigned_at=now)
        except IntegrityError:
            pass
        assignment = TierAssignment.objects.select_for_update(of=("self",)).select_related("tier").get(member=member)
    return assignment


def _assign(
    *, member: Member, assignment: TierAssignment, tier: Tier | None, reason: str, points: int, event_id: str, now
) -> None:
    previous = assignment.tier
    assignment.tier, assignment.assigned_at, assignment.below_since, assignment.evaluated_at = tier, now, None, now
    assignment.save(update_fields=["tier", "assigned_at", "below_since", "evaluated_at"])
    TierHistory.objects.create(
        tenant_id=member.tenant_id,
        member=member,
        from_tier=previous,
        to_tier=tier,
        reason=reason,
        qualifying_points=points,
        event_id=event_id[:128],
        at=now,
    )
    outbox = outbox_write(
        tenant=member.tenant,
        type="vip_tier.assigned",
        member_ref=member.external_ref,
        occurred_at=now,
        data={
            "memberRef": member.external_ref,
            "tierId": tier.tier_id if tier else None,
            "previousTierId": previous.tier_id if previous else None,
            "reason": reason,
            "qualifyingPoints": points,
            "assignedAt": now,
        },
    )
    # The seed's eventId is the outbox event's own id: unique, and what consumers dedupe on.
    outbox.data["eventId"] = str(outbox.event_id)
    outbox.save(update_fields=["data"])
    ProcessedEvent.objects.create(
        tenant_id=member.tenant_id, event_id=str(outbox.event_id), event_type=ProcessedEvent.Type.ASSIGNED
    )
    metrics = _metrics()
    if metrics is not None:
        metrics.ASSIGNMENT_EVENTS.labels(event_type="vip_tier.assigned").inc()
    logger.info(
        "tier assigned",
        extra={"tenant": str(member.tenant_id), "tier_id": tier.tier_id if tier else None, "reason": reason},
    )


def _evaluate(
    *,
    member: Member,
    assignment: TierAssignment,
    now: datetime,
    event_id: str,
    downgrade: bool,
    tiers: list[Tier],
    policy: TierPolicy | None = None,
) -> None:
    tenant = member.tenant
    policy = policy or policy_get(tenant)
    points = qualifying_points(member=member, policy=policy, now=now)
    target = tier_qualified(tiers, points)
    current = assignment.tier
    if _order(target) > _order(current):
        _assign(
            member=member,
            assignment=assignment,
            tier=target,
            reason="upgrade",
            points=points,
            event_id=event_id,
            now=now,
        )
        return
    if _order(target) == _order(current):
        if assignment.below_since is not None:
            assignment.below_since = None
            assignment.save(update_fields=["below_since"])
        return
    # Below the current tier: remember since when, and downgrade only at re-evaluation once
    # the grace period has passed.
    if assignment.below_since is None:
        assignment.below_since = now
        assignment.save(update_fields=["below_since"])
    grace = timedelta(days=policy.downgrade_grace_days)
    if downgrade and now - assignment.below_since >= grace:
        _assign(
            member=member,
            assignment=assignment,
            tier=target,
            reason="downgrade",
            points=points,
            event_id=event_id,
            now=now,
        )


# Hooks the earning engine calls --------------------------------------------------------------


def points_changed(change: PointsChange) -> None:
    """Count earned, reversed and expired points towards tiers, and upgrade at once. Each
    change is counted once (seed 004 `processed_events`)."""
    if change.points == 0:
        return
    member, now = change.member, timezone.now()
    # Plain statements, no savepoints: a repeat is an INSERT that inserts nothing, and the
    # month's row is added to (created if it is the month's first) in one upsert.
    processed = ProcessedEvent._meta.db_table
    qualifying = connection.ops.quote_name(QualifyingPoints._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {connection.ops.quote_name(processed)} (tenant_id, event_id, event_type, processed_at) "  # noqa: S608
            "VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, event_id, event_type) DO NOTHING RETURNING id",
            [_db_uuid(member.tenant_id), f"{change.kind}:{change.event_id}"[:160], ProcessedEvent.Type.EARNING, now],
        )
        if cursor.fetchone() is None:
            return
        cursor.execute(
            f"INSERT INTO {qualifying} (tenant_id, member_id, month, points) VALUES (%s, %s, %s, %s) "  # noqa: S608
            f"ON CONFLICT (member_id, month) DO UPDATE SET points = {qualifying}.points + EXCLUDED.points",
            [
                _db_uuid(member.tenant_id),
                _db_uuid(member.pk),
                _month_of(member.tenant, change.earned_at or now),
                change.points,
            ],
        )
    tiers = tier_list(tenant=member.tenant)  # cached
    if not tiers:
        return
    assignment = _assignment_lock(member, now)
    _evaluate(
        member=member,
        assignment=assignment,
        now=now,
        event_id=change.event_id,
        downgrade=False,
        tiers=tiers,
        policy=policy_cached(member.tenant),
    )


def points_headroom(tenant: Tenant, members: list[Member], now: datetime) -> dict:
    """For the set-based batch path: {member pk: points the member may still earn with nothing
    for `points_changed` to do but count them (None: no bound)}. Left out, so applied one by
    one: members without an assignment row, or below their tier (the next earning may end or
    start a grace period), when the tenant has tiers. Two queries for the whole batch."""
    tiers = tier_list(tenant=tenant)
    if not tiers:
        return {member.pk: None for member in members}
    policy = policy_cached(tenant)
    by_pk = {tier.pk: tier for tier in tiers}
    assignments = dict(
        TierAssignment.objects.filter(member__in=members, below_since__isnull=True).values_list("member_id", "tier")
    )
    rows = QualifyingPoints.objects.filter(member__in=members)
    start = _window_start(tenant, policy, now)
    if start is not None:
        rows = rows.filter(month__gte=start)
    totals = dict(rows.values("member_id").annotate(total=Sum("points")).values_list("member_id", "total"))
    headroom = {}
    for member in members:
        if member.pk not in assignments:
            continue
        current = by_pk.get(assignments[member.pk])
        points = max(0, totals.get(member.pk) or 0)
        if current is not None and points < current.min_points:
            continue
        higher = [tier.min_points for tier in tiers if _order(tier) > _order(current)]
        headroom[member.pk] = min(higher) - points if higher else None
    return headroom


def points_changed_batch(tenant: Tenant, changes: list[PointsChange], crossed: frozenset = frozenset()) -> None:
    """`points_changed` for many earnings at once, for members `points_headroom` cleared: each
    change counted once, and the months' qualifying points added in one upsert. The members
    in `crossed` reached their next tier's minimum with their last change here: they are
    then upgraded as `points_changed` upgrades, their assignments locked in pk order."""
    changes = [change for change in changes if change.points]
    if not changes:
        return
    now = timezone.now()
    processed = connection.ops.quote_name(ProcessedEvent._meta.db_table)
    qualifying = connection.ops.quote_name(QualifyingPoints._meta.db_table)
    keys = {f"{change.kind}:{change.event_id}"[:160]: change for change in changes}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {processed} (tenant_id, event_id, event_type, processed_at) "  # noqa: S608
            f"VALUES {', '.join(['(%s, %s, %s, %s)'] * len(keys))} "
            "ON CONFLICT (tenant_id, event_id, event_type) DO NOTHING RETURNING event_id",
            [v for key in keys for v in (_db_uuid(tenant.pk), key, ProcessedEvent.Type.EARNING, now)],
        )
        fresh = {row[0] for row in cursor.fetchall()}
        months: dict[tuple, int] = {}
        for key, change in keys.items():
            if key in fresh:
                month_key = (change.member.pk, _month_of(tenant, change.earned_at or now))
                months[month_key] = months.get(month_key, 0) + change.points
        if not months:
            return
        cursor.execute(
            f"INSERT INTO {qualifying} (tenant_id, member_id, month, points) "  # noqa: S608
            f"VALUES {', '.join(['(%s, %s, %s, %s)'] * len(months))} "
            f"ON CONFLICT (member_id, month) DO UPDATE SET points = {qualifying}.points + EXCLUDED.points",
            [
                v
                for (member_pk, month), points in months.items()
                for v in (_db_uuid(tenant.pk), _db_uuid(member_pk), month, points)
            ],
        )
    if crossed:
        _upgrade_crossed(tenant, keys, fresh, crossed, now)


def _upgrade_crossed(tenant: Tenant, keys: dict, fresh: set, crossed: frozenset, now: datetime) -> None:
    last = {}  # member pk -> its last change counted here
    for key, change in keys.items():
        if change.member.pk in crossed:
            last[change.member.pk] = (key, change)
    tiers = tier_list(tenant=tenant)
    if not tiers:
        return
    policy = policy_cached(tenant)
    for _pk, (key, change) in sorted(last.items(), key=lambda item: str(item[0])):
        if key not in fresh:
            continue  # counted before: `points_changed` would not act on it either
        _evaluate(
            member=change.member,
            assignment=_assignment_lock(change.member, now),
            now=now,
            event_id=change.event_id,
            downgrade=False,
            tiers=tiers,
            policy=policy,
        )


def _db_uuid(value):
    # Raw SQL takes a UUID as the backend stores it (SQLite: 32 hex digits, no dashes).
    return value if connection.vendor == "postgresql" else value.hex


def member_created(member: Member) -> None:
    """A new member starts in the tenant's default tier (the one 0 points qualify for)."""
    tiers = tiers_of(member.tenant)
    if not tiers:
        return
    now = timezone.now()
    assignment = _assignment_lock(member, now)
    if assignment.tier is None:
        default = tier_qualified(tiers, 0)
        if default is not None:
            _assign(
                member=member, assignment=assignment, tier=default, reason="default", points=0, event_id="", now=now
            )


def _context(tier: Tier | None) -> TierContext:
    if tier is None:
        return TierContext()
    bonus = int((tier.benefits or {}).get("bonus_points") or 0)
    return TierContext(
        code=tier.tier_id,
        multiplier=tier.earn_multiplier,
        bonus_points=bonus,
        discount_percentage=tier.discount_percentage,
    )


def tier_context(tenant: Tenant, member: Member) -> TierContext:
    """The tier provider: the member's tier code, earn multiplier and bonus points."""
    assignment = TierAssignment.objects.select_related("tier").filter(member=member).first()
    return _context(assignment.tier if assignment else None)


def tier_contexts(tenant: Tenant, members: list[Member]) -> dict:
    """The tier provider for many members at once (simulations): one query."""
    assignments = TierAssignment.objects.select_related("tier").filter(member__in=members, tier__isnull=False)
    return {assignment.member_id: _context(assignment.tier) for assignment in assignments}


def tier_ladder(tenant: Tenant) -> list[str]:
    """The tier ladder provider: the tenant's tier ids, lowest first (from the tier cache)."""
    return [tier.tier_id for tier in sorted(tier_list(tenant=tenant), key=_order)]


# Re-evaluation -------------------------------------------------------------------------------


@transaction.atomic
def member_tier_reevaluate(*, member: Member, now: datetime) -> None:
    assignment = _assignment_lock(member, now)
    event_id = f"reevaluation:{now:%Y%m%d%H%M}"
    tiers = tiers_of(member.tenant)
    _evaluate(member=member, assignment=assignment, now=now, event_id=event_id, downgrade=True, tiers=tiers)
    TierAssignment.objects.filter(pk=assignment.pk).update(evaluated_at=now)


def tiers_reevaluate(*, now: datetime, tenant: Tenant | None = None) -> int:
    """Re-evaluate the members who may move down: those already below their tier, and every
    assigned member of tenants whose points roll out of a window. Returns how many."""
    assignments = TierAssignment.objects.filter(tier__isnull=False)
    if tenant is not None:
        assignments = assignments.filter(tenant=tenant)
    rolling = TierPolicy.objects.filter(qualification=TierPolicy.Qualification.ROLLING).values("tenant_id")
    candidates = assignments.filter(below_since__isnull=False) | assignments.filter(tenant_id__in=rolling)
    count = 0
    for member_id in candidates.values_list("member_id", flat=True).distinct().iterator(chunk_size=1000):
        member = Member.objects.select_related("tenant").get(pk=member_id)
        member_tier_reevaluate(member=member, now=now)
        count += 1
    return count


# What the member API shows --------------------------------------------------------------------


def tier_name(tier: Tier, locale: str, default_locale: str) -> str:
    names = tier.names or {}
    for candidate in (locale, (locale or "").split("-")[0], default_locale, "en"):
        if candidate and names.get(candidate):
            return names[candidate]
    return next(iter(names.values()), tier.tier_id)


def member_tier_summary(member: Member) -> dict | None:
    """The member's tier and progress to the next one, or None if the tenant has no tiers."""
    tenant = member.tenant
    tiers = tier_list(tenant=tenant)  # cached: /me reads it on every call
    if not tiers:
        return None
    now = timezone.now()
    policy = policy_cached(tenant)  # retired on every committed policy write (tiers/cache.py)
    assignment = assignment_with_points(member=member, since=_window_start(tenant, policy, now), tiers=tiers)
    tier = assignment.tier if assignment else None
    points = max(0, assignment.points) if assignment else qualifying_points(member=member, policy=policy, now=now)
    locale, fallback = member.locale, tenant.default_locale
    higher = [t for t in tiers if _order(t) > _order(tier)]
    upcoming = min(higher, key=_order) if higher else None
    return {
        "tier_id": tier.tier_id if tier else None,
        "name": tier_name(tier, locale, fallback) if tier else None,
        "qualifying_points": points,
        "assigned_at": assignment.assigned_at if assignment else None,
        "below_since": assignment.below_since if assignment else None,
        "next_tier": None
        if upcoming is None
        else {
            "tier_id": upcoming.tier_id,
            "name": tier_name(upcoming, locale, fallback),
            "min_points": upcoming.min_points,
            "points_to_go": max(0, upcoming.min_points - points),
        },
    }
