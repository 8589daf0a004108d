"""Cohorts through the API and the services: static member lists, dynamic rules recomputed
in the background, validation naming the field, another tenant's cohorts out of reach."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from campaigns import cohorts, tasks
from campaigns.models import Cohort, CohortMember, CohortRun
from rewards.models import InboundEvent
from tests.campaigns.cohort_helpers import event_row, members_insert
from tests.core.shapes import assert_error
from tests.core.test_fuzz import FUZZ, bodies, json_values, post, text
from tests.factories import MemberFactory, OperatorFactory

pytestmark = pytest.mark.django_db

ADULTS = {">=": [{"var": "member.attributes.age"}, 18]}


def create(client, **body) -> dict:
    response = client.post("/api/v1/cohorts", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def member_refs(cohort_id) -> set[str]:
    return set(CohortMember.objects.filter(cohort_id=cohort_id).values_list("member__external_ref", flat=True))


@pytest.fixture
def people(tenant):
    """Ann (40), Bob (17), Cy ("20", a string) and Di (no age)."""
    return {
        m.external_ref: m
        for m in [
            MemberFactory(tenant=tenant, external_ref="ann", attributes={"age": 40, "first_name": "Ann"}),
            MemberFactory(tenant=tenant, external_ref="bob", attributes={"age": 17}),
            MemberFactory(tenant=tenant, external_ref="cy", attributes={"age": "20"}, locale="fr"),
            MemberFactory(tenant=tenant, external_ref="di", attributes={}),
        ]
    }


# Static cohorts ------------------------------------------------------------------------


def test_a_static_cohort_is_created_with_its_members_and_read_back(api_client, people):
    created = create(api_client, name="Beta testers", code="beta", kind="STATIC", memberRefs=["ann", "cy", "ann"])

    assert set(created) == {
        "id",
        "name",
        "code",
        "kind",
        "ruleJson",
        "memberCount",
        "computedAt",
        "createdAt",
        "updatedAt",
        "latestRun",
    }
    assert (created["kind"], created["memberCount"], created["ruleJson"], created["latestRun"]) == (
        "STATIC",
        2,
        None,
        None,
    )
    assert created["computedAt"] is not None
    assert member_refs(created["id"]) == {"ann", "cy"}
    assert api_client.get(f"/api/v1/cohorts/{created['id']}").json() == created
    listed = api_client.get("/api/v1/cohorts").json()
    assert listed["count"] == 1
    assert listed["results"][0]["memberCount"] == 2
    assert "latestRun" not in listed["results"][0]


def test_an_unknown_member_ref_is_a_400_naming_it_and_nothing_is_created(api_client, people):
    response = api_client.post(
        "/api/v1/cohorts", {"name": "x", "code": "x", "kind": "STATIC", "memberRefs": ["ann", "nobody"]}, format="json"
    )

    assert_error(response, 400, code="unknown_member", attr="memberRefs.1")
    assert not Cohort.objects.exists()
    assert not CohortMember.objects.exists()


def test_a_taken_code_is_a_409(api_client, people):
    create(api_client, name="One", code="vip", kind="STATIC")

    response = api_client.post("/api/v1/cohorts", {"name": "Two", "code": "vip", "kind": "STATIC"}, format="json")

    assert_error(response, 409, code="cohort_exists", attr="code")


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"name": "x", "code": "x", "kind": "STATIC", "ruleJson": ADULTS}, "ruleJson"),
        ({"name": "x", "code": "x", "kind": "DYNAMIC"}, "ruleJson"),
        ({"name": "x", "code": "x", "kind": "DYNAMIC", "ruleJson": ADULTS, "memberRefs": ["ann"]}, "memberRefs"),
        ({"name": "x", "code": "not a slug", "kind": "STATIC"}, "code"),
        ({"name": "x", "code": "x", "kind": "SOMETIMES"}, "kind"),
        ({"name": "x", "code": "x", "kind": "STATIC", "memberRefs": "ann"}, "memberRefs"),
        ({"name": "x", "code": "x", "kind": "DYNAMIC", "ruleJson": None}, "ruleJson"),
    ],
)
def test_inconsistent_bodies_are_400s_naming_the_field(api_client, people, body, attr):
    assert_error(api_client.post("/api/v1/cohorts", body, format="json"), 400, attr=attr)
    assert not Cohort.objects.exists()


def test_members_set_replaces_or_adds_in_batches_and_reports_unknown_refs(tenant, people, monkeypatch):
    # given a static cohort of Ann and Bob
    cohort = cohorts.cohort_create(tenant=tenant, name="Beta", code="beta", kind="STATIC", member_refs=["ann", "bob"])
    monkeypatch.setattr(cohorts, "BATCH_SIZE", 2)

    # when its list is replaced, with an unknown ref and a duplicate
    result = cohorts.cohort_members_set(
        tenant=tenant, cohort=cohort, member_refs=["cy", "ghost", "di", "bob", "cy", "a\x00b"]
    )

    # then Ann left, Cy and Di joined, and the unknown refs come back in order
    assert result == {"added": 2, "removed": 1, "unknown": ["ghost", "a\x00b"]}
    assert member_refs(cohort.pk) == {"bob", "cy", "di"}
    cohort.refresh_from_db()
    assert cohort.member_count == 3

    # and adding (replace=False) keeps the others
    result = cohorts.cohort_members_set(tenant=tenant, cohort=cohort, member_refs=["ann"], replace=False)
    assert result == {"added": 1, "removed": 0, "unknown": []}
    assert member_refs(cohort.pk) == {"ann", "bob", "cy", "di"}


def test_members_set_takes_a_bounded_number_of_queries_for_thousands_of_refs(tenant):
    members_insert(tenant, [{"ref": f"m{i}"} for i in range(3_000)])
    cohort = cohorts.cohort_create(tenant=tenant, name="Big", code="big", kind="STATIC")

    with CaptureQueriesContext(connection) as captured:
        result = cohorts.cohort_members_set(tenant=tenant, cohort=cohort, member_refs=[f"m{i}" for i in range(3_000)])

    assert result == {"added": 3_000, "removed": 0, "unknown": []}
    assert len(captured) <= 8


def test_members_set_refuses_a_dynamic_cohort_and_another_tenants_cohort(tenant, other_tenant, people):
    dynamic = cohorts.cohort_create(tenant=tenant, name="Adults", code="adults", kind="DYNAMIC", rule_json=ADULTS)

    with pytest.raises(cohorts.CohortDynamic):
        cohorts.cohort_members_set(tenant=tenant, cohort=dynamic, member_refs=["ann"])
    with pytest.raises(cohorts.CohortNotFound):
        cohorts.cohort_members_set(tenant=other_tenant, cohort=dynamic, member_refs=["ann"])


# Dynamic cohorts -----------------------------------------------------------------------


def test_a_dynamic_cohort_is_computed_after_commit(api_client, people, django_capture_on_commit_callbacks):
    # when a dynamic cohort is created, its JSON kept as sent (keys are not snake_cased)
    rule = {"and": [ADULTS, {"==": [{"var": "member.attributes.first_name"}, "Ann"]}]}
    with django_capture_on_commit_callbacks(execute=True):
        created = create(api_client, name="Adults named Ann", code="anns", kind="DYNAMIC", ruleJson=rule)

    # then its first recompute was queued with it, and ran once the request committed
    assert created["ruleJson"] == rule
    assert created["latestRun"]["status"] == "QUEUED"
    detail = api_client.get(f"/api/v1/cohorts/{created['id']}").json()
    assert detail["memberCount"] == 1
    assert detail["computedAt"] is not None
    run = detail["latestRun"]
    assert (run["status"], run["progress"], run["added"], run["removed"], run["membersAfter"]) == (
        "SUCCEEDED",
        100,
        1,
        0,
        1,
    )
    assert run["membersTotal"] == 4
    assert run["requestedBy"].startswith("api-key:")
    assert member_refs(created["id"]) == {"ann"}


def test_recompute_is_a_202_with_the_run_and_follows_changed_members(
    api_client, tenant, people, django_capture_on_commit_callbacks
):
    # given an adults cohort, computed: Ann (Cy's "20" is a string, not a number)
    with django_capture_on_commit_callbacks(execute=True):
        cohort = create(api_client, name="Adults", code="adults", kind="DYNAMIC", ruleJson=ADULTS)
    assert member_refs(cohort["id"]) == {"ann"}

    # when Bob comes of age, Ann's age goes missing, and a recompute is asked for
    people["bob"].attributes = {"age": 18}
    people["bob"].save()
    people["ann"].attributes = {}
    people["ann"].save()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(f"/api/v1/cohorts/{cohort['id']}:recompute")

    # then the answer is the queued run, which then ran and swapped them
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "QUEUED"
    assert response.json()["cohortId"] == cohort["id"]
    runs = api_client.get(f"/api/v1/cohorts/{cohort['id']}/runs").json()
    assert runs["count"] == 2
    newest = runs["results"][0]
    assert newest["id"] == response.json()["id"]
    assert (newest["status"], newest["added"], newest["removed"], newest["membersAfter"]) == ("SUCCEEDED", 1, 1, 1)
    assert member_refs(cohort["id"]) == {"bob"}


def test_asking_twice_before_it_runs_queues_one_run(api_client, people):
    cohort = create(api_client, name="Adults", code="adults", kind="DYNAMIC", ruleJson=ADULTS)

    first = api_client.post(f"/api/v1/cohorts/{cohort['id']}:recompute").json()
    second = api_client.post(f"/api/v1/cohorts/{cohort['id']}:recompute").json()

    assert first["id"] == second["id"] == cohort["latestRun"]["id"]
    assert CohortRun.objects.count() == 1


def test_a_static_cohort_cannot_be_recomputed(api_client, people):
    cohort = create(api_client, name="Beta", code="beta", kind="STATIC", memberRefs=["ann"])

    response = api_client.post(f"/api/v1/cohorts/{cohort['id']}:recompute")

    assert_error(response, 409, code="cohort_static")
    assert not CohortRun.objects.exists()


@pytest.mark.parametrize(
    ("rule", "attr"),
    [
        ({"and": [{">=": [{"var": "member.attributes.age"}, "18"]}]}, "ruleJson.and.0.>=.1"),
        ({"and": [ADULTS, {"==": [{"var": "event.amount"}, 5]}]}, "ruleJson.and.1.==.0.var"),
        ({"==": [{"var": "activity.spend.9999d"}, 5]}, "ruleJson.==.0.var"),
        ({"or": [ADULTS, {"in": ["adults", {"var": "member.cohorts"}]}]}, "ruleJson.or.1.in.0"),
        ({"between": [1, 2]}, "ruleJson"),
        ("yes", "ruleJson"),
    ],
)
def test_an_invalid_rule_is_a_400_naming_the_failing_part(api_client, rule, attr):
    response = api_client.post(
        "/api/v1/cohorts", {"name": "Adults", "code": "adults", "kind": "DYNAMIC", "ruleJson": rule}, format="json"
    )

    assert_error(response, 400, code="invalid_rule", attr=attr)
    assert not Cohort.objects.exists()


def test_a_run_that_fails_says_why(tenant, people):
    # given a dynamic cohort whose stored rule was broken behind the API's back
    cohort = cohorts.cohort_create(tenant=tenant, name="Adults", code="adults", kind="DYNAMIC", rule_json=ADULTS)
    Cohort.objects.filter(pk=cohort.pk).update(rule_json={"between": [1, 2]})
    run = CohortRun.objects.get(cohort=cohort)

    # when it runs, then it fails with the reason, and the cohort keeps its members
    run = cohorts.cohort_recompute(run_id=run.pk)

    assert run.status == CohortRun.Status.FAILED
    assert "Unknown operator 'between'" in run.error
    assert run.finished_at is not None
    cohort.refresh_from_db()
    assert (cohort.member_count, cohort.computed_at) == (0, None)


def test_activity_rules_select_members_by_what_they_spent(tenant, people, django_capture_on_commit_callbacks):
    now = timezone.now()
    InboundEvent.objects.bulk_create(
        [
            event_row(tenant, member_ref="bob", type="transaction.created", occurred_at=now, amount=Decimal("80.00")),
            event_row(tenant, member_ref="bob", type="transaction.created", occurred_at=now, amount=Decimal("30.00")),
            event_row(tenant, member_ref="di", type="transaction.created", occurred_at=now, amount=Decimal("200.00")),
            event_row(tenant, member_ref="di", type="transaction.refunded", occurred_at=now, amount=Decimal("150.00")),
        ]
    )
    rule = {"and": [{">=": [{"var": "activity.spend.30d"}, 100]}, {">=": [{"var": "activity.transactions.30d"}, 2]}]}

    with django_capture_on_commit_callbacks(execute=True):
        cohort = cohorts.cohort_create(tenant=tenant, name="Spenders", code="spenders", kind="DYNAMIC", rule_json=rule)

    assert member_refs(cohort.pk) == {"bob"}


# Scheduling and reach ------------------------------------------------------------------


def test_the_schedule_recomputes_dynamic_cohorts_older_than_a_day(tenant, people, django_capture_on_commit_callbacks):
    # given a fresh cohort, a stale one, a never-computed one with a run under way, and a static one
    make = cohorts.cohort_create
    fresh = make(tenant=tenant, name="Fresh", code="fresh", kind="DYNAMIC", rule_json=ADULTS)
    stale = make(tenant=tenant, name="Stale", code="stale", kind="DYNAMIC", rule_json=ADULTS)
    make(tenant=tenant, name="Pending", code="pending", kind="DYNAMIC", rule_json=ADULTS)
    make(tenant=tenant, name="Static", code="static", kind="STATIC", member_refs=["ann"])
    for cohort in (fresh, stale):
        cohorts.cohort_recompute(run_id=CohortRun.objects.get(cohort=cohort).pk)
    Cohort.objects.filter(pk=stale.pk).update(computed_at=timezone.now() - timedelta(hours=25))

    # when the periodic task runs
    with django_capture_on_commit_callbacks(execute=True):
        requested = tasks.cohorts_recompute_due()

    # then only the stale cohort was recomputed
    assert requested == 1
    stale.refresh_from_db()
    assert stale.computed_at > timezone.now() - timedelta(minutes=1)
    assert CohortRun.objects.filter(cohort=stale).count() == 2
    assert CohortRun.objects.filter(cohort=fresh).count() == 1


def test_the_task_carries_out_a_run_once(tenant, people):
    cohort = cohorts.cohort_create(tenant=tenant, name="Adults", code="adults", kind="DYNAMIC", rule_json=ADULTS)
    run = CohortRun.objects.get(cohort=cohort)

    assert tasks.cohort_recompute_run(str(run.pk))["status"] == "SUCCEEDED"
    assert tasks.cohort_recompute_run(str(run.pk))["membersAfter"] == 1
    assert tasks.cohort_recompute_run("00000000-0000-0000-0000-000000000000") is None


def test_another_tenants_cohort_is_not_found(api_client, other_client, people):
    cohort = create(api_client, name="Beta", code="beta", kind="STATIC", memberRefs=["ann"])

    for response in (
        other_client.get(f"/api/v1/cohorts/{cohort['id']}"),
        other_client.post(f"/api/v1/cohorts/{cohort['id']}:recompute"),
        other_client.get(f"/api/v1/cohorts/{cohort['id']}/runs"),
    ):
        assert_error(response, 404, code="cohort_not_found")
    assert other_client.get("/api/v1/cohorts").json()["count"] == 0


def test_a_viewer_reads_cohorts_but_cannot_create_them(tenant, people):
    from rest_framework.test import APIClient

    viewer = OperatorFactory(tenant=tenant, role="VIEWER")
    client = APIClient()
    client.force_authenticate(viewer.user)

    assert client.get("/api/v1/cohorts").status_code == 200
    assert_error(client.post("/api/v1/cohorts", {"name": "x", "code": "x", "kind": "STATIC"}, format="json"), 403)


@FUZZ
@given(
    body=bodies(
        name=text,
        code=st.sampled_from(["vip", "a-b", "x" * 65]) | text,
        kind=st.sampled_from(["STATIC", "DYNAMIC"]),
        memberRefs=st.lists(st.sampled_from(["ann", "bob", "ghost"]) | text, max_size=3),
        ruleJson=st.sampled_from([ADULTS, True, {"!": [ADULTS]}, {"in": ["vip", {"var": "member.cohorts"}]}])
        | json_values,
    )
)
def test_fuzz_cohort_create(api_client, people, body):
    post(api_client, "/api/v1/cohorts", body, None)
