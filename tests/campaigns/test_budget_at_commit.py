"""Budgets are spent at the end of each event (the stats row's lock held only until commit),
and an event that finds the budget gone by then is applied again knowing it. On real
PostgreSQL connections, concurrently: never more than the budget, nothing counted twice or
lost, and the ledger, incentives and stats agree."""

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F, Sum

from campaigns.models import CampaignStats, Incentive
from rewards.models import Account
from rewards.selectors import ledger_verify
from tests.campaigns.helpers import action, action_rule, campaign_make, ingest
from tests.factories import TenantFactory
from tests.rewards.test_earning_concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 16


def test_two_budgets_spent_by_the_same_concurrent_events_stop_exactly_where_they_run_out():
    # given two campaigns on the same action, one with a points budget that 7 does not divide,
    # one with a cashback budget in money
    tenant = TenantFactory()
    points = campaign_make(tenant, rule=action_rule("app.login", points=7), budget_amount=Decimal(1000), priority=2)
    cashback = campaign_make(
        tenant,
        rule={
            "trigger": {"eventTypes": ["action"], "actionCodes": ["app.login"]},
            "reward": {"type": "CASHBACK", "amount": "1.25"},
        },
        budget_amount=Decimal("50.00"),
        priority=1,
    )

    # when 300 events from 100 members arrive at once
    results = run_in_threads(
        300, lambda i: ingest(tenant, action(f"e-{i}", member_ref=f"m-{i % 100}")).body, workers=WORKERS
    )

    # then each campaign issued exactly what fits, and every count agrees
    assert all("explanation" in r for r in results), [r for r in results if "explanation" not in r][:3]
    issued_points = Incentive.objects.filter(campaign=points, status="ISSUED")
    issued_cash = Incentive.objects.filter(campaign=cashback, status="ISSUED")
    assert issued_points.count() == 1000 // 7
    assert issued_cash.count() == 40  # 50.00 / 1.25
    for campaign, issued in ((points, issued_points), (cashback, issued_cash)):
        stats = CampaignStats.objects.get(pk=campaign.pk)
        assert stats.rewards_issued == issued.count()
        assert stats.amount_issued == issued.aggregate(s=Sum("reward_amount"))["s"]
        assert stats.amount_issued <= campaign.budget_amount
    # the points the members hold are exactly the points incentives issued
    balances = Account.objects.filter(tenant=tenant, kind=Account.Kind.MEMBER).aggregate(s=Sum("balance"))["s"]
    assert balances == 7 * (1000 // 7) == sum(r["points"] for r in results)
    outcomes = [
        {i["campaignId"]: i["outcome"] for i in r["explanation"]["incentives"]} for r in results if r.get("explanation")
    ]
    assert sum(o[str(points.pk)] == "issued" for o in outcomes) == 1000 // 7
    assert sum(o[str(cashback.pk)] == "issued" for o in outcomes) == 40
    refused = {outcome for o in outcomes for outcome in o.values() if outcome != "issued"}
    assert refused == {"budget_exhausted"}
    assert ledger_verify(tenant=tenant).ok


def test_an_event_that_finds_the_budget_spent_at_its_end_is_applied_as_if_it_had_known(monkeypatch):
    # given a campaign with room for one more reward, and an event that saw that room
    from campaigns import incentives

    tenant = TenantFactory()
    campaign = campaign_make(tenant, rule=action_rule("app.login", points=5), budget_rewards=1)
    real_spend = incentives._budget_spend
    raced = []

    def rival() -> None:
        try:
            CampaignStats.objects.filter(pk=campaign.pk).update(rewards_issued=F("rewards_issued") + 1)
        finally:
            connection.close()

    def spend_after_a_rival(rule, amount, **kwargs):
        if not raced:
            # A concurrent event, on its own connection, takes the last reward just before this
            # one's end. It does not wait: this event has not touched the stats row until now.
            raced.append(True)
            thread = threading.Thread(target=rival)
            thread.start()
            thread.join(timeout=10)
            assert not thread.is_alive()
        return real_spend(rule, amount, **kwargs)

    monkeypatch.setattr(incentives, "_budget_spend", spend_after_a_rival)

    # when the event reaches its end
    outcome = ingest(tenant, action("e-1", member_ref="m-1"))

    # then it was rolled back and applied again without the campaign: no points, no incentive,
    # and the budget counted once (the rival's)
    assert outcome.status_code == 201, outcome.body
    assert outcome.body["points"] == 0
    assert outcome.body["explanation"]["incentives"][0]["outcome"] == "budget_exhausted"
    assert not Incentive.objects.filter(campaign=campaign).exists()
    assert CampaignStats.objects.get(pk=campaign.pk).rewards_issued == 1
    assert not Account.objects.filter(tenant=tenant, kind=Account.Kind.MEMBER, balance__gt=0).exists()
    assert ledger_verify(tenant=tenant).ok
