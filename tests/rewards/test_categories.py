"""Spend categories and multipliers: the API, the rules, the events they announce, and the
cached configuration the earning engine reads."""

import json
from collections import Counter
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from hypothesis import given
from hypothesis import strategies as st

from rewards import categories
from rewards.categories import category_config_get
from rewards.models import Multiplier, OutboxEvent, SpendCategory
from tenants.models import Operator
from tests.core.shapes import assert_error, assert_error_shape
from tests.core.test_fuzz import FUZZ, bodies, json_values, post, text
from tests.factories import OperatorFactory
from tests.rewards.test_concurrency import run_together

pytestmark = pytest.mark.django_db


def create(client, **body):
    response = client.post("/api/v1/categories", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def add_multiplier(client, code: str, **body):
    response = client.post(f"/api/v1/categories/{code}/multipliers", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def events(tenant, type: str | None = None) -> list[OutboxEvent]:
    found = OutboxEvent.objects.filter(tenant=tenant).order_by("created_at")
    return list(found.filter(type=type) if type else found)


def written(tenant) -> tuple[int, int, int]:
    return (
        SpendCategory.objects.filter(tenant=tenant).count(),
        Multiplier.objects.filter(tenant=tenant).count(),
        OutboxEvent.objects.filter(tenant=tenant).count(),
    )


class Boom(Exception):
    pass


# Categories through the API -----------------------------------------------------------


def test_create_get_list_and_update_categories(api_client):
    # given a category and a child of it
    dining = create(api_client, code="dining", name="Dining", mccCodes=["5812", "5814"])
    fast = create(api_client, code="fast-food", name="Fast food", parent="dining")

    # then they read back as created, camelCase, the parent by its code
    assert set(dining) == {"code", "name", "parent", "mccCodes", "createdAt", "updatedAt"}
    assert dining["parent"] is None
    assert dining["mccCodes"] == ["5812", "5814"]
    assert fast["parent"] == "dining"
    assert fast["mccCodes"] == []
    assert api_client.get("/api/v1/categories/fast-food").json() == fast
    listed = api_client.get("/api/v1/categories?pageSize=1").json()
    assert listed["count"] == 2
    assert [c["code"] for c in listed["results"]] == ["dining"]
    assert listed["next"] is not None

    # when the child is renamed, detached and given MCCs
    response = api_client.patch(
        "/api/v1/categories/fast-food", {"name": "Quick service", "parent": None, "mccCodes": ["5814"]}, format="json"
    )

    # then only the child has them... except that 5814 is dining's: refused
    assert_error(response, 400, code="mcc_taken", attr="mccCodes")
    response = api_client.patch(
        "/api/v1/categories/fast-food", {"name": "Quick service", "parent": None, "mccCodes": ["5499"]}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Quick service"
    assert response.json()["parent"] is None
    assert response.json()["mccCodes"] == ["5499"]
    assert api_client.get("/api/v1/categories/fast-food").json() == response.json()


def test_a_partial_update_leaves_the_other_fields(api_client):
    create(api_client, code="dining", name="Dining")
    create(api_client, code="fast-food", name="Fast food", parent="dining", mccCodes=["5814"])

    response = api_client.patch("/api/v1/categories/fast-food", {"name": "Quick"}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["parent"], response.json()["mccCodes"]) == ("dining", ["5814"])


@pytest.mark.parametrize(
    "body, attr",
    [
        ({"code": "has space", "name": "x"}, "code"),
        ({"code": "-leading-dash", "name": "x"}, "code"),
        ({"code": "x" * 65, "name": "x"}, "code"),
        ({"code": "ok"}, "name"),
        ({"code": "ok", "name": "x", "mccCodes": ["581"]}, "mccCodes"),
        ({"code": "ok", "name": "x", "mccCodes": ["58120"]}, "mccCodes"),
        ({"code": "ok", "name": "x", "mccCodes": ["58a2"]}, "mccCodes"),
        ({"code": "ok", "name": "x", "mccCodes": ["\u0665\u0668\u0661\u0662"]}, "mccCodes"),
        ({"code": "ok", "name": "x", "mccCodes": "5812"}, "mccCodes"),
        ({"code": "ok", "name": "x", "parent": "nope"}, "parent"),
    ],
)
def test_invalid_category_is_refused_naming_the_field_and_nothing_is_written(api_client, tenant, body, attr):
    before = written(tenant)

    response = api_client.post("/api/v1/categories", body, format="json")

    assert_error(response, 400, attr=attr)
    assert written(tenant) == before


def test_duplicate_code_is_a_conflict_and_writes_nothing_more(api_client, tenant):
    create(api_client, code="dining", name="Dining")
    before = written(tenant)

    response = api_client.post("/api/v1/categories", {"code": "dining", "name": "Again"}, format="json")

    assert_error(response, 409, code="category_exists", attr="code")
    assert written(tenant) == before
    assert SpendCategory.objects.get(tenant=tenant, code="dining").name == "Dining"


def test_a_cycle_is_refused(api_client, tenant):
    # given food <- dining <- fast-food
    create(api_client, code="food", name="Food")
    create(api_client, code="dining", name="Dining", parent="food")
    create(api_client, code="fast-food", name="Fast food", parent="dining")
    before = written(tenant)

    # when food is put under its grandchild, or under itself
    under_grandchild = api_client.patch("/api/v1/categories/food", {"parent": "fast-food"}, format="json")
    under_itself = api_client.patch("/api/v1/categories/dining", {"parent": "dining"}, format="json")

    # then both are refused and nothing changed
    assert_error(under_grandchild, 400, code="cycle", attr="parent")
    assert_error(under_itself, 400, code="cycle", attr="parent")
    assert written(tenant) == before
    assert SpendCategory.objects.get(tenant=tenant, code="food").parent is None
    assert SpendCategory.objects.get(tenant=tenant, code="dining").parent.code == "food"
    # and moving a leaf elsewhere in the tree is fine
    moved = api_client.patch("/api/v1/categories/fast-food", {"parent": "food"}, format="json")
    assert moved.status_code == 200, moved.json()


def test_the_parent_must_belong_to_the_same_tenant(tenant, other_tenant):
    theirs = categories.category_create(tenant=other_tenant, code="theirs", name="Theirs")

    with pytest.raises(ValidationError) as refused:
        categories.category_create(tenant=tenant, code="mine", name="Mine", parent=theirs)

    assert "parent" in refused.value.message_dict
    assert not SpendCategory.objects.filter(tenant=tenant).exists()


def test_an_mcc_belongs_to_at_most_one_category_of_a_tenant(api_client, other_client, tenant):
    create(api_client, code="dining", name="Dining", mccCodes=["5812"])

    taken = api_client.post(
        "/api/v1/categories", {"code": "fast-food", "name": "Fast", "mccCodes": ["5814", "5812"]}, format="json"
    )
    # another tenant's categories do not count
    elsewhere = other_client.post(
        "/api/v1/categories", {"code": "dining", "name": "Dining", "mccCodes": ["5812"]}, format="json"
    )

    assert_error(taken, 400, code="mcc_taken", attr="mccCodes")
    assert "dining" in taken.json()["errors"][0]["detail"]
    assert not SpendCategory.objects.filter(tenant=tenant, code="fast-food").exists()
    assert elsewhere.status_code == 201, elsewhere.json()
    # a category keeps its own MCCs when updated, and a freed MCC can move
    kept = api_client.patch("/api/v1/categories/dining", {"mccCodes": ["5812", "5813"]}, format="json")
    assert kept.status_code == 200, kept.json()
    api_client.patch("/api/v1/categories/dining", {"mccCodes": ["5813"]}, format="json")
    assert create(api_client, code="fast-food", name="Fast", mccCodes=["5812"])["mccCodes"] == ["5812"]
    assert category_config_get(tenant=tenant).mcc == {"5813": "dining", "5812": "fast-food"}


def test_repeated_mccs_in_one_list_are_kept_once(api_client):
    assert create(api_client, code="dining", name="Dining", mccCodes=["5812", "5814", "5812"])["mccCodes"] == [
        "5812",
        "5814",
    ]


def test_unknown_category_or_multiplier_is_a_404_in_the_error_shape(api_client):
    create(api_client, code="dining", name="Dining")
    create(api_client, code="travel", name="Travel")
    travel_multiplier = add_multiplier(api_client, "travel", factor="2")

    assert_error(api_client.get("/api/v1/categories/nope"), 404, code="category_not_found")
    assert_error(api_client.patch("/api/v1/categories/nope", {"name": "x"}, format="json"), 404)
    assert_error(api_client.get("/api/v1/categories/nope/multipliers"), 404)
    assert_error(api_client.get("/api/v1/categories/dining/multipliers/999999"), 404, code="multiplier_not_found")
    # a multiplier is found only under its own category
    assert_error(api_client.get(f"/api/v1/categories/dining/multipliers/{travel_multiplier['id']}"), 404)
    assert_error(api_client.get("/api/v1/categories/dining/multipliers/99999999999999999999999"), 404)
    assert_error(api_client.get("/api/v1/categories/di%00ning"), 404)


# Multipliers through the API ----------------------------------------------------------


def test_multiplier_create_read_update_delete(api_client, tenant):
    create(api_client, code="dining", name="Dining")

    # when a multiplier is added
    created = add_multiplier(
        api_client,
        "dining",
        factor="1.5",
        validFrom="2026-01-01T00:00:00Z",
        validTo="2026-02-01T00:00:00Z",
        tier="gold",
        capPoints=500,
        capPeriod="MONTH",
    )

    # then it reads back as created
    assert set(created) == {
        "id",
        "category",
        "factor",
        "validFrom",
        "validTo",
        "tier",
        "capPoints",
        "capPeriod",
        "version",
        "createdAt",
        "updatedAt",
    }
    assert created["factor"] == "1.5000"
    assert (created["validFrom"], created["validTo"]) == ("2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z")
    assert (created["tier"], created["capPoints"], created["capPeriod"], created["version"]) == (
        "gold",
        500,
        "MONTH",
        1,
    )
    url = f"/api/v1/categories/dining/multipliers/{created['id']}"
    assert api_client.get(url).json() == created
    assert api_client.get("/api/v1/categories/dining/multipliers").json()["results"] == [created]

    # when it is changed, it is a new version
    updated = api_client.patch(url, {"factor": "2", "tier": None, "capPoints": None, "capPeriod": None}, format="json")
    assert updated.status_code == 200, updated.json()
    assert updated.json()["factor"] == "2.0000"
    assert (updated.json()["tier"], updated.json()["capPoints"], updated.json()["capPeriod"]) == (None, None, None)
    assert updated.json()["version"] == 2
    assert updated.json()["validFrom"] == created["validFrom"]

    # and a change to what it already is makes no new version
    same = api_client.patch(url, {"factor": "2.0"}, format="json")
    assert same.json()["version"] == 2

    # when it is deleted, it is gone
    assert api_client.delete(url).status_code == 204
    assert_error(api_client.get(url), 404)
    assert api_client.get("/api/v1/categories/dining/multipliers").json()["count"] == 0
    assert not Multiplier.objects.filter(tenant=tenant).exists()


def test_factor_keeps_four_decimals_exactly(api_client, tenant):
    create(api_client, code="dining", name="Dining")

    created = add_multiplier(api_client, "dining", factor="1.2345")

    assert created["factor"] == "1.2345"
    assert Multiplier.objects.get(pk=created["id"]).factor == Decimal("1.2345")
    (rule,) = category_config_get(tenant=tenant).multipliers
    assert rule.factor == Decimal("1.2345")
    assert isinstance(rule.factor, Decimal)


@pytest.mark.parametrize(
    "body, attr",
    [
        ({"factor": "1.23456"}, "factor"),
        ({"factor": "-0.5"}, "factor"),
        ({"factor": "abc"}, "factor"),
        ({"factor": "NaN"}, "factor"),
        ({"factor": "100000"}, "factor"),
        ({}, "factor"),
        ({"factor": "2", "validFrom": "2026-02-01T00:00:00Z", "validTo": "2026-02-01T00:00:00Z"}, "validTo"),
        ({"factor": "2", "validFrom": "2026-02-01T00:00:00Z", "validTo": "2026-01-01T00:00:00Z"}, "validTo"),
        ({"factor": "2", "capPoints": 100}, "capPeriod"),
        ({"factor": "2", "capPeriod": "DAY"}, "capPoints"),
        ({"factor": "2", "capPoints": -1, "capPeriod": "DAY"}, "capPoints"),
        ({"factor": "2", "capPoints": 2**63, "capPeriod": "DAY"}, "capPoints"),
        ({"factor": "2", "capPoints": 10, "capPeriod": "YEAR"}, "capPeriod"),
        ({"factor": "2", "tier": "x" * 65}, "tier"),
    ],
)
def test_invalid_multiplier_is_refused_naming_the_field_and_nothing_is_written(api_client, tenant, body, attr):
    create(api_client, code="dining", name="Dining")
    before = written(tenant)

    response = api_client.post("/api/v1/categories/dining/multipliers", body, format="json")

    assert_error(response, 400, attr=attr)
    assert written(tenant) == before


def test_an_update_is_checked_against_the_fields_it_leaves(api_client, tenant):
    create(api_client, code="dining", name="Dining")
    created = add_multiplier(api_client, "dining", factor="2", validFrom="2026-02-01T00:00:00Z")
    url = f"/api/v1/categories/dining/multipliers/{created['id']}"
    before = written(tenant)

    early_end = api_client.patch(url, {"validTo": "2026-01-01T00:00:00Z"}, format="json")
    cap_alone = api_client.patch(url, {"capPoints": 10}, format="json")
    too_precise = api_client.patch(url, {"factor": "1.23456"}, format="json")

    assert_error(early_end, 400, code="invalid_window", attr="validTo")
    assert_error(cap_alone, 400, attr="capPeriod")
    assert_error(too_precise, 400, attr="factor")
    assert written(tenant) == before
    assert Multiplier.objects.get(pk=created["id"]).version == 1


def test_services_refuse_a_float_factor(tenant):
    dining = categories.category_create(tenant=tenant, code="dining", name="Dining")

    with pytest.raises(ValidationError) as refused:
        categories.multiplier_create(tenant=tenant, category=dining, factor=1.1)

    assert "factor" in refused.value.message_dict
    assert not Multiplier.objects.exists()


# Events --------------------------------------------------------------------------------


def test_category_writes_announce_the_category_as_the_api_shows_it(api_client, tenant):
    create(api_client, code="food", name="Food")
    created = create(api_client, code="dining", name="Dining", parent="food", mccCodes=["5812"])

    (announced,) = [e for e in events(tenant, "category.created") if e.data["code"] == "dining"]
    assert announced.data == created

    updated = api_client.patch("/api/v1/categories/dining", {"name": "Restaurants"}, format="json").json()
    (changed,) = events(tenant, "category.updated")
    assert changed.data == updated == api_client.get("/api/v1/categories/dining").json()
    assert changed.correlation_id  # the request id travels with the event

    # and an update that changes nothing announces nothing
    api_client.patch("/api/v1/categories/dining", {"name": "Restaurants"}, format="json")
    assert len(events(tenant, "category.updated")) == 1


def test_multiplier_changes_announce_category_updated_naming_the_multiplier(api_client, tenant):
    category = create(api_client, code="dining", name="Dining")
    created = add_multiplier(api_client, "dining", factor="2")
    url = f"/api/v1/categories/dining/multipliers/{created['id']}"
    updated = api_client.patch(url, {"factor": "3"}, format="json").json()
    api_client.delete(url)

    announced = events(tenant, "category.updated")
    assert [e.data["multiplier"]["action"] for e in announced] == ["created", "updated", "deleted"]
    assert {e.data["multiplier"]["id"] for e in announced} == {created["id"]}
    assert announced[0].data == {**category, "multiplier": {**created, "action": "created"}}
    assert announced[1].data["multiplier"] == {**updated, "action": "updated"}
    assert (announced[2].data["multiplier"]["factor"], announced[2].data["multiplier"]["version"]) == ("3.0000", 2)
    assert all(e.data["code"] == "dining" for e in announced)


def test_a_rolled_back_write_leaves_no_event(tenant):
    dining = categories.category_create(tenant=tenant, code="dining", name="Dining")
    before = written(tenant)

    for write in (
        lambda: categories.category_create(tenant=tenant, code="travel", name="Travel"),
        lambda: categories.category_update(category=dining, name="Restaurants"),
        lambda: categories.multiplier_create(tenant=tenant, category=dining, factor=Decimal("2")),
    ):
        with pytest.raises(Boom), transaction.atomic():
            write()
            assert written(tenant) != before  # the write and its event were there...
            raise Boom

        assert written(tenant) == before  # ...and went together
    assert SpendCategory.objects.get(pk=dining.pk).name == "Dining"


def test_a_refused_write_leaves_no_event(tenant):
    categories.category_create(tenant=tenant, code="dining", name="Dining", mcc_codes=["5812"])
    before = written(tenant)

    with pytest.raises(ValidationError):
        categories.category_create(tenant=tenant, code="fast-food", name="Fast", mcc_codes=["5812"])

    assert written(tenant) == before


# The cached configuration ---------------------------------------------------------------


def test_config_is_served_from_the_cache(tenant, django_capture_on_commit_callbacks, django_assert_num_queries):
    with django_capture_on_commit_callbacks(execute=True):
        dining = categories.category_create(tenant=tenant, code="dining", name="Dining", mcc_codes=["5812"])
        categories.multiplier_create(tenant=tenant, category=dining, factor=Decimal("2"))
    first = category_config_get(tenant=tenant)

    with django_assert_num_queries(0):
        cached = category_config_get(tenant=tenant)

    assert cached == first
    assert cached.categories == {"dining": None}
    assert cached.mcc == {"5812": "dining"}
    assert [(m.category, m.factor) for m in cached.multipliers] == [("dining", Decimal("2"))]


def test_config_reflects_each_write_right_after_commit(api_client, tenant, django_capture_on_commit_callbacks):
    def committed(method, path, body=None):
        with django_capture_on_commit_callbacks(execute=True):
            response = getattr(api_client, method)(path, body, format="json")
        assert response.status_code < 300, response.content
        return response.json() if response.content else None

    assert category_config_get(tenant=tenant).categories == {}  # cached, empty

    committed("post", "/api/v1/categories", {"code": "food", "name": "Food"})
    committed("post", "/api/v1/categories", {"code": "dining", "name": "Dining", "mccCodes": ["5812"]})
    assert category_config_get(tenant=tenant).categories == {"food": None, "dining": None}

    committed("patch", "/api/v1/categories/dining", {"parent": "food", "mccCodes": ["5814"]})
    config = category_config_get(tenant=tenant)
    assert (config.categories["dining"], config.mcc) == ("food", {"5814": "dining"})

    multiplier = committed("post", "/api/v1/categories/dining/multipliers", {"factor": "1.5"})
    assert [m.factor for m in category_config_get(tenant=tenant).multipliers] == [Decimal("1.5")]

    url = f"/api/v1/categories/dining/multipliers/{multiplier['id']}"
    committed("patch", url, {"factor": "2.25"})
    (rule,) = category_config_get(tenant=tenant).multipliers
    assert (rule.factor, rule.version) == (Decimal("2.25"), 2)

    committed("delete", url)
    assert category_config_get(tenant=tenant).multipliers == ()


def test_config_is_cached_per_tenant(tenant, other_tenant, django_capture_on_commit_callbacks):
    assert category_config_get(tenant=other_tenant).categories == {}

    with django_capture_on_commit_callbacks(execute=True):
        categories.category_create(tenant=tenant, code="dining", name="Dining")

    assert category_config_get(tenant=tenant).categories == {"dining": None}
    assert category_config_get(tenant=other_tenant).categories == {}


def test_a_transaction_sees_its_own_writes_but_never_caches_them(tenant):
    # given nothing cached yet
    with pytest.raises(Boom), transaction.atomic():
        categories.category_create(tenant=tenant, code="ghost", name="Ghost")

        # when the writing transaction reads the configuration, it sees its write
        assert "ghost" in category_config_get(tenant=tenant).categories
        raise Boom

    # then, rolled back, the write is seen by nobody: it was never cached
    assert category_config_get(tenant=tenant).categories == {}


def test_a_transaction_that_wrote_does_not_read_the_old_cached_config(tenant):
    assert category_config_get(tenant=tenant).categories == {}  # cached, empty

    with transaction.atomic():
        categories.category_create(tenant=tenant, code="dining", name="Dining")

        assert category_config_get(tenant=tenant).categories == {"dining": None}


def test_a_config_read_before_a_commit_is_not_served_after_it(tenant, monkeypatch, django_capture_on_commit_callbacks):
    """A reader that loaded the old rows, then stored them after a write had committed and
    invalidated, must not have stored them for everyone."""
    load = categories._config_load

    def load_then_commit_a_write(t):
        config = load(t)
        with django_capture_on_commit_callbacks(execute=True):
            categories.category_create(tenant=t, code="late", name="Late")
        return config

    monkeypatch.setattr(categories, "_config_load", load_then_commit_a_write)
    stale = category_config_get(tenant=tenant)
    monkeypatch.setattr(categories, "_config_load", load)

    assert stale.categories == {}
    assert category_config_get(tenant=tenant).categories == {"late": None}


def test_writes_that_bypass_the_services_also_invalidate(tenant, django_capture_on_commit_callbacks):
    assert category_config_get(tenant=tenant).categories == {}

    with django_capture_on_commit_callbacks(execute=True):
        dining = SpendCategory.objects.create(tenant=tenant, code="dining", name="Dining")
    assert category_config_get(tenant=tenant).categories == {"dining": None}

    with django_capture_on_commit_callbacks(execute=True):
        Multiplier.objects.create(tenant=tenant, category=dining, factor=Decimal("3"))
    assert [m.factor for m in category_config_get(tenant=tenant).multipliers] == [Decimal("3")]


def test_config_is_read_from_the_database_when_the_cache_fails(tenant, monkeypatch, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        categories.category_create(tenant=tenant, code="dining", name="Dining")

    def down(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get_many", down)
    monkeypatch.setattr(cache, "set", down)
    monkeypatch.setattr(cache, "delete", down)

    assert category_config_get(tenant=tenant).categories == {"dining": None}
    # and a write still succeeds; its invalidation failing is logged, not raised
    with django_capture_on_commit_callbacks(execute=True):
        categories.category_create(tenant=tenant, code="travel", name="Travel")
    assert SpendCategory.objects.filter(tenant=tenant, code="travel").exists()


@pytest.mark.django_db(transaction=True)
def test_a_committed_api_write_is_read_fresh_without_test_hooks(tenant, api_client):
    """With real commits: the on-commit invalidation is what makes the next read fresh."""
    assert category_config_get(tenant=tenant).categories == {}

    create(api_client, code="dining", name="Dining", mccCodes=["5812"])

    assert category_config_get(tenant=tenant).mcc == {"5812": "dining"}
    multiplier = add_multiplier(api_client, "dining", factor="1.75")
    assert [m.factor for m in category_config_get(tenant=tenant).multipliers] == [Decimal("1.75")]
    api_client.patch(f"/api/v1/categories/dining/multipliers/{multiplier['id']}", {"factor": "4"}, format="json")
    assert [m.factor for m in category_config_get(tenant=tenant).multipliers] == [Decimal("4")]


# Races and hostile input ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_on_one_mcc_leave_it_with_one_category(tenant):
    def claim(i):
        try:
            categories.category_create(tenant=tenant, code=f"c{i}", name=f"C{i}", mcc_codes=["5812"])
        except ValidationError:
            return "refused"
        return "created"

    results = run_together(8, claim)

    assert Counter(results) == {"created": 1, "refused": 7}
    assert [c.code for c in SpendCategory.objects.filter(tenant=tenant) if "5812" in c.mcc_codes] == [
        category_config_get(tenant=tenant).mcc["5812"]
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_reparenting_cannot_make_a_cycle(tenant):
    a = categories.category_create(tenant=tenant, code="a", name="A")
    b = categories.category_create(tenant=tenant, code="b", name="B")

    def reparent(i):
        child, parent = (a, b) if i % 2 == 0 else (b, a)
        try:
            categories.category_update(category=child, parent=parent)
        except ValidationError:
            return "refused"
        return "moved"

    results = run_together(2, reparent)

    assert Counter(results) == {"moved": 1, "refused": 1}
    parents = dict(SpendCategory.objects.filter(tenant=tenant).values_list("code", "parent__code"))
    assert sorted(parents.values(), key=str) in ([None, "a"], [None, "b"])


def patch(client, path: str, body) -> None:
    response = client.generic("PATCH", path, json.dumps(body), content_type="application/json")
    assert response.status_code < 500, (body, response.content)
    if response.status_code >= 400:
        assert_error_shape(response.json())


mccs = st.lists(st.sampled_from(["5812", "5814", "581", "", "58120"]) | text | json_values, max_size=3)


@FUZZ
@given(
    body=bodies(
        code=st.sampled_from(["dining", "new-one", "x" * 65, ""]) | text,
        name=text,
        parent=st.sampled_from(["dining", "nope", None]) | text,
        mccCodes=mccs,
    )
)
def test_fuzz_category_create_and_update(api_client, body):
    if not SpendCategory.objects.filter(code="dining").exists():
        create(api_client, code="dining", name="Dining", mccCodes=["5812"])
    post(api_client, "/api/v1/categories", body, None)
    patch(api_client, "/api/v1/categories/dining", body)


@FUZZ
@given(
    body=bodies(
        factor=st.sampled_from(["1.5", "1.23456", "-1", "1e3", "9999.9999", "10000"])
        | st.floats(allow_nan=False)
        | st.integers(),
        validFrom=st.sampled_from(["2026-01-01T00:00:00Z", "0001-01-01T00:00:00Z", None]) | text,
        validTo=st.sampled_from(["2026-02-01T00:00:00Z", "9999-12-31T23:59:59Z", None]) | text,
        tier=st.sampled_from(["gold", "", None]) | text,
        capPoints=st.none() | st.integers() | st.sampled_from([2**63 - 1, 2**63]),
        capPeriod=st.sampled_from(["DAY", "WEEK", "MONTH", "YEAR", "", None]),
    )
)
def test_fuzz_multiplier_create_and_update(api_client, tenant, body):
    dining = SpendCategory.objects.filter(code="dining").first()
    if dining is None:
        dining = categories.category_create(tenant=tenant, code="dining", name="Dining")
        categories.multiplier_create(tenant=tenant, category=dining, factor=Decimal("2"))
    post(api_client, "/api/v1/categories/dining/multipliers", body, None)
    multiplier = Multiplier.objects.filter(category=dining).order_by("pk").first()
    patch(api_client, f"/api/v1/categories/dining/multipliers/{multiplier.pk}", body)


# The back office ------------------------------------------------------------------------


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def operator_login(client, tenant, role=Operator.Role.MANAGER):
    client.force_login(OperatorFactory(tenant=tenant, role=role).user)


MULTIPLIER_FORM = {
    "factor": "2",
    "valid_from_0": "",
    "valid_from_1": "",
    "valid_to_0": "",
    "valid_to_1": "",
    "tier": "",
    "cap_points": "",
    "cap_period": "",
}


def test_admin_category_writes_go_through_the_services(client, tenant, django_capture_on_commit_callbacks):
    operator_login(client, tenant)
    assert category_config_get(tenant=tenant).categories == {}

    with django_capture_on_commit_callbacks(execute=True):
        added = client.post(
            admin_url("rewards_spendcategory_add"), {"code": "dining", "name": "Dining", "mcc_codes": "5812, 5814"}
        )
    assert added.status_code == 302, added.context["adminform"].form.errors
    dining = SpendCategory.objects.get(tenant=tenant, code="dining")
    assert dining.mcc_codes == ["5812", "5814"]
    assert [e.data["code"] for e in events(tenant, "category.created")] == ["dining"]
    assert category_config_get(tenant=tenant).mcc == {"5812": "dining", "5814": "dining"}

    with django_capture_on_commit_callbacks(execute=True):
        changed = client.post(
            admin_url("rewards_spendcategory_change", dining.pk), {"name": "Restaurants", "mcc_codes": "5812"}
        )
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    assert [e.data["name"] for e in events(tenant, "category.updated")] == ["Restaurants"]
    assert category_config_get(tenant=tenant).mcc == {"5812": "dining"}


def test_admin_refusals_are_form_errors_and_write_nothing(client, tenant):
    dining = categories.category_create(tenant=tenant, code="dining", name="Dining", mcc_codes=["5812"])
    child = categories.category_create(tenant=tenant, code="fast-food", name="Fast", parent=dining)
    operator_login(client, tenant)
    before = written(tenant)

    taken = client.post(admin_url("rewards_spendcategory_add"), {"code": "cafe", "name": "Cafe", "mcc_codes": "5812"})
    cycle = client.post(
        admin_url("rewards_spendcategory_change", dining.pk), {"name": "Dining", "parent": child.pk, "mcc_codes": ""}
    )
    duplicate = client.post(admin_url("rewards_spendcategory_add"), {"code": "dining", "name": "Again"})

    assert taken.status_code == 200
    assert "mcc_codes" in taken.context["adminform"].form.errors
    assert cycle.status_code == 200
    assert "parent" in cycle.context["adminform"].form.errors
    assert duplicate.status_code == 200
    assert duplicate.context["adminform"].form.errors
    assert written(tenant) == before


def test_admin_multiplier_writes_make_versions_events_and_fresh_config(
    client, tenant, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        dining = categories.category_create(tenant=tenant, code="dining", name="Dining")
    operator_login(client, tenant)

    with django_capture_on_commit_callbacks(execute=True):
        added = client.post(admin_url("rewards_multiplier_add"), {"category": dining.pk, **MULTIPLIER_FORM})
    assert added.status_code == 302, added.context["adminform"].form.errors
    multiplier = Multiplier.objects.get(tenant=tenant)

    with django_capture_on_commit_callbacks(execute=True):
        changed = client.post(
            admin_url("rewards_multiplier_change", multiplier.pk), {**MULTIPLIER_FORM, "factor": "2.5"}
        )
    assert changed.status_code == 302, changed.context["adminform"].form.errors
    multiplier.refresh_from_db()
    assert (multiplier.factor, multiplier.version) == (Decimal("2.5"), 2)
    (rule,) = category_config_get(tenant=tenant).multipliers
    assert (rule.factor, rule.version) == (Decimal("2.5"), 2)

    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.post(admin_url("rewards_multiplier_delete", multiplier.pk), {"post": "yes"})
    assert deleted.status_code == 302
    assert not Multiplier.objects.exists()
    assert category_config_get(tenant=tenant).multipliers == ()
    actions = [e.data["multiplier"]["action"] for e in events(tenant, "category.updated")]
    assert actions == ["created", "updated", "deleted"]


def test_admin_multiplier_cap_without_period_is_a_form_error(client, tenant):
    dining = categories.category_create(tenant=tenant, code="dining", name="Dining")
    operator_login(client, tenant)

    response = client.post(
        admin_url("rewards_multiplier_add"), {"category": dining.pk, **MULTIPLIER_FORM, "cap_points": "100"}
    )

    assert response.status_code == 200
    assert "cap_period" in response.context["adminform"].form.errors
    assert not Multiplier.objects.exists()


def test_admin_another_tenants_categories_and_multipliers_are_not_found(client, tenant, other_tenant):
    theirs = categories.category_create(tenant=other_tenant, code="theirs", name="Theirs")
    multiplier = categories.multiplier_create(tenant=other_tenant, category=theirs, factor=Decimal("2"))
    operator_login(client, tenant, Operator.Role.OWNER)

    assert client.get(admin_url("rewards_spendcategory_change", theirs.pk)).status_code == 404
    assert client.get(admin_url("rewards_multiplier_change", multiplier.pk)).status_code == 404
    changed = client.post(admin_url("rewards_multiplier_change", multiplier.pk), {**MULTIPLIER_FORM, "factor": "9"})
    assert changed.status_code == 404
    assert client.post(admin_url("rewards_multiplier_delete", multiplier.pk), {"post": "yes"}).status_code == 404
    multiplier.refresh_from_db()
    assert (multiplier.factor, multiplier.version) == (Decimal("2"), 1)
    # and the category choices are the operator's own
    form = client.get(admin_url("rewards_multiplier_add")).context["adminform"].form
    assert theirs not in form.fields["category"].queryset


def test_admin_viewer_cannot_change_categories(client, tenant):
    dining = categories.category_create(tenant=tenant, code="dining", name="Dining")
    operator_login(client, tenant, Operator.Role.VIEWER)

    response = client.post(admin_url("rewards_spendcategory_change", dining.pk), {"name": "Renamed", "mcc_codes": ""})

    assert response.status_code == 403
    assert SpendCategory.objects.get(pk=dining.pk).name == "Dining"
