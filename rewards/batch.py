"""Inbound events in bulk, set-based: one transaction per batch, one round trip per table.

`POST /api/v1/events:batch`, `manage.py replay_events` and `manage.py simulate` come here.
The batch's inbox rows go in with one `INSERT … ON CONFLICT DO NOTHING` (what is not inserted
was seen before: a replay, or an eventId reused for another event), the members' accounts are
locked in one query in id order (so two batches never deadlock on them), and the purchases are
computed in order by the same code as a single event (`rewards.earning`), which hands its
ledger writes to the batch instead of making them. The batch then writes every transfer, lot
and outbox event with one INSERT per table, every balance with one `UPDATE … FROM (VALUES …)`,
the tiers' qualifying points with one upsert, and the inbox results with one UPDATE.

A purchase that a campaign gives something for stays in the batch, with the campaign's own
writes (incentive, member cap, budget) made for it in a savepoint: budgets are charged at the
end of the event as for a single one, and the campaign's stats row stays locked until the
batch commits.

Capped multipliers' usage is read for the batch's members at once and written with one
upsert. An event whose outcome depends on other writes made per event is applied on its own,
in order, inside the batch's transaction, exactly as `POST /api/v1/events` applies it: a
member not enrolled yet, a member whose tier an earlier earning in the batch moved, held
(pending) points, limits checked in the database while Redis is away, a campaign budget found
spent at the end of the event (`EventRetry`), refunds, actions and enrolments. The batch's
writes so far go to the database first, so that event sees them; this is `SlowLane`. Either
way the results are those of the same events posted one by one, in order.

One difference from posting the events one by one: the limit headroom a refund gives back
returns when its transaction commits, and a batch commits at its end, so a purchase later in
the same batch does not see it yet (it would be given back even if the batch were rolled back).

A failure that is not the event's own (a lost connection, say) rolls the whole batch back:
no batch is ever half applied. A deadlock with another writer is retried.

SQLite (the demo's default) has no `UPDATE … FROM (VALUES …)` with casts, and takes its
events one by one.
"""

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from django.db import OperationalError, connection, transaction
from django.utils import timezone
from django_guid import get_guid
from prometheus_client import Counter

from core.cache import cache_reads_pinned
from core.exceptions import DomainError
from rewards.categories import category_config_get
from rewards.contributions import (
    EventRetry,
    PointsChange,
    TierContext,
    batch_points_ready,
    points_changed_batch,
    points_headroom,
)
from rewards.contributions import tiers_for as tier_contexts_for
from rewards.earning import (
    EVENTS,
    TRANSACTION_CREATED,
    EventConflict,
    EventOutcome,
    SlowLane,
    _apply_claimed,
    _outcome,
    _period_start,
    _rejection,
    _transaction_created,
    inbox_new,
    payload_hash,
)
from rewards.ledger import POINTS_MOVED, TRANSFERS, system_account_get
from rewards.limits import Grant, limits_preseed, limits_release
from rewards.lots import expiry_for
from rewards.models import Account, EarnedLot, InboundEvent, Member, MultiplierUsage, OutboxEvent, Transfer
from rewards.relay import relay_after_commit
from tenants.models import Tenant

logger = logging.getLogger(__name__)

BATCH_EVENTS = Counter("loyalty_batch_events_total", "Events applied by the batch path, by lane", ["lane"])
BATCH_SINGLE = Counter("loyalty_batch_single_events_total", "Batch events applied on their own, by why", ["reason"])
DEADLOCK_RETRIES = 3


def events_apply(*, tenant: Tenant, events: list[dict]) -> list[EventOutcome]:
    """Apply validated events (snake_case keys) in order, each at most once per (tenant,
    eventId); one outcome per event, as `event_ingest` would have answered it."""
    if not events:
        return []
    if connection.vendor != "postgresql":
        return [_one_by_one(tenant, event) for event in events]
    for attempt in range(1, DEADLOCK_RETRIES + 1):
        try:
            return _Batch(tenant, events).apply()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "40P01" or attempt == DEADLOCK_RETRIES:
                raise
            logger.warning("event batch deadlocked, retrying", extra={"tenant": str(tenant.pk), "attempt": attempt})
    raise AssertionError("unreachable")  # pragma: no cover


def _one_by_one(tenant: Tenant, event: dict) -> EventOutcome:
    from rewards.earning import event_ingest

    try:
        return event_ingest(tenant=tenant, event=event)
    except DomainError as exc:
        return _refused(exc)


def _refused(exc: DomainError) -> EventOutcome:
    error = _rejection(exc)["error"]
    return EventOutcome(exc.status_code, {"type": "client_error", "errors": [error]}, replayed=False)


