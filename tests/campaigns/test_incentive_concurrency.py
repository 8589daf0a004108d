"""Campaign incentives raced over real PostgreSQL connections: a budget is never overspent,
a quest completes exactly once whatever the order its steps arrive in, a coupon code goes
to one member only."""

import random

import pytest
from django.db.models import Count

from campaigns.models import CampaignStats, CouponCode, CouponPool, Incentive, QuestProgress
from rewards.models import Account
from rewards.selectors import ledger_verify
from tests.campaigns.helpers import action, action_rule, campaign_make, ingest, quest_rule
from tests.factories import TenantFactory
from tests.rewards.test_earning_concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

# Connections are shared with other test runs on this PostgreSQL: keep the pool modest.
WORKERS = 16


def test_500_concurrent_qualifying_events_against_a_budget_of_100_issue_exactly_100():
    tenant = TenantFactory()
    campaign = campaign_make(tenant, rule=action_rule("app.login", points=7), budget_rewards=100)

    results = run_in_threads(
        500, lambda i: ingest(tenant, action(f"e-{i}", member_ref=f"m-{i % 250}")).body, workers=WORKERS
    )

    given = [r["points"] for r in results]
    assert given.count(7) == 100 and given.count(0) == 400
    assert Incentive.objects.filter(campaign=campaign).count() == 100
    assert CampaignStats.objects.get(pk=campaign.pk).rewards_issued == 100
    members = Account.objects.filter(tenant=tenant, kind=Account.Kind.MEMBER)
    assert sum(members.values_list("balance", flat=True)) == 700
    refused = [r for r in results if r["points"] == 0]
    assert all(r["explanation"]["incentives"][0]["outcome"] == "budget_exhausted" for r in refused)
    assert ledger_verify(tenant=tenant).ok


def test_a_three_step_quest_completes_exactly_once_when_its_steps_arrive_concurrently_out_of_order():
    tenant = TenantFactory()
    steps = ("app.open", "profile.complete", "app.share")
    campaign = campaign_make(tenant, type="QUEST", rule=quest_rule(*steps, points=500))
    rng = random.Random(7)
    events = []
    for m in range(40):
        # Each member sends every step twice (a double tap), shuffled among everyone's.
        events += [action(f"m{m}-{code}-{n}", member_ref=f"m-{m}", code=code) for code in steps for n in (1, 2)]
    rng.shuffle(events)

    results = run_in_threads(len(events), lambda i: ingest(tenant, events[i]).body, workers=WORKERS)

    per_member = dict(
        Incentive.objects.filter(campaign=campaign).values_list("member__external_ref").annotate(n=Count("pk"))
    )
    assert per_member == {f"m-{m}": 1 for m in range(40)}
    assert sum(r["points"] for r in results) == 40 * 500
    completed = QuestProgress.objects.filter(campaign=campaign, completed_at__isnull=False)
    assert completed.values("member").distinct().count() == 40
    assert ledger_verify(tenant=tenant).ok


def test_concurrent_winners_never_share_a_coupon_code():
    tenant = TenantFactory()
    pool = CouponPool.objects.create(tenant=tenant, code="spring", name="Spring")
    CouponCode.objects.bulk_create(CouponCode(tenant=tenant, pool=pool, code=f"C{i:03}") for i in range(30))
    campaign_make(tenant, rule={"trigger": {"eventTypes": ["action"]}, "reward": {"type": "COUPON", "pool": "spring"}})

    results = run_in_threads(60, lambda i: ingest(tenant, action(f"e-{i}", member_ref=f"m-{i}")).body, workers=WORKERS)

    issued = [r for r in results if r["explanation"]["incentives"][0]["outcome"] == "issued"]
    assert len(issued) == 30
    assigned = CouponCode.objects.filter(pool=pool, member__isnull=False)
    assert assigned.count() == 30
    assert assigned.values("member").distinct().count() == 30
    assert Incentive.objects.filter(coupon__isnull=False).values("coupon").distinct().count() == 30
