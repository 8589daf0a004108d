"""Redemption requests through the API: one transaction prices, debits, reserves and records;
every refusal is a clear 4xx that changes nothing; members see only their own; a cancel
before fulfilment gives everything back, to the lots the points came from."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from catalog.models import Item, StockMovement
from redemptions.models import Redemption, RedemptionTransition
from redemptions.states import S, transition
from rewards.models import EarnedLot, OutboxEvent, Transfer
from rewards.services import member_token_issue, member_update, points_adjust
from tests.catalog.helpers import put_in_tier, tier_ladder
from tests.core.shapes import assert_error
from tests.redemptions.helpers import (
    assert_books_balance,
    balance,
    member_with,
    partner_config,
    reward,
    stock,
)

pytestmark = pytest.mark.django_db

PARTNER_URL = "http://127.0.0.1:9/partner"  # never called here: nothing is fulfilled on commit


@pytest.fixture
def config(tenant):
    return partner_config(tenant, PARTNER_URL)


def client_of(member) -> APIClient:
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def redeem(client, item, *, key="k-1", **body):
    payload = {"itemId": str(item.pk), **body}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post("/api/v1/redemptions", payload, format="json", **headers)


def test_a_member_redeems_at_their_tier_discount_in_one_step(tenant, config):
    # given a Silver member (10% off) with 1,000 points and an item of 250 points, 5 in stock
    ladder = tier_ladder(tenant)
    member = member_with(tenant, 1000)
    put_in_tier(member, ladder["silver"])
    item = reward(tenant, point_cost=250, stock=5)

    # when they redeem two
    response = redeem(client_of(member), item, quantity=2)

    # then 2 * ceil(250 * 0.9) = 450 points are debited, 2 units reserved, the redemption is PENDING
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["points"] == 450
    assert body["balance"] == 550
    assert body["calculation"] == {
        "unitPointCost": 250,
        "discountPercentage": "10.00",
        "unitPoints": 225,
        "discountPoints": 50,
        "points": 450,
        "cashValue": "10.00",
        "currency": tenant.currency,
        "pointValue": f"{tenant.point_value:.6f}",
        "tierCode": "silver",
    }
    assert body["partner"] == "acme"
    assert [h["toStatus"] for h in body["history"]] == ["PENDING"]
    assert balance(member) == 550
    assert stock(item) == 3
    redemption = Redemption.objects.get(pk=body["redemptionId"])
    assert redemption.debit_transfer.kind == Transfer.Kind.REDEMPTION
    assert redemption.debit_transfer.amount == 450
    assert StockMovement.objects.get(reference_id=str(redemption.pk)).quantity == -2
    events = list(OutboxEvent.objects.filter(member_ref=member.external_ref).values_list("type", flat=True))
    assert "redemption.requested" in events and "points.debited" in events
    assert_books_balance(tenant)


def test_a_redemption_reads_the_members_tier_once_and_its_round_trips_are_pinned(tenant, config):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ladder = tier_ladder(tenant)
    member = member_with(tenant, 1000)
    put_in_tier(member, ladder["silver"])
    item = reward(tenant, point_cost=250, stock=5)
    client = client_of(member)
    assert redeem(client, item, key="warm").status_code == 201  # caches and system accounts

    with CaptureQueriesContext(connection) as captured:
        response = redeem(client, item, key="k-2")

    assert response.status_code == 201, response.content
    assert response.json()["calculation"]["tierCode"] == "silver"
    sql = [q["sql"] for q in captured.captured_queries]
    # the tier prices the item, decides what the member sees and is recorded: one read for all
    assert sum('FROM "tiers_tierassignment"' in q for q in sql) == 1, "\n".join(sql)
    assert len(sql) == 37, "\n".join(sql)


def test_points_are_taken_from_the_lots_closest_to_expiry(tenant, config):
    member = member_with(tenant, 0)
    later = points_adjust(tenant=tenant, member=member, points=300, reason="a", actor="t").transfer
    soon = points_adjust(tenant=tenant, member=member, points=200, reason="b", actor="t").transfer
    never = points_adjust(tenant=tenant, member=member, points=100, reason="c", actor="t").transfer
    now = timezone.now()
    EarnedLot.objects.filter(transfer=later).update(expires_at=now + timedelta(days=90))
    EarnedLot.objects.filter(transfer=soon).update(expires_at=now + timedelta(days=10))
    item = reward(tenant, point_cost=350)

    assert redeem(client_of(member), item).status_code == 201

    remaining = {t: EarnedLot.objects.get(transfer=t).remaining for t in (soon, later, never)}
    assert remaining == {soon: 0, later: 150, never: 100}


def test_the_backend_redeems_on_behalf_of_a_member(tenant, config, api_client):
    member = member_with(tenant, 500)
    item = reward(tenant, point_cost=100)

    response = redeem(api_client, item, memberRef=member.external_ref)

    assert response.status_code == 201, response.content
    assert response.json()["memberRef"] == member.external_ref
    assert Redemption.objects.get().requested_by.startswith("api-key:")
    assert_error(redeem(api_client, item, key="k-2"), 400, attr="memberRef")


def test_a_member_token_redeems_only_for_its_own_member(tenant, config):
    member, other = member_with(tenant, 500), member_with(tenant, 500)
    item = reward(tenant)

    assert_error(redeem(client_of(member), item, memberRef=other.external_ref), 400, attr="memberRef")
    assert balance(other) == 500
    assert not Redemption.objects.exists()


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"quantity": 0}, "quantity"),
        ({"quantity": "two"}, "quantity"),
        ({"quantity": 101}, "quantity"),
        ({"itemId": ""}, "itemId"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_changes_nothing(tenant, config, body, attr):
    member = member_with(tenant, 10_000)
    item = reward(tenant, stock=5)
    payload = {"itemId": str(item.pk), **body}

    response = client_of(member).post("/api/v1/redemptions", payload, format="json", HTTP_IDEMPOTENCY_KEY="bad")

    assert_error(response, 400, attr=attr)
    assert (balance(member), stock(item), Redemption.objects.count()) == (10_000, 5, 0)


def test_the_idempotency_key_is_required(tenant, config):
    member = member_with(tenant, 500)
    assert_error(redeem(client_of(member), reward(tenant), key=None), 400, attr="Idempotency-Key")
    assert balance(member) == 500


def test_refusals_change_nothing(tenant, config):
    ladder = tier_ladder(tenant)
    member = member_with(tenant, 150)
    put_in_tier(member, ladder["bronze"])
    client = client_of(member)
    pricey = reward(tenant, point_cost=200, stock=3)
    sold_out = reward(tenant, point_cost=10, stock=0)
    gold_only = reward(tenant, point_cost=10, min_tier="gold")
    retired = reward(tenant, point_cost=10, is_active=False)

    assert_error(redeem(client, pricey, key="a"), 422, code="insufficient_points", attr="points")
    assert_error(redeem(client, sold_out, key="b"), 409, code="out_of_stock", attr="quantity")
    assert_error(redeem(client, gold_only, key="c"), 404, code="item_not_found", attr="itemId")
    assert_error(redeem(client, retired, key="d"), 404, code="item_not_found", attr="itemId")
    assert_error(redeem(client, pricey, key="e", quantity=4), 422, code="insufficient_points")

    assert balance(member) == 150
    assert (stock(pricey), stock(sold_out)) == (3, 0)
    assert not Redemption.objects.exists()
    assert not OutboxEvent.objects.filter(type__startswith="redemption.").exists()
    assert_books_balance(tenant)


def test_an_item_no_partner_fulfils_cannot_be_redeemed(tenant):
    partner_config(tenant, PARTNER_URL, kinds=["GIFT_CARD"])
    member = member_with(tenant, 500)
    trip = reward(tenant, kind=Item.Kind.TRAVEL)

    assert_error(redeem(client_of(member), trip), 422, code="no_fulfilment_partner", attr="itemId")
    assert balance(member) == 500


def test_a_closed_member_cannot_redeem(tenant, config, api_client):
    member = member_with(tenant, 500)
    member_update(member=member, status="CLOSED")
    response = redeem(api_client, reward(tenant), memberRef=member.external_ref)
    assert_error(response, 422, code="member_inactive")
    assert balance(member) == 500


def test_another_tenants_item_is_not_found(tenant, other_tenant, config):
    member = member_with(tenant, 500)
    theirs = reward(other_tenant)
    assert_error(redeem(client_of(member), theirs), 404, attr="itemId")


def test_the_same_key_returns_the_same_redemption(tenant, config):
    member = member_with(tenant, 500)
    client = client_of(member)
    item = reward(tenant, point_cost=100, stock=10)

    first = redeem(client, item, key="same")
    again = redeem(client, item, key="same")

    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert first.json()["redemptionId"] == again.json()["redemptionId"]
    assert (Redemption.objects.count(), balance(member), stock(item)) == (1, 400, 9)


def test_members_list_and_read_only_their_own(tenant, config, api_client):
    member, other = member_with(tenant, 500), member_with(tenant, 500)
    item = reward(tenant)
    mine = redeem(client_of(member), item, key="m").json()["redemptionId"]
    theirs = redeem(client_of(other), item, key="o").json()["redemptionId"]

    listed = client_of(member).get("/api/v1/redemptions").json()["results"]
    assert [r["redemptionId"] for r in listed] == [mine]
    assert client_of(member).get(f"/api/v1/redemptions/{mine}").status_code == 200
    assert_error(client_of(member).get(f"/api/v1/redemptions/{theirs}"), 404, attr="redemptionId")
    # the backend sees both, and filters
    assert {r["redemptionId"] for r in api_client.get("/api/v1/redemptions").json()["results"]} == {mine, theirs}
    by_member = api_client.get("/api/v1/redemptions", {"memberRef": other.external_ref}).json()["results"]
    assert [r["redemptionId"] for r in by_member] == [theirs]
    assert api_client.get("/api/v1/redemptions", {"status": "COMPLETED"}).json()["results"] == []
    assert_error(api_client.get("/api/v1/redemptions", {"status": "DONE"}), 400, attr="status")


def test_another_tenants_redemption_is_invisible(tenant, config, other_client):
    member = member_with(tenant, 500)
    rid = redeem(client_of(member), reward(tenant)).json()["redemptionId"]

    assert_error(other_client.get(f"/api/v1/redemptions/{rid}"), 404)
    assert_error(other_client.post(f"/api/v1/redemptions/{rid}:cancel", {}, format="json"), 404)
    assert other_client.get("/api/v1/redemptions").json()["results"] == []
    assert Redemption.objects.get(pk=rid).status == "PENDING"


def test_a_cancel_before_fulfilment_gives_points_back_to_their_lots_and_stock_back(tenant, config):
    member = member_with(tenant, 0)
    soon = points_adjust(tenant=tenant, member=member, points=100, reason="a", actor="t").transfer
    never = points_adjust(tenant=tenant, member=member, points=100, reason="b", actor="t").transfer
    EarnedLot.objects.filter(transfer=soon).update(expires_at=timezone.now() + timedelta(days=5))
    item = reward(tenant, point_cost=150, stock=4)
    client = client_of(member)
    rid = redeem(client, item).json()["redemptionId"]
    assert (balance(member), stock(item)) == (50, 3)

    response = client.post(f"/api/v1/redemptions/{rid}:cancel", {"reason": "changed my mind"}, format="json")

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "CANCELLED"
    assert [h["toStatus"] for h in body["history"]] == ["PENDING", "CANCELLED"]
    assert (balance(member), stock(item)) == (200, 4)
    assert EarnedLot.objects.get(transfer=soon).remaining == 100  # back where they came from
    assert EarnedLot.objects.get(transfer=never).remaining == 100
    redemption = Redemption.objects.get(pk=rid)
    assert redemption.refund_transfer.kind == Transfer.Kind.REDEMPTION_REFUND
    assert OutboxEvent.objects.filter(type="redemption.cancelled", member_ref=member.external_ref).count() == 1
    # a second cancel is refused and refunds nothing more
    assert_error(client.post(f"/api/v1/redemptions/{rid}:cancel", {}, format="json"), 409, code="not_cancellable")
    assert balance(member) == 200
    assert_books_balance(tenant)


def test_a_refund_to_a_lot_that_expired_meanwhile_opens_a_new_lot(tenant, config):
    member = member_with(tenant, 0)
    lot_transfer = points_adjust(tenant=tenant, member=member, points=100, reason="a", actor="t").transfer
    EarnedLot.objects.filter(transfer=lot_transfer).update(expires_at=timezone.now() + timedelta(days=1))
    rid = redeem(client_of(member), reward(tenant, point_cost=100)).json()["redemptionId"]
    EarnedLot.objects.filter(transfer=lot_transfer).update(expires_at=timezone.now() - timedelta(minutes=1))

    client_of(member).post(f"/api/v1/redemptions/{rid}:cancel", {}, format="json")

    assert balance(member) == 100
    assert EarnedLot.objects.get(transfer=lot_transfer).remaining == 0
    refund = Redemption.objects.get(pk=rid).refund_transfer
    assert EarnedLot.objects.get(transfer=refund).remaining == 100
    assert_books_balance(tenant)


def test_a_redemption_in_fulfilment_cannot_be_cancelled(tenant, config):
    member = member_with(tenant, 500)
    client = client_of(member)
    rid = redeem(client, reward(tenant)).json()["redemptionId"]
    redemption = Redemption.objects.get(pk=rid)
    assert transition(redemption, S.FULFILLING, actor="worker")

    assert_error(client.post(f"/api/v1/redemptions/{rid}:cancel", {}, format="json"), 409, code="not_cancellable")
    assert balance(member) == 400
    assert Redemption.objects.get(pk=rid).status == "FULFILLING"


def test_illegal_transitions_are_refused_and_leave_no_trace(tenant, config):
    member = member_with(tenant, 500)
    rid = redeem(client_of(member), reward(tenant)).json()["redemptionId"]
    redemption = Redemption.objects.get(pk=rid)

    for target in (S.COMPLETED, S.REFUNDED, S.FAILED):
        with pytest.raises(Exception, match="cannot go from PENDING"):
            transition(redemption, target, actor="test")
    assert transition(redemption, S.CANCELLED, actor="test")
    with pytest.raises(Exception, match="cannot go from CANCELLED"):
        transition(redemption, S.FULFILLING, actor="test")

    assert Redemption.objects.get(pk=rid).status == "CANCELLED"
    assert list(RedemptionTransition.objects.filter(redemption=redemption).values_list("to_status", flat=True)) == [
        "PENDING",
        "CANCELLED",
    ]
