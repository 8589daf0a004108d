"""Campaign management through the API (seed 001 §1.3): create, update (PUT), get, list with
filters, the lifecycle DRAFT -> ACTIVE <-> PAUSED -> ENDED, the schedule that ends campaigns at
their endAt, the catalogs rules name (actions, coupon pools), and members' incentives."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import selectors, services, tasks
from campaigns.config import active_campaigns_get
from campaigns.models import Campaign, CampaignStats, Cohort, CouponCode, Incentive
from campaigns.rules import RULE_SCHEMA
from tests.core.shapes import assert_error
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

# A fixed moment a year or two ahead: campaigns start there, so "now" is before all of them.
T0 = datetime(timezone.now().year + 2, 1, 1, tzinfo=UTC)
SIMPLE_RULE = {
    "trigger": {"eventTypes": ["action"], "actionCodes": ["app.login"]},
    "reward": {"type": "POINTS", "points": 50},
}
QUEST_RULE = {
    "quest": {
        "steps": [{"actionCode": "app.open", "count": 3, "withinDays": 7}, {"actionCode": "review.posted", "count": 1}]
    },
    "reward": {"type": "COUPON", "pool": "welcome-10"},
}
RESPONSE_FIELDS = {
    "id",
    "tenantId",
    "name",
    "description",
    "type",
    "status",
    "startAt",
    "endAt",
    "ruleJson",
    "cohortId",
    "priority",
    "stacking",
    "budgetRewards",
    "budgetAmount",
    "memberCapRewards",
    "memberCapAmount",
    "memberCapPeriod",
    "version",
    "stats",
    "createdAt",
    "updatedAt",
    "activatedAt",
    "endedAt",
}


@pytest.fixture(autouse=True)
def catalog(tenant, other_tenant):
    """The action codes and coupon pool the rules below name, in both tenants."""
    for owner in (tenant, other_tenant):
        for code in ("app.login", "app.open", "review.posted"):
            services.action_upsert(tenant=owner, code=code, description=code)
        services.coupon_pool_create(tenant=owner, code="welcome-10", name="Welcome 10%")


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def body(**changes) -> dict:
    data = {
        "name": "Login bonus",
        "type": "SIMPLE",
        "startAt": iso(T0),
        "endAt": iso(T0 + timedelta(days=30)),
        "ruleJson": SIMPLE_RULE,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not ...}


def create(client, **changes) -> dict:
    response = client.post("/api/v1/campaigns", body(**changes), format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def act(client, campaign_id, verb: str):
    return client.post(f"/api/v1/campaigns/{campaign_id}:{verb}")


def campaign_in(tenant, status: str, **fields) -> Campaign:
    """A campaign brought to `status` through the lifecycle services (now: before T0)."""
    campaign = services.campaign_create(
        tenant=tenant,
        name=fields.pop("name", f"{status.lower()} campaign"),
        type=fields.pop("type", "SIMPLE"),
        start_at=fields.pop("start_at", T0),
        end_at=fields.pop("end_at", T0 + timedelta(days=30)),
        rule_json=fields.pop("rule_json", SIMPLE_RULE),
        **fields,
    )
    path = {
        "DRAFT": [],
        "ACTIVE": ["activate"],
        "PAUSED": ["activate", "pause"],
        "ENDED": ["activate", "end"],
    }[status]
    for verb in path:
        campaign = getattr(services, f"campaign_{verb}")(tenant=tenant, campaign=campaign)
    assert campaign.status == status
    return campaign


# Create, get, update ----------------------------------------------------------------------------


def test_create_makes_a_draft_with_its_stats_and_gives_the_rule_back_unchanged(api_client, tenant):
    # given a rule whose keys the camelCase parser must leave alone (maxPoints, actionCodes)
    rule = {
        "trigger": {"eventTypes": ["transaction.created"]},
        "conditions": {"and": [{">=": [{"var": "event.amount"}, 50]}, {"==": [{"var": "event.category"}, "dining"]}]},
        "reward": {"type": "POINTS", "multiplier": "2", "maxPoints": 1000},
    }

    # when it is created with money and caps
    created = create(
        api_client,
        name="Double dining",
        description="Twice the points at restaurants",
        ruleJson=rule,
        priority=7,
        stacking="EXCLUSIVE",
        budgetRewards=1000,
        budgetAmount="25000.5",
        memberCapRewards=3,
        memberCapAmount="300",
        memberCapPeriod="MONTH",
    )

    # then it is a DRAFT at version 1, its fields as given, its rule untouched
    assert set(created) == RESPONSE_FIELDS
    assert created["tenantId"] == str(tenant.pk)
    assert created["status"] == "DRAFT"
    assert created["version"] == 1
    assert created["ruleJson"] == rule
    assert (created["type"], created["priority"], created["stacking"]) == ("SIMPLE", 7, "EXCLUSIVE")
    assert created["budgetAmount"] == "25000.5000"
    assert created["memberCapAmount"] == "300.0000"
    assert (created["budgetRewards"], created["memberCapRewards"], created["memberCapPeriod"]) == (1000, 3, "MONTH")
    assert created["stats"] == {"rewardsIssued": 0, "amountIssued": "0.0000"}
    assert created["startAt"] == iso(T0)
    assert (created["activatedAt"], created["endedAt"], created["cohortId"]) == (None, None, None)
    # and the stats row its budget is counted in exists
    campaign = Campaign.objects.get(pk=created["id"])
    assert campaign.rule_json == rule
    assert campaign.budget_amount == Decimal("25000.5")
    assert CampaignStats.objects.filter(campaign=campaign, rewards_issued=0).exists()
    # and GET answers the same
    assert api_client.get(f"/api/v1/campaigns/{created['id']}").json() == created


def test_a_quest_with_a_cohort_is_created(api_client, tenant):
    cohort = Cohort.objects.create(tenant=tenant, name="Lapsed", code="lapsed", kind=Cohort.Kind.STATIC)

    created = create(api_client, name="Come back", type="QUEST", ruleJson=QUEST_RULE, cohortId=str(cohort.pk))

    assert (created["type"], created["cohortId"], created["ruleJson"]) == ("QUEST", str(cohort.pk), QUEST_RULE)


def test_put_replaces_every_editable_field_and_makes_a_new_version(api_client):
    # given a campaign with a budget
    created = create(api_client, budgetRewards=10, priority=3, description="first")
    url = f"/api/v1/campaigns/{created['id']}"

    # when it is PUT with another name and rule, and without the budget, priority and description
    rule = {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "CASHBACK", "amount": "1.50"}}
    response = api_client.put(url, body(name="Any action", ruleJson=rule, endAt=None), format="json")

    # then what was sent replaced it, what was left out took its default, and the version moved
    assert response.status_code == 200, response.json()
    updated = response.json()
    assert (updated["name"], updated["ruleJson"], updated["endAt"]) == ("Any action", rule, None)
    assert (updated["budgetRewards"], updated["priority"], updated["description"]) == (None, 0, "")
    assert updated["version"] == 2
    assert updated["createdAt"] == created["createdAt"]
    assert api_client.get(url).json() == updated

    # and the same PUT again changes nothing, so no new version
    again = api_client.put(url, body(name="Any action", ruleJson=rule, endAt=None), format="json")
    assert again.status_code == 200
    assert again.json()["version"] == 2


def test_a_rule_that_only_differs_in_spelling_is_a_change(api_client):
    created = create(api_client)
    rule = json.loads(json.dumps(SIMPLE_RULE))
    rule["reward"]["points"] = 50.0  # a JSON Schema integer, but not the same document

    updated = api_client.put(f"/api/v1/campaigns/{created['id']}", body(ruleJson=rule), format="json")

    assert updated.status_code == 200, updated.json()
    assert updated.json()["version"] == 2


def test_edits_and_status_changes_never_write_the_stats_row(api_client, tenant):
    # given an active campaign that has issued some of its budget
    campaign = campaign_in(tenant, "ACTIVE", budget_rewards=100)
    CampaignStats.objects.filter(pk=campaign.pk).update(rewards_issued=5, amount_issued=Decimal("250"))

    # when it is edited, paused, resumed and ended
    with CaptureQueriesContext(connection) as queries:
        assert api_client.put(f"/api/v1/campaigns/{campaign.pk}", body(name="Edited"), format="json").status_code == 200
        for verb in ("pause", "activate", "end"):
            assert act(api_client, campaign.pk, verb).status_code == 200

    # then no statement wrote or locked the stats row (the campaign row alone is locked), and
    # its counters are as they were
    stats_table = f'"{CampaignStats._meta.db_table}"'
    touching = [q["sql"] for q in queries.captured_queries if stats_table in q["sql"]]
    assert touching
    for sql in touching:
        assert sql.startswith("SELECT"), sql
        assert "FOR UPDATE" not in sql or sql.endswith('FOR UPDATE OF "campaigns_campaign"'), sql
    stats = CampaignStats.objects.get(pk=campaign.pk)
    assert (stats.rewards_issued, stats.amount_issued) == (5, Decimal("250"))
    assert api_client.get(f"/api/v1/campaigns/{campaign.pk}").json()["stats"] == {
        "rewardsIssued": 5,
        "amountIssued": "250.0000",
    }


def test_an_ended_campaign_cannot_be_changed(api_client, tenant):
    campaign = campaign_in(tenant, "ENDED")

    response = api_client.put(f"/api/v1/campaigns/{campaign.pk}", body(name="Revived"), format="json")

    assert_error(response, 409, code="campaign_ended")
    campaign.refresh_from_db()
    assert (campaign.name, campaign.version) == ("ended campaign", 1)


# Validation ---------------------------------------------------------------------------------------


def test_validation_errors_name_the_field(api_client, tenant, other_tenant):
    theirs = Cohort.objects.create(tenant=other_tenant, name="Theirs", code="theirs", kind=Cohort.Kind.STATIC)
    cases = [
        (body(name=...), "name"),
        (body(name="x" * 201), "name"),
        (body(type="MEGA"), "type"),
        (body(startAt="tomorrow"), "startAt"),
        (body(endAt=iso(T0)), "endAt"),
        (body(endAt=iso(T0 - timedelta(days=1))), "endAt"),
        (body(ruleJson=...), "ruleJson"),
        (body(ruleJson=None), "ruleJson"),
        (body(ruleJson=["not", "an", "object"]), "ruleJson"),
        (body(ruleJson={**SIMPLE_RULE, "reward": {"type": "POINTS", "points": 0}}), "ruleJson.reward.points"),
        (body(ruleJson={**SIMPLE_RULE, "reward": {"type": "POINTS", "pionts": 5}}), "ruleJson.reward.pionts"),
        (body(ruleJson={**SIMPLE_RULE, "reward": {"type": "COUPON", "pool": "nope"}}), "ruleJson.reward.pool"),
        (
            body(ruleJson={**SIMPLE_RULE, "trigger": {"eventTypes": ["action"], "actionCodes": ["app.logout"]}}),
            "ruleJson.trigger.actionCodes.0",
        ),
        (
            body(ruleJson={**SIMPLE_RULE, "conditions": {"and": [{"==": [{"var": "event.colour"}, "red"]}]}}),
            "ruleJson.conditions.and.0.==.0.var",
        ),
        (body(type="QUEST"), "ruleJson.quest"),
        (body(type="QUEST", ruleJson={**QUEST_RULE, "trigger": SIMPLE_RULE["trigger"]}), "ruleJson.trigger"),
        (body(ruleJson=QUEST_RULE), "ruleJson.quest"),
        (body(cohortId="not-a-uuid"), "cohortId"),
        (body(cohortId=str(uuid.uuid4())), "cohortId"),
        (body(cohortId=str(theirs.pk)), "cohortId"),
        (body(priority=2**31), "priority"),
        (body(stacking="SOMETIMES"), "stacking"),
        (body(budgetRewards=-1), "budgetRewards"),
        (body(budgetAmount="-1"), "budgetAmount"),
        (body(budgetAmount="1.23456"), "budgetAmount"),
        (body(budgetAmount="1e400"), "budgetAmount"),
        (body(memberCapAmount="100000000000000"), "memberCapAmount"),
        (body(memberCapPeriod="YEAR"), "memberCapPeriod"),
    ]
    for sent, attr in cases:
        response = api_client.post("/api/v1/campaigns", sent, format="json")
        errors = assert_error(response, 400)["errors"]
        assert errors[0]["attr"] == attr, (sent, errors)
    assert not Campaign.objects.filter(tenant=tenant).exists()


def test_an_invalid_put_changes_nothing(api_client):
    created = create(api_client)
    url = f"/api/v1/campaigns/{created['id']}"

    response = api_client.put(url, body(ruleJson={"reward": {"type": "POINTS", "points": 5}}), format="json")

    assert_error(response, 400, attr="ruleJson.trigger")
    assert api_client.get(url).json() == created


def test_a_rule_may_name_an_action_once_it_is_in_the_catalog(api_client):
    rule = {"trigger": {"eventTypes": ["action"], "actionCodes": ["store.checkin"]}, "reward": SIMPLE_RULE["reward"]}
    assert_error(api_client.post("/api/v1/campaigns", body(ruleJson=rule), format="json"), 400)

    added = api_client.post("/api/v1/actions", {"code": "store.checkin", "description": "Checked in"}, format="json")
    assert added.status_code == 201, added.json()

    assert create(api_client, ruleJson=rule)["ruleJson"] == rule


# Lifecycle ------------------------------------------------------------------------------------------

LEGAL = [
    ("DRAFT", "activate", "ACTIVE"),
    ("ACTIVE", "pause", "PAUSED"),
    ("PAUSED", "activate", "ACTIVE"),
    ("ACTIVE", "end", "ENDED"),
    ("PAUSED", "end", "ENDED"),
]
ILLEGAL = [
    (status, verb)
    for status in ("DRAFT", "ACTIVE", "PAUSED", "ENDED")
    for verb in ("activate", "pause", "end")
    if (status, verb) not in {(s, v) for s, v, _ in LEGAL}
]


@pytest.mark.parametrize(("status", "verb", "target"), LEGAL)
def test_legal_transitions(api_client, tenant, status, verb, target):
    campaign = campaign_in(tenant, status)
    before = campaign.activated_at

    response = act(api_client, campaign.pk, verb)

    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["status"] == target
    assert Campaign.objects.get(pk=campaign.pk).status == target
    if target == "ACTIVE":
        # the first activation is recorded; a resume keeps it
        assert answer["activatedAt"] is not None
        if before is not None:
            assert Campaign.objects.get(pk=campaign.pk).activated_at == before
    assert (answer["endedAt"] is not None) == (target == "ENDED")
    assert answer["version"] == 1  # status is not configuration


@pytest.mark.parametrize(("status", "verb"), ILLEGAL)
def test_illegal_transitions_are_conflicts_naming_the_status(api_client, tenant, status, verb):
    campaign = campaign_in(tenant, status)

    response = act(api_client, campaign.pk, verb)

    error = assert_error(response, 409, code="illegal_transition")["errors"][0]
    assert status in error["detail"]
    assert Campaign.objects.get(pk=campaign.pk).status == status


def test_there_are_five_legal_and_seven_illegal_transitions():
    assert (len(LEGAL), len(ILLEGAL)) == (5, 7)


def test_a_campaign_whose_end_has_passed_cannot_be_activated(api_client, tenant):
    # given a draft that ended yesterday
    now = timezone.now()
    created = create(api_client, startAt=iso(now - timedelta(days=10)), endAt=iso(now - timedelta(days=1)))

    response = act(api_client, created["id"], "activate")

    assert_error(response, 409, code="campaign_expired", attr="endAt")
    # and once endAt moves ahead it can be
    moved = api_client.put(
        f"/api/v1/campaigns/{created['id']}",
        body(startAt=iso(now - timedelta(days=10)), endAt=iso(now + timedelta(days=1))),
        format="json",
    )
    assert moved.status_code == 200, moved.json()
    assert act(api_client, created["id"], "activate").json()["status"] == "ACTIVE"


def test_a_future_campaign_is_scheduled_by_activating_it(api_client, tenant):
    # given a campaign that starts at T0 (in the future), activated now
    created = create(api_client)
    assert act(api_client, created["id"], "activate").json()["status"] == "ACTIVE"
    listed = f"/api/v1/tenants/{tenant.pk}/campaigns?activeAt="

    # then it is not applied before T0, and is from T0 until its end
    def applied_at(at):
        return [c["id"] for c in api_client.get(listed + iso(at)).json()["results"]]

    assert applied_at(T0 - timedelta(seconds=1)) == []
    assert applied_at(T0) == [created["id"]]
    assert applied_at(T0 + timedelta(days=30) - timedelta(seconds=1)) == [created["id"]]
    assert applied_at(T0 + timedelta(days=30)) == []


# The schedule -------------------------------------------------------------------------------------


def test_the_schedule_ends_campaigns_at_their_end(tenant, other_tenant, django_capture_on_commit_callbacks):
    # given campaigns of two tenants ending at various times around T, and some that do not end
    t = T0 + timedelta(days=30)
    ends_at_t = campaign_in(tenant, "ACTIVE", end_at=t)
    paused_ended_before = campaign_in(other_tenant, "PAUSED", end_at=t - timedelta(hours=1))
    ends_later = campaign_in(tenant, "ACTIVE", end_at=t + timedelta(hours=1))
    draft_past_end = campaign_in(tenant, "DRAFT", end_at=t - timedelta(hours=1))
    open_ended = campaign_in(tenant, "ACTIVE", end_at=None)
    not_started = campaign_in(tenant, "ACTIVE", start_at=t + timedelta(days=1), end_at=t + timedelta(days=2))
    assert {c.id for c in active_campaigns_get(tenant=tenant)} == {
        str(c.pk) for c in (ends_at_t, ends_later, open_ended, not_started)
    }

    # when the schedule runs a second before T
    assert services.campaigns_schedule_run(now=t - timedelta(seconds=1)).ended == (paused_ended_before.pk,)

    # and at T
    with django_capture_on_commit_callbacks(execute=True):
        run = services.campaigns_schedule_run(now=t)

    # then the one ending at T ended, when it stopped applying, and the calculator no longer sees it
    assert run.ended == (ends_at_t.pk,)
    ended = Campaign.objects.get(pk=ends_at_t.pk)
    assert (ended.status, ended.ended_at) == ("ENDED", t)
    assert Campaign.objects.get(pk=paused_ended_before.pk).ended_at == t - timedelta(hours=1)
    still_active = {str(c.pk) for c in (ends_later, open_ended, not_started)}
    assert {c.id for c in active_campaigns_get(tenant=tenant)} == still_active
    # and the rest did not change: a draft is not ended, a future start needs no change
    statuses = dict(Campaign.objects.values_list("pk", "status"))
    assert statuses[ends_later.pk] == statuses[open_ended.pk] == statuses[not_started.pk] == "ACTIVE"
    assert statuses[draft_past_end.pk] == "DRAFT"

    # and running again changes nothing; an hour later the next one ends
    assert services.campaigns_schedule_run(now=t).ended == ()
    assert services.campaigns_schedule_run(now=t + timedelta(hours=1)).ended == (ends_later.pk,)


def test_the_schedule_works_in_batches(tenant):
    t = T0 + timedelta(days=30)
    due = {campaign_in(tenant, "ACTIVE", end_at=t).pk for _ in range(5)}

    run = services.campaigns_schedule_run(now=t, batch_size=2)

    assert set(run.ended) == due
    assert len(run.ended) == 5


def test_the_task_ends_what_is_due_now_and_runs_every_minute(tenant):
    # given an active campaign whose end has just passed
    campaign = campaign_in(tenant, "ACTIVE", start_at=timezone.now() - timedelta(days=2), end_at=None)
    Campaign.objects.filter(pk=campaign.pk).update(end_at=timezone.now() - timedelta(seconds=1))

    result = tasks.campaigns_schedule_run.apply().get()

    assert result == 1  # campaigns ended
    assert Campaign.objects.get(pk=campaign.pk).status == "ENDED"
    entry = settings.CELERY_BEAT_SCHEDULE["campaigns-schedule"]
    assert entry["task"] == "campaigns.tasks.campaigns_schedule_run"
    assert entry["schedule"] == timedelta(minutes=1)


# Listing and filters --------------------------------------------------------------------------------


@pytest.fixture
def listed(tenant, other_tenant):
    """Campaigns of every kind, created oldest to newest."""
    made = {
        "login": campaign_in(tenant, "ACTIVE", name="login"),
        "quest": campaign_in(
            tenant, "PAUSED", name="quest", type="QUEST", rule_json=QUEST_RULE, start_at=T0 + timedelta(days=5)
        ),
        "any_action": campaign_in(
            tenant,
            "ACTIVE",
            name="any action",
            rule_json={"trigger": {"eventTypes": ["action", "transaction.created"]}, "reward": SIMPLE_RULE["reward"]},
            start_at=T0 + timedelta(days=10),
            end_at=None,
        ),
        "purchase": campaign_in(
            tenant,
            "DRAFT",
            name="purchase",
            rule_json={"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 5}},
        ),
        "ended": campaign_in(tenant, "ENDED", name="ended"),
    }
    campaign_in(other_tenant, "ACTIVE", name="theirs")
    return made


def names(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [c["name"] for c in response.json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["ended", "purchase", "any action", "quest", "login"]),
        ("?status=ACTIVE", ["any action", "login"]),
        ("?status=DRAFT", ["purchase"]),
        ("?type=QUEST", ["quest"]),
        ("?type=SIMPLE&status=ENDED", ["ended"]),
        # listed in trigger.actionCodes, or a trigger on every action
        ("?action=app.login", ["ended", "any action", "login"]),
        # a quest step, or a trigger on every action
        ("?action=app.open", ["any action", "quest"]),
        ("?action=review.posted&status=PAUSED", ["quest"]),
        ("?action=never.seen", ["any action"]),
        # what the calculator applies at a moment: ACTIVE, startAt <= t < endAt
        ("?activeAt={T0}", ["login"]),
        ("?activeAt={T0+19d}", ["any action", "login"]),
        ("?activeAt={T0+31d}", ["any action"]),
        ("?activeAt={T0-1s}", []),
        ("?activeAt={T0+19d}&action=app.open", ["any action"]),
    ],
)
def test_list_filters(api_client, tenant, listed, query, expected):
    moments = {
        "{T0}": T0,
        "{T0+19d}": T0 + timedelta(days=19),
        "{T0+31d}": T0 + timedelta(days=31),
        "{T0-1s}": T0 - timedelta(seconds=1),
    }
    for name, at in moments.items():
        query = query.replace(name, iso(at))
    assert names(api_client.get(f"/api/v1/tenants/{tenant.pk}/campaigns{query}")) == expected


def test_list_pages(api_client, tenant, listed):
    first = api_client.get(f"/api/v1/tenants/{tenant.pk}/campaigns?pageSize=2").json()
    second = api_client.get(first["next"]).json()

    assert first["count"] == 5
    assert [c["name"] for c in first["results"] + second["results"]] == ["ended", "purchase", "any action", "quest"]


@pytest.mark.parametrize(
    ("query", "attr"),
    [
        ("?status=LIVE", "status"),
        ("?type=simple", "type"),
        ("?activeAt=soon", "activeAt"),
        ("?action=bad%20code", "action"),
    ],
)
def test_bad_filters_are_400s_naming_the_parameter(api_client, tenant, query, attr):
    assert_error(api_client.get(f"/api/v1/tenants/{tenant.pk}/campaigns{query}"), 400, attr=attr)


def test_the_action_filter_is_jsonb_containment_that_the_gin_index_answers(tenant, listed):
    # given many campaigns, two of them triggered by app.open
    rule = {"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 1}}
    Campaign.objects.bulk_create(
        Campaign(tenant=tenant, name=f"bulk {i}", type="SIMPLE", start_at=T0, rule_json=rule) for i in range(1000)
    )

    # when the action predicate is planned, sequential scans off (on a small table PostgreSQL
    # would rightly read it whole instead)
    sql, params = Campaign.objects.filter(selectors.action_trigger_q("app.open")).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")

    # then each branch is a containment (@>) looked up in the GIN index on rule_json
    assert plan.count("Bitmap Index Scan on campaign_rule_gin") == 3, plan
    assert "@>" in str(selectors.campaign_list(tenant=tenant, action="app.open").query)
    assert sorted(c.name for c in selectors.campaign_list(tenant=tenant, action="app.open")) == ["any action", "quest"]


# Other tenants ------------------------------------------------------------------------------------


def test_another_tenants_campaign_is_not_found(api_client, other_client, tenant):
    campaign = campaign_in(tenant, "ACTIVE")
    url = f"/api/v1/campaigns/{campaign.pk}"

    assert_error(other_client.get(url), 404, code="campaign_not_found")
    assert_error(other_client.put(url, body(name="Hijacked"), format="json"), 404)
    for verb in ("activate", "pause", "end"):
        assert_error(act(other_client, campaign.pk, verb), 404)
    assert_error(other_client.get(f"/api/v1/tenants/{tenant.pk}/campaigns"), 404)
    assert_error(api_client.get(f"/api/v1/tenants/{uuid.uuid4()}/campaigns"), 404)
    assert_error(api_client.get(f"/api/v1/campaigns/{uuid.uuid4()}"), 404)
    # and nothing changed
    campaign.refresh_from_db()
    assert (campaign.name, campaign.status, campaign.version) == ("active campaign", "ACTIVE", 1)


def test_campaigns_need_a_tenant_key(member_client, tenant):
    assert_error(member_client.get(f"/api/v1/tenants/{tenant.pk}/campaigns"), 403)
    assert_error(member_client.post("/api/v1/campaigns", body(), format="json"), 403)


# The rule schema --------------------------------------------------------------------------------


def test_the_rule_schema_is_served_as_published(api_client):
    response = api_client.get("/api/v1/campaigns/rule-schema")

    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(RULE_SCHEMA))


# Actions and coupon pools -------------------------------------------------------------------------


def test_actions_are_upserted_and_listed(api_client, other_client):
    created = api_client.post("/api/v1/actions", {"code": "cart.saved", "description": "Saved a cart"}, format="json")
    updated = api_client.post("/api/v1/actions", {"code": "cart.saved", "description": "Saved"}, format="json")

    assert created.status_code == 201, created.json()
    assert updated.status_code == 200, updated.json()
    assert updated.json()["description"] == "Saved"
    listed = api_client.get("/api/v1/actions").json()
    assert [a["code"] for a in listed["results"]] == ["app.login", "app.open", "cart.saved", "review.posted"]
    assert "cart.saved" not in [a["code"] for a in other_client.get("/api/v1/actions").json()["results"]]
    assert_error(api_client.post("/api/v1/actions", {"code": "-bad code"}, format="json"), 400, attr="code")
    assert_error(api_client.post("/api/v1/actions", {"code": "x" * 65}, format="json"), 400, attr="code")


def test_coupon_pools_and_their_codes(api_client, other_client, tenant):
    created = api_client.post("/api/v1/coupon-pools", {"code": "spring-5", "name": "Spring 5%"}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["code"] == "spring-5"
    assert_error(
        api_client.post("/api/v1/coupon-pools", {"code": "spring-5", "name": "Again"}, format="json"),
        409,
        code="coupon_pool_exists",
        attr="code",
    )
    assert_error(api_client.post("/api/v1/coupon-pools", {"code": "no spaces", "name": "x"}, format="json"), 400)

    # codes are added once each, whatever the repeats
    url = "/api/v1/coupon-pools/spring-5/codes"
    first = api_client.post(url, {"codes": ["AAA", "BBB", "AAA"]}, format="json")
    second = api_client.post(url, {"codes": ["BBB", "CCC"]}, format="json")
    assert first.json() == {"added": 2, "skipped": 1}
    assert second.json() == {"added": 1, "skipped": 1}
    assert sorted(CouponCode.objects.filter(pool__code="spring-5").values_list("code", flat=True)) == [
        "AAA",
        "BBB",
        "CCC",
    ]
    assert_error(api_client.post(url, {"codes": []}, format="json"), 400, attr="codes")
    assert_error(api_client.post(url, {"codes": ["x" * 129]}, format="json"), 400, attr="codes.0")
    assert_error(api_client.post("/api/v1/coupon-pools/nope/codes", {"codes": ["A"]}, format="json"), 404)
    # another tenant's pool is not found, and B's pool of the same code is B's own
    assert_error(other_client.post(url, {"codes": ["EVIL"]}, format="json"), 404)
    assert other_client.post("/api/v1/coupon-pools/welcome-10/codes", {"codes": ["B1"]}, format="json").json() == {
        "added": 1,
        "skipped": 0,
    }
    assert not CouponCode.objects.filter(tenant=tenant, code__in=["EVIL", "B1"]).exists()

    # and a rule may now name the pool
    assert create(api_client, ruleJson={**SIMPLE_RULE, "reward": {"type": "COUPON", "pool": "spring-5"}})


# Incentives -----------------------------------------------------------------------------------------


def test_a_members_incentives_newest_first(api_client, member_client, other_client, tenant, member):
    # given incentives of the member, of another member, and a coupon
    campaign = campaign_in(tenant, "ACTIVE")
    someone_else = MemberFactory(tenant=tenant)
    pool = services.coupon_pool_create(tenant=tenant, code="spring-5", name="Spring")
    services.coupon_codes_add(tenant=tenant, pool=pool, codes=["SPRING-1"])
    coupon = CouponCode.objects.get(code="SPRING-1")

    def issue(who, event_id, at, **fields):
        defaults = {"type": "POINTS", "reward_currency": "POINTS", "reward_amount": Decimal(50)}
        return Incentive.objects.create(
            tenant=tenant, campaign=campaign, member=who, event_id=event_id, issued_at=at, **{**defaults, **fields}
        )

    old = issue(member, "e-1", T0)
    new = issue(member, "e-2", T0 + timedelta(hours=1), type="COUPON", reward_currency="COUPON", coupon=coupon)
    issue(someone_else, "e-3", T0 + timedelta(hours=2))

    # when the tenant lists them, and the member's app does
    by_tenant = api_client.get(f"/api/v1/members/{member.external_ref}/incentives")
    by_member = member_client.get("/api/v1/me/incentives")

    # then both see the member's own, newest first
    assert by_tenant.status_code == by_member.status_code == 200
    results = by_tenant.json()["results"]
    assert [i["id"] for i in results] == [str(new.pk), str(old.pk)]
    assert by_member.json()["results"] == results
    assert results[0]["couponCode"] == "SPRING-1"
    assert results[1]["couponCode"] is None
    assert results[1]["rewardAmount"] == "50.0000"
    assert results[1]["campaignId"] == str(campaign.pk)
    assert results[1]["campaignName"] == "active campaign"
    # and another tenant cannot reach them
    assert_error(other_client.get(f"/api/v1/members/{member.external_ref}/incentives"), 404)
    assert_error(api_client.get("/api/v1/me/incentives"), 403)


def test_incentives_page_by_cursor(api_client, tenant, member):
    campaign = campaign_in(tenant, "ACTIVE")
    for i in range(5):
        Incentive.objects.create(
            tenant=tenant,
            campaign=campaign,
            member=member,
            type="POINTS",
            reward_currency="POINTS",
            reward_amount=Decimal(i + 1),
            event_id=f"e-{i}",
            issued_at=T0 + timedelta(minutes=i),
        )

    first = api_client.get(f"/api/v1/members/{member.external_ref}/incentives?pageSize=3").json()
    second = api_client.get(first["next"]).json()

    assert [i["eventId"] for i in first["results"] + second["results"]] == ["e-4", "e-3", "e-2", "e-1", "e-0"]
    assert second["next"] is None


def test_the_type_changes_only_while_the_campaign_is_a_draft(api_client):
    created = create(api_client)
    quest = body(type="QUEST", ruleJson=QUEST_RULE)

    as_draft = api_client.put(f"/api/v1/campaigns/{created['id']}", quest, format="json")
    assert as_draft.status_code == 200, as_draft.json()
    assert act(api_client, created["id"], "activate").status_code == 200

    back = api_client.put(f"/api/v1/campaigns/{created['id']}", body(), format="json")

    assert back.status_code == 409
    assert back.json()["errors"][0]["code"] == "campaign_type_locked"
    assert back.json()["errors"][0]["attr"] == "type"
    assert api_client.get(f"/api/v1/campaigns/{created['id']}").json()["type"] == "QUEST"
