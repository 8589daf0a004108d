from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from rewards import contributions
from rewards.contributions import TierContext
from rewards.models import InboundEvent, Member, Multiplier, MultiplierUsage, OutboxEvent, SpendCategory, Transfer
from rewards.simulations import Changes, ProposedMultiplier, SimulationInvalid, simulation_run
from tests.core.shapes import assert_error

pytestmark = pytest.mark.django_db

JAN = {"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}


def purchase(event_id, amount, member_ref="m-1", occurred_at="2026-01-15T10:00:00Z", **extra):
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": member_ref,
        "amount": amount,
        "currency": "USD",
        "occurredAt": occurred_at,
        **extra,
    }


def seed(client, *events):
    for event in events:
        response = client.post("/api/v1/events", event, format="json")
        assert response.status_code == 201, response.json()


def category(tenant, code, factor=None):
    spend = SpendCategory.objects.create(tenant=tenant, code=code, name=code.title())
    if factor is not None:
        Multiplier.objects.create(tenant=tenant, category=spend, factor=Decimal(factor))
    return spend


def simulate(client, changes, status=200, **extra):
    response = client.post("/api/v1/simulations", {**JAN, "changes": changes, **extra}, format="json")
    assert response.status_code == status, response.json()
    return response.json()


def test_doubling_a_category_multiplier_doubles_exactly_its_points(api_client, tenant):
    # given dining earns double, and purchases in and out of dining (one split by line items)
    category(tenant, "dining", factor="2")
    category(tenant, "groceries")
    seed(
        api_client,
        purchase("dine-1", "10.00", category="dining"),
        purchase("dine-2", "7.50", category="dining"),
        purchase("groc-1", "30.00", member_ref="m-2", category="groceries"),
        purchase(
            "mixed-1",
            "20.00",
            member_ref="m-3",
            category="groceries",
            lineItems=[{"sku": "wine", "amount": "5.00", "category": "dining"}],
        ),
    )

    # when dining's factor is proposed at 4 (the best multiplier for an event wins)
    result = simulate(api_client, {"multipliers": [{"category": "dining", "factor": "4"}]})

    # then only dining's points double: 20+15+30+(10+15) now, 40+30+30+(20+15) proposed
    assert result["events"] == 4 and result["members"] == 3
    assert result["baseline"] == {"points": 90}
    assert result["proposed"] == {"points": 135}
    assert result["difference"] == {"points": 45, "percent": "50.00"}
    assert result["membersAffected"] == 2
    changes = {c["eventId"]: (c["baseline"], c["proposed"], c["difference"]) for c in result["largestChanges"]}
    assert changes == {"dine-1": (20, 40, 20), "dine-2": (15, 30, 15), "mixed-1": (25, 35, 10)}
    assert result["recordedPoints"] == 90


def test_replace_drops_the_current_multipliers_and_changes_rank_by_absolute_size(api_client, tenant):
    # given dining x2 today and travel without a multiplier
    category(tenant, "dining", factor="2")
    category(tenant, "travel")
    seed(
        api_client,
        purchase("dine-big", "50.00", category="dining"),
        purchase("dine-small", "5.00", member_ref="m-2", category="dining"),
        purchase("travel-mid", "20.00", member_ref="m-3", category="travel"),
    )

    # when the multipliers are replaced by travel x3 alone, listing the two largest changes
    result = simulate(api_client, {"replace": True, "multipliers": [{"category": "travel", "factor": "3"}]}, top=2)

    # then dining falls back to x1 and the listing is by absolute difference, losses included
    assert [(c["eventId"], c["difference"]) for c in result["largestChanges"]] == [
        ("dine-big", -50),
        ("travel-mid", 40),
    ]
    assert result["largestChanges"][0] == {
        "eventId": "dine-big",
        "memberRef": "m-1",
        "occurredAt": "2026-01-15T10:00:00Z",
        "baseline": 100,
        "proposed": 50,
        "difference": -50,
    }
    assert result["difference"] == {"points": -15, "percent": "-11.54"}  # 130 -> 115
    assert result["membersAffected"] == 3


def test_an_earn_rate_and_rounding_change(api_client, tenant):
    seed(api_client, purchase("e-1", "12.50"), purchase("e-2", "3.30", member_ref="m-2"))

    higher = simulate(api_client, {"earnRate": "1.5"})
    rounded = simulate(api_client, {"earnRate": "1.5", "rounding": "HALF_UP"})

    # each event rounds on its own: 12 + 3 today; 18.75 and 4.95 floor to 18 + 4, round half-up to 19 + 5
    assert higher["baseline"]["points"] == 15
    assert higher["proposed"]["points"] == 22
    assert higher["difference"] == {"points": 7, "percent": "46.67"}
    assert rounded["proposed"]["points"] == 24
    assert {c["eventId"]: c["proposed"] for c in higher["largestChanges"]} == {"e-1": 18, "e-2": 4}