@dataclass
class _MemberState:
    member: Member
    account: Account
    tier: TierContext
    headroom: int | None  # points left before a tier would move (None: no bound)
    balance: int  # the account's balance with the batch's credits so far
    crossed: bool = False  # an earning reached the headroom: the tier moves at the flush


@dataclass
class _Writes:
    """What the set-based events have computed and not yet written."""

    transfers: list[Transfer] = field(default_factory=list)
    lots: list[EarnedLot] = field(default_factory=list)
    outbox: list[OutboxEvent] = field(default_factory=list)
    balances: dict[int, int] = field(default_factory=dict)  # account id -> points added
    changes: list[PointsChange] = field(default_factory=list)
    caps: dict[tuple, int] = field(default_factory=dict)  # (member pk, multiplier id, period) -> extra
    inbox: list[InboundEvent] = field(default_factory=list)
    crossed: set = field(default_factory=set)  # pks of members whose tier the flush moves

    def __bool__(self) -> bool:
        return bool(self.inbox)


class _Batch:
    def __init__(self, tenant: Tenant, events: list[dict]):
        self.tenant = tenant
        self.events = events
        self.grants: list[Grant] = []
        self.writes = _Writes()
        self.states: dict[str, _MemberState | None] = {}  # memberRef -> state (None: applied on its own)
        self.earlier: dict[str, InboundEvent] = {}
        self.event_savepoint: str | None = None
        self.extensions: dict[str, object] = {}
        # Capped multipliers' usage: (member pk, multiplier id, period start) -> extra points,
        # as read plus what the batch's applied events added; and the current event's share.
        self.cap_base: dict[tuple, int] = {}
        self.event_caps: dict[tuple, int] = {}  # eventId -> the row of an event seen before
        self.set_based = tenant.pending_days == 0 and batch_points_ready()

    # The driver ---------------------------------------------------------------------------

    def apply(self) -> list[EventOutcome]:
        prepared = []
        for event in self.events:
            digest = payload_hash(event)  # as sent, before occurredAt is filled in (see event_ingest)
            if event.get("occurred_at") is None:
                event = {**event, "occurred_at": timezone.now()}
            prepared.append((event, digest))
        try:
            with transaction.atomic(), cache_reads_pinned():
                outcomes = self._apply(prepared)
        except BaseException:
            for grant in self.grants:
                limits_release(grant=grant)
            raise
        for outcome, (event, _digest) in zip(outcomes, prepared, strict=True):
            kind = "duplicate" if outcome.replayed else (outcome.event.status.lower() if outcome.event else "rejected")
            EVENTS.labels(type=event["type"], outcome=kind).inc()
        return outcomes

    def _apply(self, prepared: list[tuple[dict, str]]) -> list[EventOutcome]:
        claimed = self._claim(prepared)
        refs = {event["member_ref"] for event, _ in prepared if event["type"] == TRANSACTION_CREATED}
        if self.set_based and refs:
            self._load(sorted(refs))
        outcomes: list[EventOutcome | None] = [None] * len(prepared)
        first_seen: dict[str, int] = {}
        for index, (event, digest) in enumerate(prepared):
            event_id = event["event_id"]
            if event_id in first_seen:
                continue  # a repeat within the batch: answered once its first is done
            first_seen[event_id] = index
            inbox = claimed.get(event_id)
            if inbox is None:
                outcomes[index] = self._seen_before(event_id, digest)
                continue
            outcomes[index] = self._one(inbox, event)
        self._flush()
        for index, (event, digest) in enumerate(prepared):
            if outcomes[index] is None:
                first = outcomes[first_seen[event["event_id"]]]
                first_digest = prepared[first_seen[event["event_id"]]][1]
                if first_digest != digest:
                    outcomes[index] = _refused(EventConflict(field="eventId"))
                elif first.event is not None:
                    outcomes[index] = _outcome(first.event, replayed=True)
                else:
                    outcomes[index] = first
        return outcomes

    def extension(self, key: str, factory):
        """For providers (campaigns): their part of the batch, made by `factory()` on first
        use. It has `event_end(applied=)` (the event being applied is through, or undone),
        `flush()` (write what the applied events gave) and `reread()` (an event applied on
        its own may have changed what it read)."""
        if key not in self.extensions:
            self.extensions[key] = factory()
        return self.extensions[key]

    def _event_end(self, *, applied: bool) -> None:
        if applied:
            for key, extra in self.event_caps.items():
                self.writes.caps[key] = self.writes.caps.get(key, 0) + extra
                self.cap_base[key] = self.cap_base.get(key, 0) + extra
        self.event_caps = {}
        for extension in self.extensions.values():
            extension.event_end(applied=applied)

    def savepoint(self) -> None:
        """For `rewards.earning`: the event is about to write on its own (a campaign gives)."""
        if self.event_savepoint is None:
            self.event_savepoint = transaction.savepoint()

    def _one(self, inbox: InboundEvent, event: dict) -> EventOutcome:
        grants: list[Grant] = []
        if self.set_based and event["type"] == TRANSACTION_CREATED:
            self.event_savepoint = None
            try:
                result = _transaction_created(tenant=self.tenant, inbox=inbox, event=event, grants=grants, batch=self)
            except (SlowLane, EventRetry) as why:
                # Its own writes undone; applied below on its own (which retries a spent budget).
                BATCH_SINGLE.labels(reason=str(why) if isinstance(why, SlowLane) else "a campaign budget spent").inc()
                self._savepoint_end(rollback=True)
                self._event_end(applied=False)
                for grant in grants:
                    limits_release(grant=grant)
                grants.clear()
            except DomainError as exc:
                self._savepoint_end(rollback=True)
                self._event_end(applied=False)
                for grant in grants:
                    limits_release(grant=grant)
                inbox.status, inbox.result = InboundEvent.Status.REJECTED, _rejection(exc)
                self.writes.inbox.append(inbox)
                BATCH_EVENTS.labels(lane="set").inc()
                return _outcome(inbox, replayed=False)
            except BaseException:
                self._event_end(applied=False)
                raise
            else:
                self._savepoint_end(rollback=False)
                self._event_end(applied=True)
                self.grants += grants
                inbox.result = result
                self.writes.inbox.append(inbox)
                BATCH_EVENTS.labels(lane="set").inc()
                return _outcome(inbox, replayed=False)
        # On its own, after the batch's writes so far, as POST /api/v1/events would apply it.
        if not (self.set_based and event["type"] == TRANSACTION_CREATED):
            BATCH_SINGLE.labels(reason=event["type"] if self.set_based else "not set-based here").inc()
        self._flush()
        member_ref = event.get("member_ref")
        try:
            _apply_claimed(tenant=self.tenant, inbox=inbox, event=event, grants=grants)
        finally:
            self.grants += grants
        for extension in self.extensions.values():
            extension.reread()
        if member_ref:
            self.states.pop(member_ref, None)  # its balance or tier may have moved: read again
        if inbox.member_ref and inbox.member_ref != member_ref:
            self.states.pop(inbox.member_ref, None)  # a refund names its member through the original
        BATCH_EVENTS.labels(lane="single").inc()
        return _outcome(inbox, replayed=False)

    def _savepoint_end(self, *, rollback: bool) -> None:
        if self.event_savepoint is None:
            return
        if rollback:
            transaction.savepoint_rollback(self.event_savepoint)
        else:
            transaction.savepoint_commit(self.event_savepoint)
        self.event_savepoint = None

    # Reads --------------------------------------------------------------------------------

    def _claim(self, prepared: list[tuple[dict, str]]) -> dict[str, InboundEvent]:
        """Insert the batch's inbox rows; {eventId: row} for those inserted (new to the tenant)."""
        rows, seen = [], set()
        for event, digest in prepared:
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                rows.append(inbox_new(tenant=self.tenant, event=event, digest=digest))
        meta, quote = InboundEvent._meta, connection.ops.quote_name
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        values = [f.get_db_prep_save(f.pre_save(row, True), connection) for row in rows for f in fields]
        placeholders = f"({', '.join(['%s'] * len(fields))})"
        # Names from the model, every value a parameter.
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "  # noqa: S608
            f"VALUES {', '.join([placeholders] * len(rows))} "
            f"ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING {quote(meta.pk.column)}, event_id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, values)
            inserted = {event_id: pk for pk, event_id in cursor.fetchall()}
        claimed = {}
        for row in rows:
            if row.event_id in inserted:
                row.pk = inserted[row.event_id]
                row._state.adding, row._state.db = False, "default"
                claimed[row.event_id] = row
        missing = [row.event_id for row in rows if row.event_id not in inserted]
        self.earlier = {e.event_id: e for e in InboundEvent.objects.filter(tenant=self.tenant, event_id__in=missing)}
        return claimed

    def _seen_before(self, event_id: str, digest: str) -> EventOutcome:
        existing = self.earlier[event_id]
        if existing.payload_hash != digest:
            return _refused(EventConflict(field="eventId"))
        return _outcome(existing, replayed=True)

    def _load(self, refs: list[str]) -> None:
        """The members named, their accounts locked in id order, their tiers and headroom."""
        accounts = list(
            Account.objects.select_for_update(of=("self",))
            .select_related("member")
            .filter(kind=Account.Kind.MEMBER, member__tenant=self.tenant, member__external_ref__in=refs)
            .order_by("pk")
        )
        members = [account.member for account in accounts]
        for member in members:
            member.tenant = self.tenant  # the caller's: what follows reads member.tenant without a query
        tiers = tier_contexts_for(self.tenant, members) if members else {}
        headroom = points_headroom(self.tenant, members, timezone.now()) if members else {}
        if members:
            limits_preseed(tenant=self.tenant, members=members, at=timezone.now())
            self._caps_load(members)
        for ref in refs:
            self.states[ref] = None
        for account in accounts:
            member = account.member
            if member.pk not in headroom:
                continue
            self.states[member.external_ref] = _MemberState(
                member=member,
                account=account,
                tier=tiers[member.pk],
                headroom=headroom[member.pk],
                balance=account.balance,
            )

    def _caps_load(self, members: list[Member]) -> None:
        """The capped multipliers' usage this period, for members read (again): one query."""
        config = category_config_get(tenant=self.tenant)
        now = timezone.now()
        periods = {
            rule.id: _period_start(self.tenant, now, rule.cap_period)
            for rule in config.multipliers
            if rule.cap_points is not None and rule.cap_period
        }
        if not periods or not members:
            return
        for member in members:
            for rule_id, period in periods.items():
                self.cap_base[(member.pk, rule_id, period)] = 0
        rows = MultiplierUsage.objects.filter(
            member__in=members, multiplier_id__in=list(periods), period_start__in=set(periods.values())
        ).values_list("member_id", "multiplier_id", "period_start", "extra_points")
        for member_pk, rule_id, period, extra in rows:
            self.cap_base[(member_pk, rule_id, period)] = extra

    def cap_used(self, member: Member, multiplier_id: int, period) -> int:
        """For `rewards.earning`: a capped multiplier's extra points this period so far."""
        key = (member.pk, multiplier_id, period)
        if key not in self.cap_base:  # a period that began during the batch
            row = MultiplierUsage.objects.filter(
                member=member, multiplier_id=multiplier_id, period_start=period
            ).first()
            self.cap_base[key] = row.extra_points if row else 0
        return self.cap_base[key] + self.event_caps.get(key, 0)

    def cap_add(self, member: Member, multiplier_id: int, period, extra: int) -> None:
        """For `rewards.earning`: the event's extra points under a capped multiplier."""
        key = (member.pk, multiplier_id, period)
        self.event_caps[key] = self.event_caps.get(key, 0) + extra

    def member_pks(self) -> list:
        """For providers: the members the batch has read, to read theirs at once."""
        return [state.member.pk for state in self.states.values() if state is not None]

    def member_state(self, member_ref: str) -> tuple[Member, Account, TierContext]:
        """For `rewards.earning`: the member, its locked account and its tier, or SlowLane."""
        if member_ref not in self.states:
            self._load([member_ref])
        state = self.states[member_ref]
        if state is None:
            raise SlowLane("a member not enrolled yet, or not set-based")
        if state.crossed:
            # Its tier moves when the batch's writes so far are made: this event earns in the new one.
            raise SlowLane("the member's tier moved earlier in the batch")
        return state.member, state.account, state.tier

    # Writes -------------------------------------------------------------------------------

    def reserve(self, *, member: Member, points: int) -> str:
        """For `rewards.earning`: the id the earning's transfer will have."""
        return str(uuid.uuid4())

    def credit(
        self,
        *,
        member: Member,
        account: Account,
        points: int,
        inbox: InboundEvent,
        explanation: dict,
        now: datetime,
        transfer_id: str,
    ) -> None:
        """For `rewards.earning`: an earning's transfer, lot, outbox event and tier points, kept
        for the batch's writes."""
        state = self.states[member.external_ref]
        if state.headroom is not None:
            state.headroom -= points
            if state.headroom <= 0:
                # The flush moves the tier after counting, as `points_changed` does after this
                # one event (nothing later in an event reads the tier).
                state.crossed = True
                self.writes.crossed.add(member.pk)
        state.balance += points
        tenant = self.tenant
        transfer = Transfer(
            id=uuid.UUID(transfer_id),
            tenant=tenant,
            debit_account=system_account_get(tenant=tenant, kind=Account.Kind.ISSUANCE),
            credit_account=account,
            amount=points,
            kind=Transfer.Kind.EARN,
            reason=inbox.type,
            reference_type="event",
            reference_id=inbox.event_id,
            idempotency_key=f"event:{inbox.event_id}",
            explanation=explanation,
            debit_balance_after=None,
            credit_balance_after=state.balance,
        )
        writes = self.writes
        writes.transfers.append(transfer)
        writes.balances[account.pk] = writes.balances.get(account.pk, 0) + points
        writes.lots.append(
            EarnedLot(
                tenant_id=tenant.pk,
                member=member,
                transfer=transfer,
                points=points,
                remaining=points,
                pending_until=None,
                expires_at=expiry_for(tenant=tenant, earned_at=now),
            )
        )
        writes.outbox.append(
            OutboxEvent(
                tenant=tenant,
                type="points.credited",
                member_ref=member.external_ref,
                occurred_at=timezone.now(),
                correlation_id=get_guid() or "",
                data={
                    "memberRef": member.external_ref,
                    "points": points,
                    "pending": False,
                    "transferId": str(transfer.pk),
                    "eventId": inbox.event_id,
                    "balanceAfter": state.balance,
                },
            )
        )
        writes.changes.append(PointsChange(tenant, member, points, "earn", inbox.event_id))

    def _flush(self) -> None:
        """Write what the set-based events computed: one statement per table."""
        writes = self.writes
        for extension in self.extensions.values():
            extension.flush()
        if not writes:
            return
        self.writes = _Writes()
        if writes.balances:
            self._balances_add(writes.balances)
        Transfer.objects.bulk_create(writes.transfers)
        EarnedLot.objects.bulk_create(writes.lots)
        OutboxEvent.objects.bulk_create(writes.outbox)
        points_changed_batch(self.tenant, writes.changes, frozenset(writes.crossed))
        self._caps_write(writes.caps)
        self._inbox_results(writes.inbox)
        if writes.outbox:
            relay_after_commit()
        counted = [(t.kind, t.amount) for t in writes.transfers]

        def count() -> None:
            for kind, amount in counted:
                TRANSFERS.labels(kind=kind).inc()
                POINTS_MOVED.labels(kind=kind).inc(amount)

        transaction.on_commit(count)

    def _balances_add(self, deltas: dict[int, int]) -> None:
        table = connection.ops.quote_name(Account._meta.db_table)
        rows = sorted(deltas.items())
        sql = (
            f"UPDATE {table} AS a SET balance = a.balance + v.delta "  # noqa: S608
            f"FROM (VALUES {', '.join(['(%s::bigint, %s::bigint)'] * len(rows))}) AS v(id, delta) "
            "WHERE a.id = v.id AND a.balance + v.delta >= 0 RETURNING a.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [v for row in rows for v in row])
            updated = {row[0] for row in cursor.fetchall()}
        if updated != set(deltas):
            # The accounts are locked and only credited here: this cannot happen. Undo the batch.
            raise RuntimeError(f"balances not updated: {sorted(set(deltas) - updated)}")

    def _caps_write(self, caps: dict[tuple, int]) -> None:
        if not caps:
            return
        table = connection.ops.quote_name(MultiplierUsage._meta.db_table)
        rows = sorted(caps.items(), key=lambda item: (str(item[0][0]), item[0][1], item[0][2]))
        sql = (
            f"INSERT INTO {table} (tenant_id, multiplier_id, member_id, period_start, extra_points) "  # noqa: S608
            f"VALUES {', '.join(['(%s, %s, %s, %s, %s)'] * len(rows))} "
            "ON CONFLICT (multiplier_id, member_id, period_start) "
            f"DO UPDATE SET extra_points = {table}.extra_points + EXCLUDED.extra_points"
        )
        params = [
            v
            for (member_pk, rule_id, period), extra in rows
            for v in (self.tenant.pk, rule_id, member_pk, period, extra)
        ]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)

    def _inbox_results(self, rows: list[InboundEvent]) -> None:
        if not rows:
            return
        meta = InboundEvent._meta
        table = connection.ops.quote_name(meta.db_table)
        result_field = meta.get_field("result")
        params = []
        for row in rows:
            params += [row.pk, row.status, result_field.get_db_prep_save(row.result, connection), row.points]
        sql = (
            f"UPDATE {table} AS i SET status = v.status, result = v.result, points = v.points "  # noqa: S608
            f"FROM (VALUES {', '.join(['(%s::bigint, %s, %s::jsonb, %s::bigint)'] * len(rows))}) "
            "AS v(id, status, result, points) WHERE i.id = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
