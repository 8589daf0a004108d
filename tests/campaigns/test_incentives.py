"""The incentive calculator through the earning engine: what campaigns give, when they give
nothing, budgets, caps, limits, stacking, coupons, quests, refunds, the outbound payload."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone
from jsonschema import Draft202012Validator

from campaigns.models import (
    Campaign,
    CampaignMemberUsage,
    CampaignStats,
    Cohort,
    CohortMember,
    CouponCode,
    CouponPool,
    Incentive,
    QuestProgress,
)
from rewards.models import Account, OutboxEvent
from rewards.selectors import ledger_verify
from tenants.services import limit_upsert
from tests.campaigns.helpers import (
    action,
    action_rule,
    campaign_make,
    ingest,
    purchase,
    quest_rule,
    refund,
)
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

# Seed 001 §1.5, as a schema: exactly these fields, ids as UUIDs, the time in UTC.
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
INCENTIVE_NOTIFICATION = {
    "type": "object",
    "properties": {
        "type": {"const": "INCENTIVE_NOTIFICATION"},
        "incentiveId": {"type": "string", "pattern": UUID},
        "campaignId": {"type": "string", "pattern": UUID},
        "reward": {
            "type": "object",
            "properties": {
                "currency": {"type": "string", "minLength": 1},
                "amount": {
                    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^\d+\.\d{2}$"}]
                },
            },
            "required": ["currency", "amount"],
            "additionalProperties": False,
        },
        "issuedAt": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"},
    },
    "required": ["type", "incentiveId", "campaignId", "reward", "issuedAt"],
    "additionalProperties": False,
}


def balance(tenant, ref: str) -> int:
    account = Account.objects.filter(tenant=tenant, member__external_ref=ref, kind=Account.Kind.MEMBER).first()
    return account.balance if account else 0


def outcomes(result_body: dict) -> list[str]:
    return [i["outcome"] for i in result_body["explanation"]["incentives"]]


def test_an_action_campaign_credits_points_and_announces_them_in_the_seed_shape(tenant):
    campaign = campaign_make(tenant, rule=action_rule("app.login", points=50))

    outcome = ingest(tenant, action("a-1"))

    assert outcome.status_code == 201, outcome.body
    assert outcome.body["points"] == 50
    assert balance(tenant, "m-1") == 50
    incentive = Incentive.objects.get()
    assert (incentive.campaign_id, incentive.type, incentive.reward_currency) == (campaign.pk, "POINTS", "POINTS")
    assert incentive.reward_amount == 50 and incentive.event_id == "a-1"
    assert outcome.body["explanation"]["incentives"][0]["incentiveId"] == str(incentive.pk)
    event = OutboxEvent.objects.get(type="incentive.generated")
    Draft202012Validator(INCENTIVE_NOTIFICATION).validate(event.data)
    assert event.data["reward"] == {"currency": "POINTS", "amount": 50}
    assert event.data["incentiveId"] == str(incentive.pk) and event.member_ref == "m-1"
    assert CampaignStats.objects.get(pk=campaign.pk).rewards_issued == 1
    assert ledger_verify(tenant=tenant).ok


def test_another_action_code_or_event_type_triggers_nothing(tenant):
    campaign_make(tenant, rule=action_rule("app.login"))

    assert ingest(tenant, action("a-1", code="app.open")).body["points"] == 0
    assert ingest(tenant, purchase("p-1", amount="3.00")).body["points"] == 3
    assert not Incentive.objects.exists()


def test_double_points_on_dining_doubles_only_dining(tenant):
    rule = {
        "trigger": {"eventTypes": ["transaction.created"]},
        "conditions": {"==": [{"var": "event.category"}, "dining"]},
        "reward": {"type": "POINTS", "multiplier": "2"},
    }
    campaign_make(tenant, rule=rule)

    dining = ingest(tenant, purchase("p-1", amount="40.00", category="dining"))
    other = ingest(tenant, purchase("p-2", amount="40.00", category="travel"))

    assert dining.body["points"] == 80
    assert dining.body["explanation"]["basePoints"] == 40
    assert other.body["points"] == 40
    assert outcomes(other.body) == ["conditions_not_met"]
    assert Incentive.objects.get().reward_amount == 40


def test_percent_cashback_is_exact_money_and_no_points(tenant):
    rule = {
        "trigger": {"eventTypes": ["transaction.created"]},
        "conditions": {">=": [{"var": "event.amount"}, 20]},
        "reward": {"type": "CASHBACK", "percent": "7.5", "maxAmount": "5.00"},
    }
    campaign_make(tenant, rule=rule)

    small = ingest(tenant, purchase("p-1", amount="19.99"))
    mid = ingest(tenant, purchase("p-2", amount="33.33"))
    big = ingest(tenant, purchase("p-3", amount="1000.00"))

    assert [small.body["points"], mid.body["points"], big.body["points"]] == [19, 33, 1000]
    amounts = list(Incentive.objects.order_by("issued_at", "event_id").values_list("event_id", "reward_amount"))
    assert amounts == [("p-2", Decimal("2.4900")), ("p-3", Decimal("5.0000"))]  # 7.5% of 33.33 = 2.49975, down
    payloads = [e.data for e in OutboxEvent.objects.filter(type="incentive.generated").order_by("created_at")]
    for payload in payloads:
        Draft202012Validator(INCENTIVE_NOTIFICATION).validate(payload)
    assert sorted(p["reward"]["amount"] for p in payloads) == ["2.49", "5.00"]
    assert {p["reward"]["currency"] for p in payloads} == {"USD"}


@pytest.mark.parametrize("status", ["DRAFT", "PAUSED", "ENDED"])
def test_a_campaign_that_is_not_active_issues_nothing(tenant, status):
    campaign_make(tenant, rule=action_rule(), status=status)

    outcome = ingest(tenant, action("a-1"))

    assert outcome.body["points"] == 0
    assert not Incentive.objects.exists()
    assert not OutboxEvent.objects.filter(type="incentive.generated").exists()


def test_a_paused_campaign_stops_at_once_and_resumes(tenant, django_capture_on_commit_callbacks):
    campaign = campaign_make(tenant, rule=action_rule())
    assert ingest(tenant, action("a-1")).body["points"] == 50  # the active campaigns are cached now

    # The cache of active campaigns is retired when the change commits.
    with django_capture_on_commit_callbacks(execute=True):
        campaign.status = Campaign.Status.PAUSED
        campaign.save(update_fields=["status"])
    assert ingest(tenant, action("a-2")).body["points"] == 0

    with django_capture_on_commit_callbacks(execute=True):
        campaign.status = Campaign.Status.ACTIVE
        campaign.save(update_fields=["status"])
    assert ingest(tenant, action("a-3")).body["points"] == 50
    assert Incentive.objects.count() == 2


def test_a_scheduled_campaign_starts_and_ends_on_time(tenant):
    start = timezone.now().replace(microsecond=0) + timedelta(days=2)
    end = start + timedelta(days=1)
    campaign_make(tenant, rule=action_rule(), start_at=start, end_at=end)

    def at(moment, event_id):
        with mock.patch("django.utils.timezone.now", return_value=moment):
            return ingest(tenant, action(event_id, occurredAt=moment.isoformat())).body

    assert at(start - timedelta(seconds=1), "before")["points"] == 0
    assert outcomes(at(start - timedelta(seconds=1), "before-2")) == ["not_live"]
    assert at(start, "first-second")["points"] == 50
    assert at(end - timedelta(seconds=1), "last-second")["points"] == 50
    assert at(end, "after")["points"] == 0
    assert sorted(Incentive.objects.values_list("event_id", flat=True)) == ["first-second", "last-second"]


def test_an_event_that_happened_before_the_campaign_started_gets_nothing(tenant):
    start = timezone.now() - timedelta(hours=1)
    campaign_make(tenant, rule=action_rule(), start_at=start)

    late = ingest(tenant, action("a-1", occurredAt=(start - timedelta(minutes=5)).isoformat()))

    assert late.body["points"] == 0


def test_budget_of_rewards_and_of_amount(tenant):
    by_count = campaign_make(tenant, rule=action_rule("app.login", points=10), budget_rewards=2)
    by_amount = campaign_make(tenant, rule=action_rule("app.share", points=30), budget_amount=Decimal(70))

    logins = [ingest(tenant, action(f"l-{i}", member_ref=f"m-{i}")).body["points"] for i in range(4)]
    shares = [ingest(tenant, action(f"s-{i}", member_ref=f"m-{i}", code="app.share")).body["points"] for i in range(4)]

    assert logins == [10, 10, 0, 0]
    assert shares == [30, 30, 0, 0]  # a third 30 would pass 70
    assert CampaignStats.objects.get(pk=by_count.pk).rewards_issued == 2
    assert CampaignStats.objects.get(pk=by_amount.pk).amount_issued == 60


def test_per_member_cap_per_day_resets_the_next_day(tenant):
    campaign_make(tenant, rule=action_rule(points=5), member_cap_rewards=2, member_cap_period="DAY")
    today = timezone.now()

    with mock.patch("django.utils.timezone.now", return_value=today):
        first = [ingest(tenant, action(f"a-{i}")).body["points"] for i in range(3)]
        other_member = ingest(tenant, action("b-1", member_ref="m-2")).body["points"]
    with mock.patch("django.utils.timezone.now", return_value=today + timedelta(days=1)):
        tomorrow = ingest(tenant, action("a-9", occurredAt=(today + timedelta(days=1)).isoformat())).body

    assert first == [5, 5, 0] and other_member == 5
    assert tomorrow["points"] == 5
    assert sorted(CampaignMemberUsage.objects.values_list("rewards", flat=True)) == [1, 1, 2]


def test_points_limits_cut_incentives_after_base_points_and_give_budget_back(tenant):
    limit_upsert(tenant=tenant, scope="USER", max_per_day=50)
    rule = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 100}}
    campaign = campaign_make(tenant, rule=rule, budget_amount=Decimal(1000))

    first = ingest(tenant, purchase("p-1", amount="40.00"))
    second = ingest(tenant, purchase("p-2", amount="40.00"))

    assert first.body["points"] == 50  # 40 base + 10 of the 100 the campaign offered
    assert second.body["points"] == 0
    incentive = Incentive.objects.get()
    assert incentive.reward_amount == 10 and incentive.explanation["limitedFrom"] == 100
    stats = CampaignStats.objects.get(pk=campaign.pk)
    assert (stats.rewards_issued, stats.amount_issued) == (1, 10)  # the second one was dropped and given back
    event = OutboxEvent.objects.get(type="incentive.generated")
    assert event.data["reward"]["amount"] == 10


def test_an_exclusive_campaign_applies_alone(tenant):
    campaign_make(tenant, rule=action_rule(points=10), name="stackable", priority=1)
    exclusive = campaign_make(tenant, rule=action_rule(points=100), name="exclusive", priority=5, stacking="EXCLUSIVE")
    campaign_make(tenant, rule=action_rule(points=1000), name="low exclusive", priority=0, stacking="EXCLUSIVE")

    outcome = ingest(tenant, action("a-1"))

    assert outcome.body["points"] == 100
    assert Incentive.objects.get().campaign_id == exclusive.pk
    assert outcomes(outcome.body) == ["issued", "excluded"]


def test_stackable_campaigns_add_up(tenant):
    campaign_make(tenant, rule=action_rule(points=10))
    campaign_make(tenant, rule=action_rule(points=15))

    assert ingest(tenant, action("a-1")).body["points"] == 25
    assert Incentive.objects.count() == 2


def test_cohort_and_member_conditions(tenant):
    lapsed = Cohort.objects.create(tenant=tenant, name="Lapsed", code="lapsed", kind="STATIC")
    insider = MemberFactory(tenant=tenant, external_ref="m-in", attributes={"city": "Lisbon"})
    MemberFactory(tenant=tenant, external_ref="m-out", attributes={"city": "Lisbon"})
    CohortMember.objects.create(tenant=tenant, cohort=lapsed, member=insider)
    campaign_make(tenant, rule=action_rule(points=20), cohort=lapsed)
    conditions = {
        "and": [{"==": [{"var": "member.attributes.city"}, "Lisbon"]}, {"in": ["lapsed", {"var": "member.cohorts"}]}]
    }
    campaign_make(tenant, rule=action_rule(points=3, conditions=conditions))

    inside = ingest(tenant, action("a-1", member_ref="m-in"))
    outside = ingest(tenant, action("a-2", member_ref="m-out"))

    assert inside.body["points"] == 23
    assert outside.body["points"] == 0
    assert sorted(outcomes(outside.body)) == ["conditions_not_met", "not_in_cohort"]


def test_coupons_are_handed_out_one_code_each_until_the_pool_is_empty(tenant):
    pool = CouponPool.objects.create(tenant=tenant, code="welcome", name="Welcome")
    for code in ("AAA", "BBB"):
        CouponCode.objects.create(tenant=tenant, pool=pool, code=code)
    rule = {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "COUPON", "pool": "welcome"}}
    campaign = campaign_make(tenant, rule=rule)

    results = [ingest(tenant, action(f"a-{i}", member_ref=f"m-{i}")).body for i in range(3)]

    assert [outcomes(r) for r in results] == [["issued"], ["issued"], ["coupons_exhausted"]]
    codes = dict(CouponCode.objects.values_list("code", "member__external_ref"))
    assert codes == {"AAA": "m-0", "BBB": "m-1"}
    assert CampaignStats.objects.get(pk=campaign.pk).rewards_issued == 2
    for event in OutboxEvent.objects.filter(type="incentive.generated"):
        Draft202012Validator(INCENTIVE_NOTIFICATION).validate(event.data)
        assert event.data["reward"] == {"currency": "COUPON", "amount": 1}


def test_a_quest_completes_once_when_its_steps_are_done(tenant):
    campaign = campaign_make(tenant, type="QUEST", rule=quest_rule("app.open", "profile.complete", "app.share"))

    results = [
        ingest(tenant, action("q-1", code="app.share")).body,
        ingest(tenant, action("q-2", code="app.open")).body,
        ingest(tenant, action("q-3", code="app.open")).body,  # a repeat of a step already done
        ingest(tenant, action("q-4", code="profile.complete")).body,
        ingest(tenant, action("q-5", code="app.share")).body,
    ]

    assert [r["points"] for r in results] == [0, 0, 0, 500, 0]
    assert "profile.complete 0/1" in results[0]["explanation"]["incentives"][0]["detail"]
    incentive = Incentive.objects.get(campaign=campaign)
    assert incentive.event_id == "q-4" and incentive.completion_key == "quest"
    assert QuestProgress.objects.filter(incentive=incentive).count() == 4
    assert "already completed" in results[4]["explanation"]["incentives"][0]["detail"]


def test_quest_steps_must_fall_within_the_window(tenant):
    campaign_make(tenant, type="QUEST", rule=quest_rule("app.open", "app.share", within_days=7))
    start = timezone.now() - timedelta(days=20)

    stale = ingest(tenant, action("q-1", code="app.open", occurredAt=start.isoformat())).body
    fresh = ingest(tenant, action("q-2", code="app.share", occurredAt=(start + timedelta(days=10)).isoformat())).body
    again = ingest(tenant, action("q-3", code="app.open", occurredAt=(start + timedelta(days=12)).isoformat())).body

    assert [stale["points"], fresh["points"], again["points"]] == [0, 0, 500]


def test_a_purchase_quest_step_is_taken_back_by_a_full_refund(tenant):
    rule = {
        "quest": {"steps": [{"eventType": "transaction.created", "count": 2}, {"actionCode": "app.share", "count": 1}]},
        "reward": {"type": "POINTS", "points": 300},
    }
    campaign_make(tenant, type="QUEST", rule=rule)

    ingest(tenant, purchase("p-1", amount="10.00"))
    ingest(tenant, purchase("p-2", amount="10.00"))
    ingest(tenant, refund("r-1", "p-1"))
    after_refund = ingest(tenant, action("s-1", code="app.share")).body
    ingest(tenant, purchase("p-3", amount="10.00"))

    assert after_refund["points"] == 0
    assert "transaction.created 1/2" in after_refund["explanation"]["incentives"][0]["detail"]
    assert Incentive.objects.get().event_id == "p-3"
    assert balance(tenant, "m-1") == 10 + 10 + 300


def test_a_refund_reverses_the_incentives_its_purchase_caused_and_gives_budget_back(tenant):
    rule = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "multiplier": "3"}}
    campaign = campaign_make(tenant, rule=rule, budget_amount=Decimal(1000), member_cap_rewards=5)
    cash = campaign_make(
        tenant,
        rule={"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "CASHBACK", "percent": "10"}},
    )

    earned = ingest(tenant, purchase("p-1", amount="100.00")).body
    half = ingest(tenant, refund("r-1", "p-1", amount="50.00")).body
    stats_half = CampaignStats.objects.get(pk=campaign.pk)
    rest = ingest(tenant, refund("r-2", "p-1")).body

    assert earned["points"] == 300
    assert half["points"] == -150
    assert (stats_half.rewards_issued, stats_half.amount_issued) == (1, 100)  # 200 extra points, half given back
    assert rest["points"] == -150
    points_incentive = Incentive.objects.get(campaign=campaign)
    cash_incentive = Incentive.objects.get(campaign=cash)
    assert points_incentive.status == cash_incentive.status == "REVERSED"
    assert points_incentive.reversed_amount == 200 and cash_incentive.reversed_amount == Decimal("10.00")
    stats = CampaignStats.objects.get(pk=campaign.pk)
    assert (stats.rewards_issued, stats.amount_issued) == (0, 0)
    assert CampaignMemberUsage.objects.get(campaign=campaign).rewards == 0
    assert OutboxEvent.objects.filter(type="incentive.reversed").count() == 4
    assert {i["campaignId"] for i in rest["explanation"]["incentivesReversed"]} == {str(campaign.pk), str(cash.pk)}
    assert balance(tenant, "m-1") == 0
    assert ledger_verify(tenant=tenant).ok


def test_a_dry_run_issues_nothing_and_spends_no_budget(tenant, api_client):
    campaign = campaign_make(tenant, rule=action_rule(points=40), budget_rewards=1)

    response = api_client.post(
        "/api/v1/events?dryRun=true",
        {"type": "action", "eventId": "a-1", "memberRef": "m-1", "actionCode": "app.login"},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["points"] == 40
    assert response.json()["explanation"]["incentives"][0]["outcome"] == "issued"
    assert not Incentive.objects.exists()
    assert CampaignStats.objects.get(pk=campaign.pk).rewards_issued == 0
    assert not OutboxEvent.objects.filter(type="incentive.generated").exists()


def test_a_replayed_event_does_not_issue_again(tenant):
    campaign_make(tenant, rule=action_rule(points=40))

    first = ingest(tenant, action("a-1"))
    again = ingest(tenant, action("a-1"))

    assert again.replayed and again.body == first.body
    assert Incentive.objects.count() == 1 and balance(tenant, "m-1") == 40