def test_only_applied_purchases_inside_the_range_count(api_client, tenant):
    seed(
        api_client,
        purchase("before", "100.00", occurred_at="2025-12-31T23:59:59Z"),
        purchase("at-from", "10.00", occurred_at="2026-01-01T00:00:00Z"),
        purchase("inside", "20.00", occurred_at="2026-01-31T23:59:59Z"),
        purchase("at-to", "1000.00", occurred_at="2026-02-01T00:00:00Z"),
        {"type": "transaction.refunded", "eventId": "refund", "originalEventId": "inside", "amount": "5.00"},
        {"type": "action", "eventId": "login", "memberRef": "m-1", "actionCode": "app.login"},
    )
    rejected = api_client.post("/api/v1/events", purchase("eur", "500.00", currency="EUR"), format="json")
    assert rejected.status_code == 422

    result = simulate(api_client, {"earnRate": "2"})

    assert result["events"] == 2
    assert result["baseline"]["points"] == 30
    assert result["proposed"]["points"] == 60
    assert sorted(c["eventId"] for c in result["largestChanges"]) == ["at-from", "inside"]


def test_recorded_points_are_what_was_awarded_and_the_baseline_ignores_limits(api_client, tenant):
    # given a daily limit that cut the second award short
    api_client.post(f"/api/v1/tenants/{tenant.pk}/user-limits", {"memberRef": "m-1", "maxPerDay": 20}, format="json")
    seed(api_client, purchase("e-1", "15.00"), purchase("e-2", "15.00"))

    result = simulate(api_client, {})

    assert result["recordedPoints"] == 20
    assert result["baseline"]["points"] == result["proposed"]["points"] == 30
    assert result["difference"] == {"points": 0, "percent": "0.00"}
    assert result["membersAffected"] == 0 and result["largestChanges"] == []
    assert any("limits" in note for note in result["notes"])


def test_both_sides_use_the_members_current_tier(api_client, tenant, monkeypatch):
    # given m-gold is gold (x2) now, whatever it was when it earned
    category(tenant, "dining")
    seed(
        api_client,
        purchase("gold-1", "10.00", member_ref="m-gold", category="dining"),
        purchase("plain-1", "10.00", member_ref="m-plain", category="dining"),
    )
    monkeypatch.setattr(
        contributions,
        "_tier_provider",
        lambda tenant, member: TierContext("gold", Decimal("2")) if member.external_ref == "m-gold" else TierContext(),
    )
    monkeypatch.setattr(contributions, "_tier_batch_provider", None)  # ask the provider above, member by member

    # when dining x3 is proposed for gold members only
    result = simulate(api_client, {"multipliers": [{"category": "dining", "factor": "3", "tier": "gold"}]})

    # then the gold member goes from 10x2 to 10x2x3 and the other member does not move
    assert result["baseline"]["points"] == 30
    assert result["proposed"]["points"] == 70
    assert [(c["eventId"], c["baseline"], c["proposed"]) for c in result["largestChanges"]] == [("gold-1", 20, 60)]
    assert result["membersAffected"] == 1


def test_a_multiplier_outside_its_validity_window_does_not_apply(api_client, tenant):
    category(tenant, "dining")
    seed(
        api_client,
        purchase("early", "10.00", category="dining", occurred_at="2026-01-05T00:00:00Z"),
        purchase("late", "10.00", category="dining", occurred_at="2026-01-25T00:00:00Z"),
    )

    window = {"validFrom": "2026-01-20T00:00:00Z", "validTo": "2026-02-01T00:00:00Z"}
    result = simulate(api_client, {"multipliers": [{"category": "dining", "factor": "2", **window}]})

    assert [c["eventId"] for c in result["largestChanges"]] == ["late"]
    assert result["difference"]["points"] == 10


def test_nothing_is_written(api_client, tenant):
    category(tenant, "dining", factor="2")
    seed(api_client, purchase("e-1", "10.00", category="dining"), purchase("e-2", "25.00", member_ref="m-2"))
    models = (Transfer, InboundEvent, OutboxEvent, Member, MultiplierUsage, Multiplier, SpendCategory)
    before = {model.__name__: model.objects.count() for model in models}
    tenant_before = tenant.__class__.objects.values().get(pk=tenant.pk)

    with CaptureQueriesContext(connection) as queries:
        result = simulate(
            api_client, {"earnRate": "3", "rounding": "CEILING", "multipliers": [{"category": "dining", "factor": "5"}]}
        )

    assert result["proposed"]["points"] > result["baseline"]["points"]
    assert {model.__name__: model.objects.count() for model in models} == before
    assert tenant.__class__.objects.values().get(pk=tenant.pk) == tenant_before
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []


