"""The earning engine against an independent oracle (tests/rewards/earning_helpers.py).

Two passes: the pure calculation over well over ten thousand random purchases under random
programs, and the whole engine (`event_ingest`: configuration read from the database, the
tier provider, daily limits in Redis or in PostgreSQL, refunds, replays) over random
sequences of events. Every event is checked; a single mismatch fails the test.
"""

from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Sum
from django_redis import get_redis_connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rewards import contributions
from rewards.api.events import event_validate
from rewards.calculation import MultiplierRule, Snapshot, calculate, event_lines
from rewards.contributions import TierContext, register_tier_provider
from rewards.earning import event_ingest
from rewards.models import Account, InboundEvent, Multiplier, SpendCategory
from rewards.selectors import ledger_verify
from tenants.services import limit_upsert
from tests.factories import TenantFactory
from tests.rewards.earning_helpers import (
    BASE,
    CENT,
    TIERS,
    Program,
    oracle_points,
    oracle_reversed_total,
    programs,
    purchases,
)

pytestmark = pytest.mark.django_db

PURE_EXAMPLES = 500
PURE_EVENTS = (20, 40)  # per example, so that 500 examples check at least 10,000 events
ENGINE_EXAMPLES = 100
ENGINE_STEPS = (10, 30)
DAILY_LIMITS = (0, 5, 50, 500, 5_000, 100_000)
MEMBERS = ("m-0", "m-1", "m-2")

TIER_CHOICE = st.sampled_from(TIERS)
STEP_KINDS = st.sampled_from(["earn"] * 3 + ["refund"] * 2 + ["replay"])
FORGET = st.sampled_from([False] * 12 + [True])
HYPOTHESIS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@pytest.fixture
def member_tiers():
    """Each member's tier, as a tiers app would report it; the previous provider comes back after."""
    assigned: dict[str, TierContext] = {}
    previous = contributions._tier_provider, contributions._tier_batch_provider
    register_tier_provider(lambda tenant, member: assigned.get(member.external_ref, TierContext()))
    yield assigned
    register_tier_provider(previous[0], batch=previous[1])


def _snapshot(program: Program, tier: str) -> Snapshot:
    return Snapshot(
        earn_rate=program.earn_rate,
        rounding=program.rounding,
        categories=dict(program.parents),
        mcc=program.category_of_mcc,
        multipliers=tuple(
            MultiplierRule(
                id=i,
                category=rule.category,
                factor=rule.factor,
                valid_from=rule.valid_from,
                valid_to=rule.valid_to,
                tier=rule.tier,
            )
            for i, rule in enumerate(program.rules, start=1)
        ),
        tier=tier,
        tier_multiplier=program.tier_factors[tier],
    )


def test_the_calculation_matches_the_oracle():
    checked = Counter()

    @settings(max_examples=PURE_EXAMPLES, **HYPOTHESIS)
    @given(data=st.data())
    def run(data):
        program = data.draw(programs(), label="program")
        events = data.draw(
            st.lists(st.tuples(TIER_CHOICE, purchases(program)), min_size=PURE_EVENTS[0], max_size=PURE_EVENTS[1]),
            label="events",
        )
        for tier, event in events:
            lines = event_lines(
                amount=event["amount"],
                category=event.get("category"),
                mcc=event.get("mcc"),
                line_items=event.get("line_items"),
            )
            engine = calculate(lines=lines, occurred_at=event["occurred_at"], snapshot=_snapshot(program, tier))
            assert engine.points == oracle_points(program, event, tier), engine.explanation
            checked["events"] += 1

    run()
    print(f"calculation: {checked['events']} events checked against the oracle, 0 mismatches")
    assert checked["events"] >= 10_000


@dataclass
class Earning:
    member_ref: str
    cents: int
    awarded: int
    refunded_cents: int = 0
    reversed: int = 0


@dataclass(frozen=True)
class Seen:
    event: dict
    status_code: int
    body: dict


