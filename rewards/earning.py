"""The earning engine: inbound events in, points out, each event applied at most once.

One database transaction per event: the inbox row (unique per tenant and eventId, so a
concurrent duplicate waits for the first and then replays its result), the calculation
(a pure function of the event and a configuration snapshot), the limit check, the ledger
transfer, the earned lot and the outbox event. A refused event (unknown original, refund
larger than the purchase...) is stored as REJECTED with its error, so a retry gets the
same answer.
"""

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, connection, transaction
from django.db.models import Sum
from django.utils import timezone
from prometheus_client import Counter

from core.api.casing import camel
from core.exceptions import Conflict, DomainError, Unprocessable
from rewards.calculation import Calculation, Snapshot, best_multiplier, calculate, event_lines, resolve_category
from rewards.categories import category_config_get
from rewards.contributions import (
    EventRetry,
    IncentiveContext,
    PointsChange,
    RefundContext,
    TierContext,
    incentives_for,
    incentives_preview,
    points_changed,
    refund_applied,
    tier_for,
)
from rewards.exceptions import MemberAlreadyExists
from rewards.ledger import points_transfer, system_account_get
from rewards.limits import Grant, limits_grant, limits_release, limits_release_for
from rewards.lots import expiry_for, lot_open, lots_take
from rewards.models import Account, EarnedLot, InboundEvent, Member, MultiplierUsage, Transfer
from rewards.outbox import outbox_write
from rewards.services import member_create
from tenants.models import Tenant

TRANSACTION_CREATED = "transaction.created"
TRANSACTION_REFUNDED = "transaction.refunded"
MEMBER_CREATED = "member.created"
ACTION = "action"
EVENT_TYPES = (TRANSACTION_CREATED, TRANSACTION_REFUNDED, MEMBER_CREATED, ACTION)

EVENTS = Counter("loyalty_events_total", "Inbound events by type and outcome", ["type", "outcome"])
POINTS_AWARDED = Counter("loyalty_points_awarded_total", "Points awarded by the earning engine")


class EventConflict(Conflict):
    default_code = "event_id_reused"
    default_message = "This eventId was already used for a different event."


class CurrencyMismatch(Unprocessable):
    default_code = "currency_mismatch"
    default_message = "The event's currency is not the tenant's currency."


class UnknownOriginal(Unprocessable):
    default_code = "unknown_original_event"
    default_message = "No applied transaction.created event has this originalEventId."


class RefundExceedsOriginal(Unprocessable):
    default_code = "refund_exceeds_original"
    default_message = "Refunds would exceed the original transaction's amount."


@dataclass(frozen=True)
class EventOutcome:
    """What the API answers: 201 applied, 200 a replay, or the stored error's status."""

    status_code: int
    body: dict
    replayed: bool
    event: InboundEvent | None = None


class _DryRun(Exception):
    """Unwinds a dry run's transaction, carrying its result out."""

    def __init__(self, result: dict):
        self.result = result