def test_queries_do_not_grow_with_events_or_members(api_client, tenant):
    seed(api_client, *(purchase(f"a-{i}", "10.00", member_ref=f"m-{i % 2}") for i in range(2)))
    # A first run fills the category configuration cache, which would make the counts differ for another reason.
    simulate(api_client, {"earnRate": "2"})
    with CaptureQueriesContext(connection) as few:
        simulate(api_client, {"earnRate": "2"})
    seed(api_client, *(purchase(f"b-{i}", "10.00", member_ref=f"n-{i % 7}") for i in range(20)))

    with CaptureQueriesContext(connection) as many:
        result = simulate(api_client, {"earnRate": "2"})

    assert result["events"] == 22 and result["members"] == 9
    assert len(many) == len(few)


def test_an_empty_range_has_no_percent(api_client, tenant):
    seed(api_client, purchase("e-1", "10.00"))

    result = simulate(api_client, {"earnRate": "2"}, **{"from": "2030-01-01T00:00:00Z", "to": "2030-02-01T00:00:00Z"})

    assert result["events"] == 0 and result["members"] == 0
    assert result["difference"] == {"points": 0, "percent": None}


@pytest.mark.parametrize(
    ("body", "attr", "code"),
    [
        ({"from": "2026-02-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, "to", "range_empty"),
        ({"from": "2026-03-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}, "to", "range_empty"),
        ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:01Z"}, "to", "range_too_long"),
        ({"from": None}, "from", "null"),
        (
            {"changes": {"multipliers": [{"category": "nope", "factor": "2"}]}},
            "changes.multipliers.0.category",
            "unknown_category",
        ),
        (
            {"changes": {"multipliers": [{"category": "dining", "factor": "1.00005"}]}},
            "changes.multipliers.0.factor",
            "max_decimal_places",
        ),
        (
            {"changes": {"multipliers": [{"category": "dining", "factor": "-1"}]}},
            "changes.multipliers.0.factor",
            "min_value",
        ),
        (
            {
                "changes": {
                    "multipliers": [
                        {"category": "dining", "factor": "2"},
                        {
                            "category": "dining",
                            "factor": "2",
                            "validFrom": "2026-01-02T00:00:00Z",
                            "validTo": "2026-01-01T00:00:00Z",
                        },
                    ]
                }
            },
            "changes.multipliers.1.validTo",
            "invalid_window",
        ),
        ({"changes": {"earnRate": "-0.5"}}, "changes.earnRate", "min_value"),
        ({"changes": {"rounding": "UP"}}, "changes.rounding", "invalid_choice"),
        ({"top": 101}, "top", "max_value"),
    ],
    ids=[
        "from-equals-to",
        "from-after-to",
        "over-366-days",
        "from-null",
        "unknown-category",
        "factor-5-places",
        "factor-negative",
        "window-reversed",
        "earn-rate-negative",
        "rounding-unknown",
        "top-over-100",
    ],
)
def test_invalid_requests_name_the_field(api_client, tenant, body, attr, code):
    category(tenant, "dining")
    request = {**JAN, "changes": {}, **body}

    response = api_client.post("/api/v1/simulations", request, format="json")

    assert_error(response, 400, attr=attr, code=code)


def test_a_range_of_exactly_366_days_is_accepted(api_client, tenant):
    simulate(api_client, {}, **{"from": "2025-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"})


def test_another_tenants_events_and_categories_are_not_seen(api_client, tenant, other_client, other_tenant):
    # given both tenants have a "dining" category and purchases, with the same ids and memberRefs
    category(tenant, "dining", factor="2")
    category(other_tenant, "dining")
    category(tenant, "a-only")
    seed(api_client, purchase("e-1", "100.00", category="dining"), purchase("e-2", "50.00", member_ref="m-2"))
    seed(other_client, purchase("e-1", "10.00", category="dining"))

    # when tenant B simulates
    result = simulate(other_client, {"multipliers": [{"category": "dining", "factor": "3"}]})
    unknown = other_client.post(
        "/api/v1/simulations",
        {**JAN, "changes": {"multipliers": [{"category": "a-only", "factor": "2"}]}},
        format="json",
    )

    # then only B's event counts, at B's configuration, and A's category does not exist for B
    assert result["events"] == 1 and result["members"] == 1
    assert result["baseline"]["points"] == 10 and result["proposed"]["points"] == 30
    assert result["recordedPoints"] == 10
    assert_error(unknown, 400, attr="changes.multipliers.0.category", code="unknown_category")


def test_the_service_refuses_what_the_api_would(tenant):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    unknown = Changes(multipliers=(ProposedMultiplier(category="nope", factor=Decimal("2")),))

    with pytest.raises(SimulationInvalid) as refused:
        simulation_run(tenant=tenant, start=start, end=start + timedelta(days=1), changes=unknown)
    with pytest.raises(SimulationInvalid) as too_long:
        simulation_run(tenant=tenant, start=start, end=start + timedelta(days=367), changes=Changes())

    assert refused.value.field == "changes.multipliers.0.category"
    assert refused.value.code == "unknown_category"
    assert too_long.value.field == "to"