def _program_create(tenant, program: Program) -> None:
    categories = {}
    for code, parent in program.parents.items():  # parents come before their children
        categories[code] = SpendCategory.objects.create(
            tenant=tenant,
            code=code,
            name=code.title(),
            parent=categories[parent] if parent else None,
            mcc_codes=list(program.mccs[code]),
        )
    for rule in program.rules:
        Multiplier.objects.create(
            tenant=tenant,
            category=categories[rule.category],
            factor=rule.factor,
            valid_from=rule.valid_from,
            valid_to=rule.valid_to,
            tier=rule.tier,
        )


def test_the_engine_awards_and_reverses_what_the_oracle_says(member_tiers, django_capture_on_commit_callbacks):
    checked = Counter()

    def ingest(tenant, event: dict):
        # Refunds give limit headroom back once committed; run those callbacks as a commit would.
        with django_capture_on_commit_callbacks(execute=True):
            return event_ingest(tenant=tenant, event=event_validate(event))

    @settings(max_examples=ENGINE_EXAMPLES, **HYPOTHESIS)
    @given(data=st.data())
    def run(data):
        program = data.draw(programs(), label="program")
        redis_down = data.draw(st.booleans(), label="redis_down")
        database_only = mock.patch("rewards.limits._redis", return_value=None) if redis_down else nullcontext()
        with transaction.atomic(), database_only:
            tenant = TenantFactory(earn_rate=program.earn_rate, rounding=program.rounding)
            _program_create(tenant, program)
            purchase = purchases(program)
            limits, tiers = _members_configure(data, tenant, program, member_tiers)
            used = dict.fromkeys(MEMBERS, 0)  # points issued today, net of reversals
            balance = dict.fromkeys(MEMBERS, 0)
            earnings: dict[str, Earning] = {}
            seen: dict[str, Seen] = {}
            for step in range(data.draw(st.integers(*ENGINE_STEPS), label="steps")):
                if data.draw(FORGET, label="forget counters"):
                    _counters_forget(tenant)
                kind = data.draw(STEP_KINDS, label="kind")
                if kind == "replay" and seen:
                    first = seen[data.draw(st.sampled_from(sorted(seen)), label="replay of")]
                    outcome = ingest(tenant, first.event)
                    assert outcome.replayed
                    assert outcome.status_code == (200 if first.status_code == 201 else first.status_code)
                    assert outcome.body == first.body
                elif kind == "refund" and earnings:
                    event, expected = _refund_draw(data, step, earnings, seen)
                    outcome = ingest(tenant, event)
                    if isinstance(expected, str):
                        assert outcome.status_code == 422, outcome.body
                        assert outcome.body["errors"][0]["code"] == expected
                    else:
                        earning, refund_cents, to_reverse = expected
                        assert outcome.status_code == 201, outcome.body
                        assert outcome.body["points"] == -to_reverse, (outcome.body, earning)
                        earning.refunded_cents += refund_cents
                        earning.reversed += to_reverse
                        used[earning.member_ref] -= to_reverse
                        balance[earning.member_ref] -= to_reverse
                    seen[event["event_id"]] = Seen(event, outcome.status_code, outcome.body)
                else:
                    ref = data.draw(st.sampled_from(MEMBERS), label="member")
                    event = {**data.draw(purchase, label="purchase"), "event_id": f"e-{step}", "member_ref": ref}
                    computed = oracle_points(program, event, tiers[ref])
                    awarded = min(computed, max(0, limits[ref] - used[ref]))
                    outcome = ingest(tenant, event)
                    assert outcome.status_code == 201, outcome.body
                    assert outcome.body["explanation"]["computedPoints"] == computed, outcome.body["explanation"]
                    assert outcome.body["points"] == awarded, outcome.body["explanation"]
                    earnings[event["event_id"]] = Earning(ref, int(event["amount"] * 100), awarded)
                    used[ref] += awarded
                    balance[ref] += awarded
                    seen[event["event_id"]] = Seen(event, outcome.status_code, outcome.body)
                checked["events"] += 1

            for event_id, earning in earnings.items():
                refunds = InboundEvent.objects.filter(tenant=tenant, original__event_id=event_id, status="APPLIED")
                reversed_total = -(refunds.aggregate(points=Sum("points"))["points"] or 0)
                assert reversed_total == earning.reversed <= earning.awarded, event_id
                if earning.refunded_cents == earning.cents:
                    assert reversed_total == earning.awarded, event_id
            report = ledger_verify(tenant=tenant)
            assert report.ok, report
            for ref in MEMBERS:
                account = Account.objects.filter(tenant=tenant, member__external_ref=ref, kind="MEMBER").first()
                assert (account.balance if account else 0) == balance[ref], ref
            transaction.set_rollback(True)

    # One day throughout: the daily limits' period does not change under the test.
    with mock.patch("django.utils.timezone.now", return_value=BASE):
        run()
    print(f"engine: {checked['events']} events checked against the oracle, 0 mismatches")
    assert checked["events"] >= ENGINE_EXAMPLES * ENGINE_STEPS[0]  # at least 1,000


