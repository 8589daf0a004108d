"""The set-based batch path (`rewards.batch`): the same outcomes as the events posted one by
one, a handful of statements for a whole batch, nothing half applied, and no lost update or
deadlock when batches and single events race on real connections."""

import random
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize

from campaigns.models import CampaignStats, Incentive
from rewards import batch as batch_module
from rewards.api.events import event_validate
from rewards.batch import events_apply
from rewards.earning import event_ingest
from rewards.models import Account, EarnedLot, InboundEvent, Member, MultiplierUsage, OutboxEvent, Transfer
from rewards.selectors import ledger_verify
from rewards.services import member_create
from tenants.services import limit_upsert
from tests.campaigns.helpers import action, campaign_make, purchase, refund
from tests.factories import TenantFactory
from tests.rewards.test_earning_concurrency import run_in_threads
from tiers.models import QualifyingPoints, Tier, TierAssignment, TierHistory

pytestmark = pytest.mark.django_db(transaction=True)

MEMBERS = [f"m-{i}" for i in range(8)]


def _validated(body: dict) -> dict:
    return event_validate(underscoreize(body, **camel_settings.JSON_UNDERSCOREIZE))


def _program(tenant) -> None:
    """Everything that can make an event leave the set-based lane, and members to earn."""
    from rewards.models import Multiplier, SpendCategory

    dining = SpendCategory.objects.create(tenant=tenant, code="dining", name="Dining")
    travel = SpendCategory.objects.create(tenant=tenant, code="travel", name="Travel")
    Multiplier.objects.create(tenant=tenant, category=dining, factor=Decimal(2))
    Multiplier.objects.create(tenant=tenant, category=travel, factor=Decimal(3), cap_points=150, cap_period="DAY")
    Tier.objects.create(tenant=tenant, tier_id="base", names={"en": "Base"}, min_points=0)
    Tier.objects.create(
        tenant=tenant, tier_id="silver", names={"en": "Silver"}, min_points=900, earn_multiplier=Decimal("1.5")
    )
    limit_upsert(tenant=tenant, scope="USER", max_per_day=2500)
    campaign_make(
        tenant,
        name="Big baskets",
        rule={
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {">=": [{"var": "event.amount"}, 400]},
            "reward": {"type": "POINTS", "points": 25},
        },
        budget_rewards=6,
    )
    campaign_make(
        tenant,
        name="Dining twice a day",
        rule={
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {"==": [{"var": "event.category"}, "dining"]},
            "reward": {"type": "POINTS", "points": 10},
        },
        member_cap_rewards=2,
    )
    campaign_make(
        tenant,
        name="Travel cashback",
        rule={
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {"==": [{"var": "event.category"}, "travel"]},
            "reward": {"type": "CASHBACK", "amount": "1.25"},
        },
    )
    for ref in MEMBERS:
        member_create(tenant=tenant, external_ref=ref)
    Member.objects.filter(tenant=tenant, external_ref="m-7").update(status=Member.Status.SUSPENDED)


