"""Earned lots, pending points and expiry against a model, as a Hypothesis state machine.

The machine earns (transaction.created), refunds earlier earnings in part or in full,
credits and debits by operator adjustment, moves a controllable clock, releases pending
points and expires lapsed ones. The model keeps its own lots and takes from them the way
the README says points are spent: the original earning's lot first for a refund, then the
lots closest to expiry (never-expiring last, oldest first). After every step the database
must agree with the model lot by lot, and the ledger with the lots.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import transaction
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rewards.earning import event_ingest
from rewards.exceptions import InsufficientPoints
from rewards.expiry import member_pending_release, member_points_expire
from rewards.models import Account, EarnedLot
from rewards.selectors import ledger_verify
from rewards.services import points_adjust
from tests.factories import MemberFactory, TenantFactory
from tests.rewards.earning_helpers import oracle_reversed_total

pytestmark = pytest.mark.django_db

EXPIRY_DAYS = 30
START = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)
NEVER = datetime.max.replace(tzinfo=UTC)


class Clock:
    """Stands in for django.utils.timezone.now; the machine moves it forward."""

    def __init__(self):
        self.now = START

    def __call__(self) -> datetime:
        return self.now


CLOCK = Clock()


@dataclass
class Lot:
    points: int
    remaining: int
    pending_until: datetime | None
    expires_at: datetime | None


@dataclass
class Earning:
    event_id: str
    cents: int
    points: int
    lot_id: int | None
    refunded_cents: int = 0
    reversed: int = 0


class LotsMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # Each run of the machine is undone afterwards, so runs cannot see each other's rows.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        CLOCK.now = START
        self.tenant = None
        self.lots: dict[int, Lot] = {}
        self.earnings: list[Earning] = []
        self.sequence = 0

    def teardown(self):
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # The model -------------------------------------------------------------------------

    def _open(self, *, pending: bool) -> list[int]:
        """Open lots in the order points are taken from them."""
        ids = [i for i, lot in self.lots.items() if lot.remaining > 0 and (lot.pending_until is not None) == pending]
        return sorted(ids, key=lambda i: (self.lots[i].expires_at or NEVER, i))

    def _balance(self, *, pending: bool) -> int:
        return sum(self.lots[i].remaining for i in self._open(pending=pending))

    def _take(self, points: int, *, pending: bool, first: int | None = None) -> None:
        order = self._open(pending=pending)
        if first in order:
            order.remove(first)
            order.insert(0, first)
        for i in order:
            take = min(points, self.lots[i].remaining)
            self.lots[i].remaining -= take
            points -= take
        assert points == 0, "the model took more than its lots hold"

    def _next_id(self, prefix: str) -> str:
        self.sequence += 1
        return f"{prefix}-{self.sequence}"

    # Rules -----------------------------------------------------------------------------

    @initialize(pending_days=st.sampled_from([0, 0, 7, 45]))
    def open_program(self, pending_days):
        # 45 pending days outlast the 30-day expiry: such points lapse as soon as they are released.
        self.pending_days = pending_days
        self.tenant = TenantFactory(expiry_policy="DAYS", expiry_days=EXPIRY_DAYS, pending_days=pending_days)
        self.member = MemberFactory(tenant=self.tenant, external_ref="m-1")

    @rule(cents=st.integers(1, 500_00))
    def earn(self, cents):
        event_id = self._next_id("e")
        outcome = event_ingest(
            tenant=self.tenant,
            event={
                "type": "transaction.created",
                "event_id": event_id,
                "member_ref": "m-1",
                "amount": Decimal(cents) / 100,
                "currency": "USD",
                "occurred_at": CLOCK.now,
            },
        )
        points = cents // 100  # earn rate 1, rounded down
        assert outcome.status_code == 201, outcome.body
        assert outcome.body["points"] == points
        lot_id = None
        if points:
            pending_until = CLOCK.now + timedelta(days=self.pending_days) if self.pending_days else None
            lot_id = EarnedLot.objects.get(transfer_id=outcome.body["transfer_id"]).pk
            self.lots[lot_id] = Lot(points, points, pending_until, CLOCK.now + timedelta(days=EXPIRY_DAYS))
        self.earnings.append(Earning(event_id, cents, points, lot_id))

    @precondition(lambda self: self.earnings)
    @rule(data=st.data())
    def refund(self, data):
        earning = data.draw(st.sampled_from(self.earnings), label="earning")
        cents = data.draw(st.one_of(st.none(), st.integers(1, earning.cents)), label="refund cents")
        event = {
            "type": "transaction.refunded",
            "event_id": self._next_id("r"),
            "original_event_id": earning.event_id,
            "occurred_at": CLOCK.now,
        }
        if cents is not None:
            event["amount"] = Decimal(cents) / 100
        outcome = event_ingest(tenant=self.tenant, event=event)

        refund_cents = earning.cents - earning.refunded_cents if cents is None else cents
        if refund_cents <= 0 or earning.refunded_cents + refund_cents > earning.cents:
            assert outcome.status_code == 422
            assert outcome.body["errors"][0]["code"] == "refund_exceeds_original"
            return
        target = oracle_reversed_total(
            awarded=earning.points, refunded_cents=earning.refunded_cents + refund_cents, amount_cents=earning.cents
        )
        wanted = target - earning.reversed
        taken = 0
        lot = self.lots.get(earning.lot_id)
        # A refund takes back from its own lot first, pending or spendable, and never drives a
        # balance below zero: what is missing is uncollectable (and tried again by a later refund).
        for pending in (True, False) if lot is not None and lot.pending_until is not None else (False,):
            take = min(wanted - taken, self._balance(pending=pending))
            if take > 0:
                self._take(take, pending=pending, first=earning.lot_id)
                taken += take
        assert outcome.status_code == 201, outcome.body
        assert outcome.body["points"] == -taken
        assert outcome.body["explanation"]["uncollectable"] == wanted - taken
        earning.refunded_cents += refund_cents
        earning.reversed += taken

    @rule(points=st.integers(1, 300))
    def credit(self, points):
        result = points_adjust(tenant=self.tenant, member=self.member, points=points, reason="goodwill", actor="model")
        # Operator credits never expire and are spendable at once.
        self.lots[EarnedLot.objects.get(transfer=result.transfer).pk] = Lot(points, points, None, None)

    @rule(points=st.integers(1, 600))
    def debit(self, points):
        if points > self._balance(pending=False):
            with pytest.raises(InsufficientPoints):
                points_adjust(tenant=self.tenant, member=self.member, points=-points, reason="spend", actor="model")
            return
        points_adjust(tenant=self.tenant, member=self.member, points=-points, reason="spend", actor="model")
        self._take(points, pending=False)

    @rule(hours=st.one_of(st.integers(1, 48), st.integers(1, 24 * 40), st.just(24 * EXPIRY_DAYS)))
    def advance(self, hours):
        CLOCK.now += timedelta(hours=hours)

    @rule()
    def release(self):
        due = [lot for lot in self.lots.values() if lot.pending_until is not None and lot.pending_until <= CLOCK.now]
        assert member_pending_release(member=self.member, now=CLOCK.now) == sum(lot.remaining for lot in due)
        for lot in due:
            lot.pending_until = None

    @rule()
    def expire(self):
        due = [i for i in self._open(pending=False) if (self.lots[i].expires_at or NEVER) <= CLOCK.now]
        assert member_points_expire(member=self.member, now=CLOCK.now) == sum(self.lots[i].remaining for i in due)
        for i in due:
            self.lots[i].remaining = 0

    # Invariants ------------------------------------------------------------------------

    @invariant()
    def the_database_agrees_with_the_model(self):
        if self.tenant is None:
            return
        report = ledger_verify(tenant=self.tenant)
        assert report.ok, report

        balances = dict(Account.objects.filter(member=self.member).values_list("kind", "balance"))
        available, pending = balances.get(Account.Kind.MEMBER, 0), balances.get(Account.Kind.PENDING, 0)
        assert available >= 0 and pending >= 0
        lots = {lot.pk: lot for lot in EarnedLot.objects.filter(member=self.member)}
        assert available == sum(lot.remaining for lot in lots.values() if lot.pending_until is None)
        assert pending == sum(lot.remaining for lot in lots.values() if lot.pending_until is not None)

        assert lots.keys() == self.lots.keys()
        for pk, expected in self.lots.items():
            actual = Lot(lots[pk].points, lots[pk].remaining, lots[pk].pending_until, lots[pk].expires_at)
            assert actual == expected, f"lot {pk}"


def test_lots_balances_and_expiry_follow_the_model():
    with mock.patch("django.utils.timezone.now", new=CLOCK):
        run_state_machine_as_test(
            LotsMachine,
            settings=settings(
                max_examples=50,
                stateful_step_count=40,
                deadline=None,
                database=None,
                # Every step hits the database: shrinking a failure would outlast the test timeout,
                # so the failing run is reported as it was found.
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
