"""Value per point and member recommendations, on the fixed catalog of tests/insights/ai_helpers.py."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.dateparse import parse_datetime

from catalog import services as catalog
from catalog.models import StockMovement
from catalog.pricing import member_point_cost
from core.rls import WALL_QUERIES
from insights.value import kind_rates, member_cost_expression, value_per_point
from rewards.services import member_token_issue
from tests.conftest import client_for_key
from tests.factories import MemberFactory, TenantFactory
from tests.insights.ai_helpers import build_catalog, give_expiring, member_at, names

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return build_catalog(tenant)


def recommendations(client, member, **params):
    response = client.get(f"/api/v1/members/{member.external_ref}/recommendations", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_value_per_point_is_the_cash_value_over_the_discounted_cost():
    assert value_per_point(Decimal("10.00"), 900) == Decimal("0.011111")
    assert value_per_point(Decimal("45.00"), 2700) == Decimal("0.016667")
    assert value_per_point(Decimal("0.00"), 200) == Decimal("0.000000")
    assert value_per_point(Decimal("5.00"), 0) is None  # free at a 100% discount


@pytest.mark.parametrize("discount", ["0", "10", "12.5", "33.33", "99.99", "100"])
def test_the_database_prices_items_as_catalog_pricing_does(tenant, discount):
    # The ranking in SQL repeats catalog.pricing.member_point_cost; both must round up alike.
    costs = [1, 3, 7, 99, 101, 333, 1000, 2999, 12345]
    for cost in costs:
        catalog.item_create(tenant=tenant, name=f"Item {cost}", point_cost=cost, cash_value=Decimal("7.00"))
    expression = member_cost_expression(Decimal(discount))
    in_sql = dict(tenant.catalog_items.annotate(cost=expression).values_list("point_cost", "cost"))
    assert in_sql == {cost: member_point_cost(cost, Decimal(discount)) for cost in costs}


def test_affordable_rewards_come_best_value_first_at_the_tier_price(api_client, tenant, shop):
    # given a Silver member (10% off) with 1,000 points
    member = member_at(tenant, shop["tiers"]["silver"], points=1000)

    # when the tenant asks for their recommendations
    body = recommendations(api_client, member)

    # then what 1,000 points redeem comes best value per point first, priced at 10% off; Coffee
    # and Music credit tie at 0.016667 and the cheaper comes first
    assert body["balance"] == 1000
    assert body["tier"] == {"tierId": "silver", "discountPercentage": "10.00"}
    now = body["affordableNow"]
    assert names(now) == ["Coffee", "Music credit", "Limited tote", "Gift card 10", "Headphones"]
    assert [row["memberPointCost"] for row in now] == [180, 360, 540, 900, 450]
    assert [row["pointCost"] for row in now] == [200, 400, 600, 1000, 500]
    assert [row["valuePerPoint"] for row in now] == ["0.016667", "0.016667", "0.012222", "0.011111", "0.008889"]
    assert {row["pointsNeeded"] for row in now} == {0}
    assert now[0]["category"] == {"code": "digital", "name": "Digital"}
    assert now[0]["cashValue"] == "3.00" and now[0]["currency"] == "USD" and now[0]["kind"] == "DIGITAL"

    # and what is beyond them, best value first, with the points still needed
    later = body["worthSavingFor"]
    assert names(later) == ["Flight voucher", "Gift card 25"]
    assert [(row["memberPointCost"], row["valuePerPoint"], row["pointsNeeded"]) for row in later] == [
        (2700, "0.016667", 1700),
        (1800, "0.013889", 800),
    ]


def test_the_tier_discount_decides_what_is_affordable_and_its_value(api_client, tenant, shop):
    bronze = member_at(tenant, shop["tiers"]["bronze"], points=950)
    silver = member_at(tenant, shop["tiers"]["silver"], points=950)

    at_list_price = recommendations(api_client, bronze)
    card = next(row for row in at_list_price["worthSavingFor"] if row["name"] == "Gift card 10")
    assert (card["memberPointCost"], card["valuePerPoint"], card["pointsNeeded"]) == (1000, "0.010000", 50)
    assert "Gift card 10" not in names(at_list_price["affordableNow"])

    discounted = recommendations(api_client, silver)
    card = next(row for row in discounted["affordableNow"] if row["name"] == "Gift card 10")
    assert (card["memberPointCost"], card["valuePerPoint"], card["pointsNeeded"]) == (900, "0.011111", 0)
    assert "Gift card 10" not in names(discounted["worthSavingFor"])


def test_out_of_stock_inactive_and_tier_hidden_rewards_are_left_out(
    api_client, tenant, shop, django_capture_on_commit_callbacks
):
    # The three left out are worth far more per point (0.1 and over) than anything shown.
    silver = member_at(tenant, shop["tiers"]["silver"], points=5000)
    body = recommendations(api_client, silver, limit=20)
    shown = set(names(body["affordableNow"]) + names(body["worthSavingFor"]))
    assert shown == {
        "Coffee",
        "Music credit",
        "Gift card 10",
        "Gift card 25",
        "Headphones",
        "Limited tote",
        "Flight voucher",
    }

    # a Gold member sees the Gold-only pass, first: 40.00 for 300 points at 25% off
    gold = member_at(tenant, shop["tiers"]["gold"], points=5000)
    first = recommendations(api_client, gold)["affordableNow"][0]
    assert (first["name"], first["memberPointCost"], first["valuePerPoint"]) == ("Gold lounge pass", 300, "0.133333")

    # and the sold-out speaker comes back once restocked
    with django_capture_on_commit_callbacks(execute=True):
        catalog.stock_record(
            tenant=tenant, item=shop["items"]["Sold-out speaker"], kind=StockMovement.Kind.RESTOCK, quantity=2
        )
    first = recommendations(api_client, silver)["affordableNow"][0]
    assert (first["name"], first["memberPointCost"], first["valuePerPoint"], first["stockQuantity"]) == (
        "Sold-out speaker",
        270,
        "0.111111",
        2,
    )


def test_points_expiring_soon_are_surfaced_with_what_they_redeem(api_client, tenant, shop, settings):
    # given 1,000 points: 500 expire in 5 days, 200 in 20, 300 in 90 (past the 30-day window)
    member = member_at(tenant, shop["tiers"]["silver"])
    first = give_expiring(member, 500, days=5)
    give_expiring(member, 200, days=20)
    give_expiring(member, 300, days=90)
    settings.INSIGHTS_EXPIRING_SOON_DAYS = 30

    body = recommendations(api_client, member)

    # then 700 points expire soon, the first in 5 days, and what those 700 redeem is suggested
    soon = body["expiringSoon"]
    assert soon["points"] == 700
    assert soon["withinDays"] == 30
    assert abs((parse_datetime(soon["expiresAt"]) - first).total_seconds()) < 1
    assert names(soon["items"]) == ["Coffee", "Music credit", "Limited tote", "Headphones"]
    assert all(row["memberPointCost"] <= 700 for row in soon["items"])
    assert body["balance"] == 1000 and "Gift card 10" in names(body["affordableNow"])  # 900: needs more than 700

    # with a 3-day window nothing expires soon
    settings.INSIGHTS_EXPIRING_SOON_DAYS = 3
    soon = recommendations(api_client, member)["expiringSoon"]
    assert soon == {"points": 0, "expiresAt": None, "withinDays": 3, "items": []}


def test_rates_per_kind_are_cached_until_the_catalog_changes(
    api_client, tenant, shop, django_assert_num_queries, django_capture_on_commit_callbacks
):
    # Average value per point at list price over active items with a cash value, whatever
    # their stock or tier (the retired mug is inactive):
    #   DIGITAL 0.015, 0.015; GIFT_CARD 0.01, 0.0125; MERCHANDISE 0.008, 0.011, 0.1; TRAVEL 0.015, 0.1
    member = member_at(tenant, shop["tiers"]["bronze"])
    rates = recommendations(api_client, member)["rates"]
    assert rates == [
        {"kind": "DIGITAL", "valuePerPoint": "0.015000", "items": 2},
        {"kind": "GIFT_CARD", "valuePerPoint": "0.011250", "items": 2},
        {"kind": "MERCHANDISE", "valuePerPoint": "0.039667", "items": 3},
        {"kind": "TRAVEL", "valuePerPoint": "0.057500", "items": 2},
    ]
    with django_assert_num_queries(0):
        kind_rates(tenant=tenant)

    # an edit through the catalog retires them once it commits
    card = shop["items"]["Gift card 25"]
    with django_capture_on_commit_callbacks(execute=True):
        catalog.item_update(item=card, expected_version=card.version, fields={"cash_value": Decimal("30.00")})
    gift_cards = next(rate for rate in kind_rates(tenant=tenant) if rate.kind == "GIFT_CARD")
    assert gift_cards.value_per_point == Decimal("0.012500")  # (0.01 + 0.015) / 2


def test_the_queries_do_not_grow_with_the_catalog(django_capture_on_commit_callbacks):
    def queries_for(items: int) -> tuple[int, int]:
        with django_capture_on_commit_callbacks(execute=True):
            tenant = TenantFactory()
            tiers = build_catalog(tenant)["tiers"]
            for n in range(items):
                catalog.item_create(
                    tenant=tenant, name=f"Extra {n}", point_cost=100 + n, cash_value=Decimal(n), category="digital"
                )
        member = member_at(tenant, tiers["silver"], points=1000)
        give_expiring(member, 300, days=3)
        client = client_for_key(tenant.raw_api_key)
        counts = []
        for _ in range(2):  # cold caches (tiers, rates), then warm
            with CaptureQueriesContext(connection) as captured:
                recommendations(client, member, limit=20)
            counts.append(len(captured))
        return counts[0], counts[1]

    # (cold, warm): 12 and 9 at the time of writing, for 10 items as for 70
    small, large = queries_for(0), queries_for(60)
    assert small == large
    assert large[1] <= 9 + WALL_QUERIES, large


def test_the_member_reads_their_own(tenant, shop):
    member = member_at(tenant, shop["tiers"]["silver"], points=1000)
    token, _ = member_token_issue(member=member)
    client = client_for_key("")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.get("/api/v1/me/recommendations", {"limit": 2})

    assert response.status_code == 200
    body = response.json()
    assert body["memberRef"] == member.external_ref
    assert names(body["affordableNow"]) == ["Coffee", "Music credit"]
    assert names(body["worthSavingFor"]) == ["Flight voucher", "Gift card 25"]
    # the members' path is the tenant's
    assert client.get(f"/api/v1/members/{member.external_ref}/recommendations").status_code == 403


def test_another_tenants_member_is_not_found(other_client, tenant, shop):
    member = member_at(tenant, shop["tiers"]["silver"], points=1000)
    response = other_client.get(f"/api/v1/members/{member.external_ref}/recommendations")
    assert response.status_code == 404
    assert response.json()["errors"][0]["attr"] == "memberRef"


@pytest.mark.parametrize("limit", ["0", "21", "many"])
def test_a_bad_limit_is_a_400_naming_it(api_client, member, limit):
    response = api_client.get(f"/api/v1/members/{member.external_ref}/recommendations", {"limit": limit})
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "validation_error"
    assert body["errors"][0]["attr"] == "limit"


def test_a_member_of_an_empty_catalog_gets_empty_lists(api_client, tenant):
    member = MemberFactory(tenant=tenant)
    body = recommendations(api_client, member)
    assert body["affordableNow"] == [] and body["worthSavingFor"] == [] and body["rates"] == []
    assert body["tier"] == {"tierId": None, "discountPercentage": "0.00"}