def _events(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for i in range(90):
        ref = rng.choice([*MEMBERS, "new-1", "new-2"])
        amount = rng.choice(["12.50", "80.00", "150.00", "420.00", "35.99"])
        extra = {}
        roll = rng.random()
        if roll < 0.25:
            extra["category"] = "dining"
        elif roll < 0.35:
            extra["category"] = "travel"
        events.append(purchase(f"p-{i}", member_ref=ref, amount=amount, **extra))
        if i % 29 == 3:
            events.append(action(f"a-{i}", member_ref=ref))
    # Last: a refund's limit headroom comes back when its transaction commits, which for a
    # batch is at its end (rewards.batch), so a purchase after it in the batch would not see it.
    events += [refund(f"r-{i}", original=f"p-{i}", amount="10.00") for i in (5, 22, 39, 56)]
    events.append(purchase("p-3", member_ref=events[3].get("memberRef", "m-0"), amount="1.00"))  # eventId reused
    events.append(dict(events[0]))  # the same event twice
    events.append(purchase("eur-1", member_ref="m-1", currency="EUR"))
    return events


def _normal(value):
    """An outcome without what differs between tenants (ids of rows and campaigns)."""
    if isinstance(value, dict):
        drop = {"transfer_id", "transferId", "incentiveId", "campaignId", "source", "multiplierId"}
        return {k: _normal(v) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _state(tenant) -> dict:
    members = {}
    for member in Member.objects.filter(tenant=tenant):
        account = Account.objects.get(member=member, kind=Account.Kind.MEMBER)
        assignment = TierAssignment.objects.filter(member=member).select_related("tier").first()
        members[member.external_ref] = (
            account.balance,
            EarnedLot.objects.filter(member=member).aggregate(s=Sum("remaining"))["s"],
            assignment.tier.tier_id if assignment and assignment.tier else None,
            QualifyingPoints.objects.filter(member=member).aggregate(s=Sum("points"))["s"],
            MultiplierUsage.objects.filter(member=member).aggregate(s=Sum("extra_points"))["s"],
        )
    return {
        "members": members,
        "transfers": Counter(Transfer.objects.filter(tenant=tenant).values_list("kind", flat=True)),
        "outbox": Counter(OutboxEvent.objects.filter(tenant=tenant).values_list("type", flat=True)),
        "inbox": Counter(InboundEvent.objects.filter(tenant=tenant).values_list("status", flat=True)),
        "tier_history": Counter(
            TierHistory.objects.filter(tenant=tenant).values_list(
                "member__external_ref", "from_tier__tier_id", "to_tier__tier_id", "reason", "event_id"
            )
        ),
        "incentives": Counter(
            Incentive.objects.filter(tenant=tenant).values_list("campaign__name", "type", "reward_amount")
        ),
        "stats": sorted(
            CampaignStats.objects.filter(campaign__tenant=tenant).values_list(
                "campaign__name", "rewards_issued", "amount_issued"
            )
        ),
    }


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_a_batch_answers_and_writes_exactly_what_the_same_events_one_by_one_do(seed):
    # given two tenants with the same program, members, limits, tiers and a campaign
    one_by_one, batched = TenantFactory(), TenantFactory()
    _program(one_by_one)
    _program(batched)
    events = [_validated(body) for body in _events(seed)]

    # when one takes the events one at a time and the other as one batch
    singles = []
    for event in events:
        try:
            singles.append(event_ingest(tenant=one_by_one, event=dict(event)))
        except Exception as exc:  # noqa: BLE001 - an eventId reused: the API answers it as this event's result
            singles.append(exc)
    outcomes = events_apply(tenant=batched, events=[dict(event) for event in events])

    # then every answer is the same, in order
    assert len(outcomes) == len(events)
    for event, single, outcome in zip(events, singles, outcomes, strict=True):
        if isinstance(single, Exception):
            assert outcome.status_code == single.status_code == 409, event["event_id"]
            continue
        assert (outcome.status_code, outcome.replayed) == (single.status_code, single.replayed), event["event_id"]
        assert _normal(outcome.body) == _normal(single.body), event["event_id"]
    # and so is everything written: balances, lots, tiers, qualifying points, ledger and outbox
    assert _state(batched) == _state(one_by_one)
    assert ledger_verify(tenant=batched).ok
    # and the events were varied enough to take both lanes, and to reach a tier
    statuses = Counter(o.status_code for o in outcomes)
    assert sum(o.replayed for o in outcomes) == 1  # the event sent twice
    assert statuses[201] > 50 and statuses[422] >= 2 and statuses[409] == 1
    assert _state(batched)["members"]["m-0"][2] in {"base", "silver"}
    assert any(tier == "silver" for *_, tier, _q, _caps in _state(batched)["members"].values())
    assert any(caps == 150 for *_, caps in _state(batched)["members"].values())  # a cap reached
    given = Counter(
        i["outcome"] for o in outcomes if o.status_code == 201 for i in o.body["explanation"].get("incentives", [])
    )
    assert given["issued"] > 6 and given["budget_exhausted"] > 0 and given["member_cap_reached"] > 0


def test_a_batch_of_purchases_by_known_members_costs_a_few_statements_not_a_few_per_event():
    # given a tenant whose members are enrolled, with tiers and a limit
    tenant = TenantFactory()
    Tier.objects.create(tenant=tenant, tier_id="base", names={"en": "Base"}, min_points=0)
    Tier.objects.create(tenant=tenant, tier_id="gold", names={"en": "Gold"}, min_points=10**9)
    limit_upsert(tenant=tenant, scope="USER", max_per_day=10**9)
    for i in range(50):
        member_create(tenant=tenant, external_ref=f"m-{i}")
    events_apply(tenant=tenant, events=[_validated(purchase("warm", member_ref="m-0"))])  # caches, system account
    events = [_validated(purchase(f"e-{i}", member_ref=f"m-{i % 50}", amount="20.00")) for i in range(400)]

    # when 400 purchases come as one batch
    with CaptureQueriesContext(connection) as queries:
        outcomes = events_apply(tenant=tenant, events=events)

    # then all are applied with one statement per table, whatever the batch's size
    assert [o.status_code for o in outcomes] == [201] * 400
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    # BEGIN; the inbox rows; the accounts locked; tiers; headroom (assignments, qualifying
    # points); limit counters seeded from the ledger (earned, reversed); then one write per
    # table: balances, transfers, lots, outbox, processed events, qualifying points, inbox
    # results; COMMIT
    assert len(queries.captured_queries) == 16, statements
    assert Transfer.objects.filter(tenant=tenant, kind="EARN").count() == 401
    assert (
        Account.objects.filter(tenant=tenant, kind="MEMBER").aggregate(s=Sum("balance"))["s"]
        == EarnedLot.objects.filter(tenant=tenant).aggregate(s=Sum("remaining"))["s"]
        == 400 * 20 + 100
    )
    assert OutboxEvent.objects.filter(tenant=tenant, type="points.credited").count() == 401
    assert QualifyingPoints.objects.filter(tenant=tenant).aggregate(s=Sum("points"))["s"] == 400 * 20 + 100
    assert ledger_verify(tenant=tenant).ok


def test_tier_upgrades_stay_in_the_batch_and_the_members_next_purchase_earns_in_the_new_tier():
    # given members 100 points below Silver (1.5x), and a batch where each crosses it and buys again
    tenant, one_by_one = TenantFactory(), TenantFactory()
    for t in (tenant, one_by_one):
        Tier.objects.create(tenant=t, tier_id="base", names={"en": "Base"}, min_points=0)
        Tier.objects.create(
            tenant=t, tier_id="silver", names={"en": "Silver"}, min_points=500, earn_multiplier=Decimal("1.5")
        )
        for i in range(30):
            member_create(tenant=t, external_ref=f"m-{i}")
            event_ingest(tenant=t, event=_validated(purchase(f"start-{i}", member_ref=f"m-{i}", amount="400.00")))
    crossing = [_validated(purchase(f"x-{i}", member_ref=f"m-{i}", amount="150.00")) for i in range(30)]
    again = [_validated(purchase(f"y-{i}", member_ref=f"m-{i}", amount="100.00")) for i in range(0, 30, 3)]
    set_before = batch_module.BATCH_EVENTS.labels(lane="set")._value.get()

    # when they come as one batch (and one by one to the other tenant)
    with CaptureQueriesContext(connection) as queries:
        outcomes = events_apply(tenant=tenant, events=[dict(e) for e in crossing + again])
    singles = [event_ingest(tenant=one_by_one, event=dict(e)) for e in crossing + again]

    # then every crossing was applied set-based, and the later purchases earn at 1.5x
    assert [o.body["points"] for o in outcomes] == [150] * 30 + [150] * 10
    assert batch_module.BATCH_EVENTS.labels(lane="set")._value.get() - set_before == 30
    assert [_normal(o.body) for o in outcomes] == [_normal(o.body) for o in singles]
    # and the upgrades, their history and announcements are those of the events one by one
    assert _state(tenant) == _state(one_by_one)
    assert TierAssignment.objects.filter(tenant=tenant, tier__tier_id="silver").count() == 30
    assert OutboxEvent.objects.filter(tenant=tenant, type="vip_tier.assigned").count() == 30 + 30  # default, silver
    assert ledger_verify(tenant=tenant).ok
    # and the 30 crossings' transfers went in with one INSERT; each later purchase wrote its own
    inserts = [q for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "rewards_transfer"')]
    assert len(inserts) == 1 + 10


def test_a_batch_that_fails_midway_leaves_nothing_behind(monkeypatch):
    # given a batch whose lots cannot be written (the database refuses, say)
    tenant = TenantFactory()
    for ref in MEMBERS:
        member_create(tenant=tenant, external_ref=ref)
    events = [_validated(purchase(f"e-{i}", member_ref=MEMBERS[i % 8])) for i in range(40)]

    def refuse(*args, **kwargs):
        raise RuntimeError("lots refused")

    monkeypatch.setattr(batch_module.EarnedLot.objects, "bulk_create", refuse)

    # when it is applied
    with pytest.raises(RuntimeError, match="lots refused"):
        events_apply(tenant=tenant, events=events)

    # then no event, transfer, balance or outbox event of it is left, and the next try applies all
    assert not InboundEvent.objects.filter(tenant=tenant).exists()
    assert not Transfer.objects.filter(tenant=tenant).exists()
    assert Account.objects.filter(tenant=tenant, kind="MEMBER").aggregate(s=Sum("balance"))["s"] == 0
    assert not OutboxEvent.objects.filter(tenant=tenant, type="points.credited").exists()
    monkeypatch.undo()
    assert [o.status_code for o in events_apply(tenant=tenant, events=events)] == [201] * 40


def test_batches_and_single_events_racing_on_the_same_members_lose_nothing_and_apply_each_event_once():
    # given members with a daily limit that the racing events together exceed
    tenant = TenantFactory()
    refs = [f"m-{i}" for i in range(12)]
    for ref in refs:
        member_create(tenant=tenant, external_ref=ref)
    limit_upsert(tenant=tenant, scope="USER", max_per_day=1500)
    bodies = [purchase(f"e-{i}", member_ref=refs[i % 12], amount="30.00") for i in range(600)]

    def post(i: int):
        # 8 batches of 50 (shuffled, overlapping members, some events in two batches), then singles
        if i < 8:
            chunk = bodies[i * 50 : i * 50 + 60]
            random.Random(i).shuffle(chunk)
            return events_apply(tenant=tenant, events=[_validated(b) for b in chunk])
        return [event_ingest(tenant=tenant, event=_validated(bodies[400 + (i - 8)]))]

    results = run_in_threads(8 + 200, post, workers=6)

    # then each event was applied once, the others answered as repeats
    outcomes = [o for batch in results for o in batch]
    applied = [o for o in outcomes if o.status_code == 201]
    assert len(applied) == InboundEvent.objects.filter(tenant=tenant).count() == 600
    assert sum(o.replayed for o in outcomes) == len(outcomes) - 600
    # and no member went past the limit, and every balance is its ledger's
    for ref in refs:
        account = Account.objects.get(member__tenant=tenant, member__external_ref=ref, kind="MEMBER")
        assert account.balance <= 1500
        credited = Transfer.objects.filter(credit_account=account).aggregate(s=Sum("amount"))["s"] or 0
        assert (
            account.balance
            == credited
            == EarnedLot.objects.filter(member=account.member).aggregate(s=Sum("remaining"))["s"]
        )
    assert (
        sum(o.body["points"] for o in applied) == Transfer.objects.filter(tenant=tenant).aggregate(s=Sum("amount"))["s"]
    )
    assert ledger_verify(tenant=tenant).ok