def payload_hash(event: dict) -> str:
    canonical = json.dumps(event, sort_keys=True, cls=DjangoJSONEncoder, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def event_ingest(*, tenant: Tenant, event: dict, dry_run: bool = False) -> EventOutcome:
    """Apply one validated inbound event (snake_case keys) once; replay it if seen before."""
    # Hashed as sent: a retry without occurredAt must match the first try, whose receipt time differs.
    digest = payload_hash(event)
    if event.get("occurred_at") is None:
        event = {**event, "occurred_at": timezone.now()}
    if dry_run:
        return _dry_run(tenant=tenant, event=event)
    grants: list[Grant] = []
    try:
        with transaction.atomic():
            inbox = inbox_new(tenant=tenant, event=event, digest=digest)
            if not _inbox_claim(inbox):
                existing = InboundEvent.objects.get(tenant=tenant, event_id=event["event_id"])
                if existing.payload_hash != digest:
                    raise EventConflict(field="eventId") from None
                EVENTS.labels(type=event["type"], outcome="duplicate").inc()
                return _outcome(existing, replayed=True)
            _apply_claimed(tenant=tenant, inbox=inbox, event=event, grants=grants)
    except BaseException:
        for grant in grants:
            limits_release(grant=grant)
        raise
    EVENTS.labels(type=event["type"], outcome=inbox.status.lower()).inc()
    return _outcome(inbox, replayed=False)


def inbox_new(*, tenant: Tenant, event: dict, digest: str) -> InboundEvent:
    """The event's inbox row, not saved: applied until its handler says otherwise."""
    return InboundEvent(
        tenant=tenant,
        event_id=event["event_id"],
        type=event["type"],
        member_ref=event.get("member_ref") or "",
        occurred_at=event["occurred_at"],
        payload=event,
        payload_hash=digest,
        status=InboundEvent.Status.APPLIED,
        amount=event.get("amount"),
    )


class SlowLane(Exception):
    """Raised by the set-based batch path (`rewards.batch`) before it writes anything, for an
    event it cannot apply with the batch's shared writes: the event is applied on its own."""


def _apply_claimed(*, tenant: Tenant, inbox: InboundEvent, event: dict, grants: list[Grant]) -> None:
    """Apply an event whose inbox row this transaction just inserted, and store its result:
    applied, or refused (REJECTED, with the error, its changes rolled back)."""
    try:
        result = _handle(tenant=tenant, inbox=inbox, event=event, grants=grants)
    except DomainError as exc:
        for grant in grants:
            limits_release(grant=grant)
        grants.clear()
        inbox.status = InboundEvent.Status.REJECTED
        result = _rejection(exc)
    inbox.result = result
    inbox.save(update_fields=["status", "result", "points", "original", "member_ref", "amount"])


def _rejection(exc: DomainError) -> dict:
    return {
        "status_code": exc.status_code,
        "error": {"code": exc.code, "detail": exc.message, "attr": camel(exc.field) if exc.field else None},
    }


def _inbox_claim(inbox: InboundEvent) -> bool:
    """Insert the event's inbox row, unless the tenant already has its eventId: one statement
    (`ON CONFLICT DO NOTHING`), so no savepoint is needed to survive the duplicate. A first try
    still in flight makes this wait for its commit or rollback, as a plain INSERT would."""
    meta, quote = InboundEvent._meta, connection.ops.quote_name
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    values = [f.get_db_prep_save(f.pre_save(inbox, True), connection) for f in fields]
    # Names from the model, every value a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING {quote(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    inbox.pk = row[0]
    inbox._state.adding, inbox._state.db = False, "default"
    return True


def _handle(*, tenant: Tenant, inbox: InboundEvent, event: dict, grants: list[Grant]) -> dict:
    """The event's handler in a savepoint. A provider that finds, at the end, a campaign's
    budget spent by concurrent events (EventRetry) has the attempt rolled back and the event
    applied again knowing it. Each retry adds a campaign that is out of budget for good in
    this event, so there are at most as many retries as budgeted campaigns."""
    exhausted: frozenset = frozenset()
    while True:
        try:
            with transaction.atomic():
                return HANDLERS[event["type"]](
                    tenant=tenant, inbox=inbox, event=event, grants=grants, exhausted=exhausted
                )
        except EventRetry as retry:
            for grant in grants:
                limits_release(grant=grant)
            grants.clear()
            if retry.exhausted <= exhausted:
                raise RuntimeError("A campaign known to be out of budget asked for a retry.") from retry
            exhausted |= retry.exhausted


def _outcome(inbox: InboundEvent, *, replayed: bool) -> EventOutcome:
    if inbox.status == InboundEvent.Status.REJECTED:
        error = inbox.result["error"]
        body = {"type": "client_error", "errors": [error]}
        return EventOutcome(inbox.result.get("status_code", 422), body, replayed, inbox)
    return EventOutcome(200 if replayed else 201, inbox.result, replayed, inbox)


def _dry_run(*, tenant: Tenant, event: dict) -> EventOutcome:
    """Everything a real event would do, computed and then rolled back; limits are only read."""
    inbox = InboundEvent(
        tenant=tenant,
        event_id=event["event_id"],
        type=event["type"],
        member_ref=event.get("member_ref") or "",
        occurred_at=event["occurred_at"],
        payload=event,
        amount=event.get("amount"),
    )
    try:
        with transaction.atomic():
            result = HANDLERS[event["type"]](tenant=tenant, inbox=inbox, event=event, grants=[], dry_run=True)
            raise _DryRun(result)
    except _DryRun as done:
        return EventOutcome(200, {**done.result, "dryRun": True}, replayed=False)
    except DomainError as exc:
        error = {"code": exc.code, "detail": exc.message, "attr": camel(exc.field) if exc.field else None}
        return EventOutcome(exc.status_code, {"type": "client_error", "errors": [error]}, replayed=False)


# Members ------------------------------------------------------------------------------


def member_get_or_create(*, tenant: Tenant, member_ref: str, locale: str = "", attributes=None) -> tuple[Member, bool]:
    """Events enrol members they name; two events racing to enrol the same one both get it."""
    member = Member.objects.filter(tenant=tenant, external_ref=member_ref).first()
    if member is not None:
        member.tenant = tenant  # the caller's: what follows reads member.tenant without a query
        return member, False
    try:
        with transaction.atomic():
            return member_create(tenant=tenant, external_ref=member_ref, locale=locale, attributes=attributes), True
    except MemberAlreadyExists:
        return Member.objects.get(tenant=tenant, external_ref=member_ref), False


def _member_account_lock(member: Member, kind: str = Account.Kind.MEMBER) -> Account:
    """The member's account, row-locked: one member's earnings apply one at a time."""
    account = Account.objects.select_for_update().filter(member=member, kind=kind).first()
    if account is None:
        with transaction.atomic():
            try:
                account = Account.objects.create(tenant_id=member.tenant_id, member=member, kind=kind, balance=0)
            except IntegrityError:
                account = None
        account = account or Account.objects.select_for_update().get(member=member, kind=kind)
    return account


def _member_and_account_lock(*, tenant: Tenant, member_ref: str, dry_run: bool) -> tuple[Member, Account | None]:
    """The event's member (enrolled if new) and, unless a dry run, its account row locked. A
    known member costs one query for both: the account row, locked, joined to its member."""
    if not dry_run:
        account = (
            Account.objects.select_for_update(of=("self",))
            .select_related("member")
            .filter(kind=Account.Kind.MEMBER, member__tenant=tenant, member__external_ref=member_ref)
            .first()
        )
        if account is not None:
            member = account.member
            member.tenant = tenant  # the caller's: what follows reads member.tenant without a query
            return member, account
    member, _ = member_get_or_create(tenant=tenant, member_ref=member_ref)
    return member, None if dry_run else _member_account_lock(member)


# Earning ------------------------------------------------------------------------------


def _period_start(tenant: Tenant, at: datetime, period: str) -> date:
    day = at.astimezone(ZoneInfo(tenant.timezone)).date()
    if period == "WEEK":
        return day - timedelta(days=day.weekday())
    if period == "MONTH":
        return day.replace(day=1)
    return day


def _snapshot(
    *, tenant: Tenant, member: Member, tier: TierContext, lines, occurred_at, now: datetime, batch=None
) -> Snapshot:
    config = category_config_get(tenant=tenant)
    snapshot = Snapshot(
        earn_rate=tenant.earn_rate,
        rounding=tenant.rounding,
        categories=config.categories,
        mcc=config.mcc,
        multipliers=config.multipliers,
        tier=tier.code,
        tier_multiplier=tier.multiplier,
        tier_bonus=tier.bonus_points,
    )
    # Only the capped multipliers this event's lines would use need their usage read: most
    # purchases touch none, and then cost no query for it.
    used = {
        best_multiplier(snapshot, resolve_category(snapshot, line.category, line.mcc), occurred_at) for line in lines
    }
    capped = [m for m in used if m is not None and m.cap_points is not None and m.cap_period]
    if not capped:
        return snapshot
    cap_used = {rule.id: 0 for rule in capped}
    periods = {rule.id: _period_start(tenant, now, rule.cap_period) for rule in capped}
    if batch is not None:
        cap_used = {rule_id: batch.cap_used(member, rule_id, period) for rule_id, period in periods.items()}
        return replace(snapshot, cap_used=cap_used)
    rows = MultiplierUsage.objects.filter(
        member=member, multiplier_id__in=list(periods), period_start__in=set(periods.values())
    ).values_list("multiplier_id", "period_start", "extra_points")
    for multiplier_id, period_start, extra in rows:
        if periods.get(multiplier_id) == period_start:
            cap_used[multiplier_id] = extra
    return replace(snapshot, cap_used=cap_used)


def _record_cap_usage(
    *, tenant: Tenant, member: Member, calc: Calculation, snapshot: Snapshot, now: datetime, batch=None
):
    rules = {m.id: m for m in snapshot.multipliers}
    for multiplier_id, extra in calc.multiplier_extra.items():
        rule = rules[multiplier_id]
        if rule.cap_points is None or not rule.cap_period or extra <= 0:
            continue
        if batch is not None:
            batch.cap_add(member, multiplier_id, _period_start(tenant, now, rule.cap_period), extra)
            continue
        # One upsert (the row may not exist yet this period); the member's account lock
        # orders one member's events, the increment never loses another's.
        table = connection.ops.quote_name(MultiplierUsage._meta.db_table)
        sql = (
            f"INSERT INTO {table} (tenant_id, multiplier_id, member_id, period_start, extra_points) "  # noqa: S608
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (multiplier_id, member_id, period_start) "
            f"DO UPDATE SET extra_points = {table}.extra_points + EXCLUDED.extra_points"
        )
        period_start = _period_start(tenant, now, rule.cap_period)
        with connection.cursor() as cursor:
            cursor.execute(sql, [_db_uuid(tenant.pk), multiplier_id, _db_uuid(member.pk), period_start, extra])


def _db_uuid(value):
    # Raw SQL takes a UUID as the backend stores it (SQLite: 32 hex digits, no dashes).
    return value if connection.vendor == "postgresql" else value.hex


def _award(
    *,
    tenant: Tenant,
    member: Member,
    inbox: InboundEvent,
    points: int,
    explanation: dict,
    grants: list[Grant],
    now: datetime,
    dry_run: bool,
    base_points: int = 0,
    incentives: tuple = (),
    account: Account | None = None,
    batch=None,
) -> dict:
    """Check the limits and credit what they allow: pending first if the tenant holds points.
    When the limits cut the award, the base points are credited first, then the incentives
    in order; each incentive's provider is told what it actually got."""
    grant = limits_grant(tenant=tenant, member=member, points=points, at=now, peek=dry_run)
    grants.append(grant)
    if batch is not None and grant.source == "database":
        # Counted from the ledger, which lacks the batch's points not yet written.
        raise SlowLane("limits checked in the database")
    awarded = grant.granted
    explanation = {
        **explanation,
        "capsHit": [*explanation.get("capsHit", []), *grant.explanation()],
        "awardedPoints": awarded,
    }
    pending = tenant.pending_days > 0
    result = {
        "event_id": inbox.event_id,
        "type": inbox.type,
        "member_ref": member.external_ref,
        "points": awarded,
        "pending": pending and awarded > 0,
        "transfer_id": None,
        "explanation": explanation,
    }
    inbox.points = awarded
    if awarded <= 0 or dry_run:
        _incentives_settle(incentives, awarded=awarded, base_points=base_points, transfer_id=None)
        return result
    if batch is not None:
        transfer_id = batch.reserve(member=member, points=awarded)
        # Budgets are charged here, last, as below; an EventRetry leaves nothing in the batch.
        _incentives_settle(incentives, awarded=awarded, base_points=base_points, transfer_id=transfer_id)
        batch.credit(
            member=member,
            account=account,
            points=awarded,
            inbox=inbox,
            explanation=explanation,
            now=now,
            transfer_id=transfer_id,
        )
        POINTS_AWARDED.inc(awarded)
        result["transfer_id"] = transfer_id
        return result
    if pending or account is None:
        account = _member_account_lock(member, Account.Kind.PENDING if pending else Account.Kind.MEMBER)
    transfer = points_transfer(
        tenant=tenant,
        debit=system_account_get(tenant=tenant, kind=Account.Kind.ISSUANCE),
        credit=account,
        amount=awarded,
        kind=Transfer.Kind.EARN,
        idempotency_key=f"event:{inbox.event_id}",
        reason=inbox.type,
        reference_type="event",
        reference_id=inbox.event_id,
        explanation=explanation,
        known_new=True,  # the inbox row just inserted is this event's: no transfer has its key yet
    ).transfer
    lot_open(
        transfer=transfer,
        member=member,
        pending_until=now + timedelta(days=tenant.pending_days) if pending else None,
        expires_at=expiry_for(tenant=tenant, earned_at=now),
    )
    outbox_write(
        tenant=tenant,
        type="points.credited",
        member_ref=member.external_ref,
        data={
            "memberRef": member.external_ref,
            "points": awarded,
            "pending": pending,
            "transferId": str(transfer.pk),
            "eventId": inbox.event_id,
            "balanceAfter": transfer.credit_balance_after,
        },
    )
    points_changed(PointsChange(tenant, member, awarded, "earn", inbox.event_id))
    POINTS_AWARDED.inc(awarded)
    result["transfer_id"] = str(transfer.pk)
    _incentives_settle(incentives, awarded=awarded, base_points=base_points, transfer_id=str(transfer.pk))
    return result


def _incentives_settle(incentives, *, awarded: int, base_points: int, transfer_id: str | None) -> None:
    left = max(0, awarded - min(awarded, base_points))
    for incentive in incentives:
        given = min(max(incentive.points, 0), left)
        left -= given
        if incentive.settle is not None:
            incentive.settle(given, transfer_id)


def _transaction_created(*, tenant, inbox, event, grants, dry_run=False, exhausted=frozenset(), batch=None) -> dict:
    """A purchase. `batch` (rewards.batch) supplies the member, locked account and tier it read
    for the whole batch, and takes the ledger writes to make them with the batch's."""
    if event["currency"] != tenant.currency:
        raise CurrencyMismatch(field="currency")
    if batch is not None:
        member, account, tier = batch.member_state(event["member_ref"])
    else:
        member, account = _member_and_account_lock(tenant=tenant, member_ref=event["member_ref"], dry_run=dry_run)
    if not member.is_active:
        raise Unprocessable("The member is not active.", field="memberRef", code="member_inactive")
    now = timezone.now()
    if batch is None:
        tier = tier_for(tenant, member)  # read once: the snapshot and the campaigns' conditions share it
    lines = event_lines(
        amount=event["amount"], category=event.get("category"), mcc=event.get("mcc"), line_items=event.get("line_items")
    )
    snapshot = _snapshot(
        tenant=tenant, member=member, tier=tier, lines=lines, occurred_at=event["occurred_at"], now=now, batch=batch
    )
    base = calculate(lines=lines, occurred_at=event["occurred_at"], snapshot=snapshot)
    # Campaigns see what the purchase earns on its own (a "double points" campaign doubles it).
    context = IncentiveContext(
        base_points=base.explanation["basePoints"],
        now=now,
        dry_run=dry_run,
        tier=tier,
        exhausted=exhausted,
        batch=batch,
    )
    if batch is not None:
        previewed = incentives_preview(tenant, member, event, context)
        if previewed is None:
            # A campaign gives something: it hands the batch what it writes, or makes this
            # event's own rows in a savepoint the batch rolls back if the event leaves its lane.
            previewed = incentives_for(tenant, member, event, context)
        incentives = tuple(previewed)
    else:
        incentives = tuple(incentives_for(tenant, member, event, context))
    snapshot = replace(snapshot, incentives=incentives)
    calc = calculate(lines=lines, occurred_at=event["occurred_at"], snapshot=snapshot)
    if not dry_run:
        _record_cap_usage(tenant=tenant, member=member, calc=calc, snapshot=snapshot, now=now, batch=batch)
    return _award(
        tenant=tenant,
        member=member,
        inbox=inbox,
        points=calc.points,
        explanation=calc.explanation,
        grants=grants,
        now=now,
        dry_run=dry_run,
        base_points=base.points,
        incentives=incentives,
        account=account,
        batch=batch,
    )


def _action(*, tenant, inbox, event, grants, dry_run=False, exhausted=frozenset()) -> dict:
    member, account = _member_and_account_lock(tenant=tenant, member_ref=event["member_ref"], dry_run=dry_run)
    now = timezone.now()
    context = IncentiveContext(base_points=0, now=now, dry_run=dry_run, exhausted=exhausted)
    incentives = tuple(incentives_for(tenant, member, event, context))
    points = max(0, sum(i.points for i in incentives))
    explanation = {
        "actionCode": event["action_code"],
        "incentives": [{"source": i.source, "points": i.points, **i.explanation} for i in incentives],
        "computedPoints": points,
    }
    return _award(
        tenant=tenant,
        member=member,
        inbox=inbox,
        points=points,
        explanation=explanation,
        grants=grants,
        now=now,
        dry_run=dry_run,
        incentives=incentives,
        account=account,
    )


def _member_created(*, tenant, inbox, event, grants, dry_run=False, exhausted=frozenset()) -> dict:
    member, created = member_get_or_create(
        tenant=tenant,
        member_ref=event["member_ref"],
        locale=event.get("locale") or "",
        attributes=event.get("attributes") or {},
    )
    return {
        "event_id": inbox.event_id,
        "type": inbox.type,
        "member_ref": member.external_ref,
        "created": created,
        "points": 0,
    }


# Refunds ------------------------------------------------------------------------------


def _transaction_refunded(*, tenant, inbox, event, grants, dry_run=False, exhausted=frozenset()) -> dict:
    original = (
        InboundEvent.objects.select_for_update()
        .filter(
            tenant=tenant,
            event_id=event["original_event_id"],
            type=TRANSACTION_CREATED,
            status=InboundEvent.Status.APPLIED,
        )
        .first()
    )
    if original is None:
        raise UnknownOriginal(field="originalEventId")
    earlier = original.refunds.filter(status=InboundEvent.Status.APPLIED).exclude(pk=inbox.pk)
    totals = earlier.aggregate(amount=Sum("amount"), points=Sum("points"))
    refunded_before = totals["amount"] or Decimal(0)
    reversed_before = -(totals["points"] or 0)
    amount = event.get("amount") or (original.amount - refunded_before)
    if amount <= 0 or refunded_before + amount > original.amount:
        raise RefundExceedsOriginal(field="amount")
    # Reverse in proportion to the money refunded so far, so that partial refunds add up to
    # exactly what was earned and never more, whatever their number.
    target = (original.points * (refunded_before + amount) / original.amount).to_integral_value(rounding="ROUND_FLOOR")
    if refunded_before + amount == original.amount:
        target = original.points
    to_reverse = int(target) - reversed_before
    inbox.original = original
    inbox.amount = amount
    inbox.member_ref = original.member_ref
    member = Member.objects.get(tenant=tenant, external_ref=original.member_ref)
    reversed_points, shortfall = 0, 0
    transfer_id = None
    if to_reverse > 0 and not dry_run:
        reversed_points, shortfall, transfer_id = _reverse(
            tenant=tenant, member=member, original=original, inbox=inbox, points=to_reverse
        )
    elif dry_run:
        reversed_points = to_reverse
    # Campaigns reverse what the original event earned from them (budgets, caps, quest steps).
    incentives_reversed = refund_applied(
        RefundContext(
            tenant=tenant,
            member=member,
            original_event_id=original.event_id,
            refund_event_id=inbox.event_id,
            refunded_total=refunded_before + amount,
            original_amount=original.amount,
            dry_run=dry_run,
        )
    )
    inbox.points = -reversed_points
    return {
        "event_id": inbox.event_id,
        "type": inbox.type,
        "member_ref": member.external_ref,
        "original_event_id": original.event_id,
        "amount": str(amount),
        "points": -reversed_points,
        "transfer_id": transfer_id,
        "explanation": {
            "originalPoints": original.points,
            "originalAmount": str(original.amount),
            "refundedBefore": str(refunded_before),
            "reversedBefore": reversed_before,
            "toReverse": to_reverse,
            "reversed": reversed_points,
            "uncollectable": shortfall,
            **({"incentivesReversed": incentives_reversed} if incentives_reversed else {}),
        },
    }


def _reverse(*, tenant, member, original, inbox, points: int) -> tuple[int, int, str | None]:
    """Take back points an earning gave: from its lot first (pending or spendable), then
    the member's other points closest to expiry. Never below zero: what the member has
    already spent beyond their balance is reported as uncollectable."""
    lot = EarnedLot.objects.filter(transfer__idempotency_key=f"event:{original.event_id}", tenant=tenant).first()
    taken_total, transfer_id = 0, None
    for pending in (True, False) if lot is not None and lot.pending_until is not None else (False,):
        account = _member_account_lock(member, Account.Kind.PENDING if pending else Account.Kind.MEMBER)
        take = min(points - taken_total, account.balance)
        if take <= 0:
            continue
        transfer = points_transfer(
            tenant=tenant,
            debit=account,
            credit=system_account_get(tenant=tenant, kind=Account.Kind.ISSUANCE),
            amount=take,
            kind=Transfer.Kind.REVERSAL,
            idempotency_key=f"refund:{inbox.event_id}:{'pending' if pending else 'available'}",
            reason=TRANSACTION_REFUNDED,
            reference_type="event",
            reference_id=inbox.event_id,
            explanation={"originalEventId": original.event_id, "points": take},
        ).transfer
        lots_take(member=member, points=take, pending=pending, first=lot)
        transfer_id = str(transfer.pk)
        taken_total += take
        outbox_write(
            tenant=tenant,
            type="points.debited",
            member_ref=member.external_ref,
            data={
                "memberRef": member.external_ref,
                "points": take,
                "reason": "refund",
                "transferId": transfer_id,
                "eventId": inbox.event_id,
                "originalEventId": original.event_id,
            },
        )
    if taken_total:
        # Headroom goes back only once the reversal is committed.
        earned_at = original.received_at
        transaction.on_commit(
            lambda: limits_release_for(
                tenant=tenant, member=member, points=taken_total, earned_at=earned_at, now=timezone.now()
            )
        )
        points_changed(PointsChange(tenant, member, -taken_total, "reversal", inbox.event_id, earned_at=earned_at))
    return taken_total, points - taken_total, transfer_id


HANDLERS = {
    TRANSACTION_CREATED: _transaction_created,
    TRANSACTION_REFUNDED: _transaction_refunded,
    MEMBER_CREATED: _member_created,
    ACTION: _action,
}