def _counters_forget(tenant) -> None:
    """Redis loses the tenant's limit counters (a restart, an eviction); the next earning
    must seed them again from the ledger."""
    if not django_settings.REDIS_URL:
        return
    client = get_redis_connection("default")
    keys = client.keys(f"*limit:{tenant.pk}:*")
    if keys:
        client.delete(*keys)


def _members_configure(data, tenant, program: Program, member_tiers: dict) -> tuple[dict, dict]:
    """Daily limits (the tenant's default, some members their own) and tiers, drawn."""
    default_limit = data.draw(st.sampled_from(DAILY_LIMITS), label="daily limit")
    limit_upsert(tenant=tenant, scope="USER", max_per_day=default_limit)
    limits, tiers = {}, {}
    member_tiers.clear()
    for ref in MEMBERS:
        own = data.draw(st.one_of(st.none(), st.sampled_from(DAILY_LIMITS)), label=f"daily limit of {ref}")
        if own is not None:
            limit_upsert(tenant=tenant, scope="USER", member_ref=ref, max_per_day=own)
        limits[ref] = default_limit if own is None else own
        tiers[ref] = data.draw(st.sampled_from(TIERS), label=f"tier of {ref}")
        member_tiers[ref] = TierContext(tiers[ref], program.tier_factors[tiers[ref]])
    return limits, tiers


def _refund_draw(data, step: int, earnings: dict[str, Earning], seen: dict) -> tuple[dict, object]:
    """A refund, and what the oracle expects of it: an error code, or
    (earning, cents refunded, points to reverse)."""
    earned = st.sampled_from(sorted(earnings))
    original = data.draw(
        st.one_of(earned, earned, earned, st.sampled_from(sorted(seen)), st.just("never-sent")), label="original"
    )
    earning = earnings.get(original)
    if earning is None:
        cents = data.draw(st.one_of(st.none(), st.integers(1, 10_000)), label="refund cents")
    else:
        left = earning.cents - earning.refunded_cents
        cents = data.draw(
            st.one_of(st.none(), st.integers(1, earning.cents), st.just(max(left, 1))), label="refund cents"
        )
    event = {"type": "transaction.refunded", "event_id": f"r-{step}", "original_event_id": original}
    event["occurred_at"] = BASE
    if cents is not None:
        event["amount"] = Decimal(cents) * CENT
    if earning is None:
        return event, "unknown_original_event"
    refund_cents = earning.cents - earning.refunded_cents if cents is None else cents
    if refund_cents <= 0 or earning.refunded_cents + refund_cents > earning.cents:
        return event, "refund_exceeds_original"
    total = oracle_reversed_total(
        awarded=earning.awarded, refunded_cents=earning.refunded_cents + refund_cents, amount_cents=earning.cents
    )
    return event, (earning, refund_cents, total - earning.reversed)
