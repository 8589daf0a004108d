"""Stock moves only through conditional updates, each recorded: operators restock and adjust
through the API, reservations never oversell under concurrency, and concurrent edits on one
version let exactly one through."""

import pytest
from django.db.models import Sum
from rest_framework.test import APIClient

from catalog import services
from catalog.exceptions import OutOfStock
from catalog.models import Item, StockMovement
from tests.catalog.helpers import item
from tests.core.shapes import assert_error
from tests.rewards.test_earning_concurrency import run_in_threads

MOVEMENTS = "/api/v1/catalog/items/{}/stock-movements"


def stock(pk) -> int | None:
    return Item.objects.get(pk=pk).stock_quantity


def movements_total(pk) -> int:
    return StockMovement.objects.filter(item_id=pk).aggregate(total=Sum("quantity"))["total"] or 0


@pytest.mark.django_db
def test_operators_restock_and_adjust_and_every_change_is_a_movement(api_client, tenant):
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=5)
    url = MOVEMENTS.format(lamp.pk)

    restocked = api_client.post(url, {"kind": "RESTOCK", "quantity": 10, "reason": "delivery"}, format="json")
    adjusted = api_client.post(url, {"kind": "ADJUST", "quantity": -3, "reason": "damaged"}, format="json")

    assert restocked.status_code == 201, restocked.json()
    assert (restocked.json()["stockAfter"], adjusted.json()["stockAfter"]) == (15, 12)
    assert restocked.json()["actor"].startswith("api-key:")
    assert stock(lamp.pk) == 12 == movements_total(lamp.pk)
    listed = api_client.get(url).json()["results"]
    assert [(m["kind"], m["quantity"]) for m in listed] == [("ADJUST", -3), ("RESTOCK", 10), ("INITIAL", 5)]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "attr"),
    [
        ({"kind": "ADJUST", "quantity": -6}, 409, "quantity"),
        ({"kind": "RESTOCK", "quantity": 0}, 400, "quantity"),
        ({"kind": "RESTOCK", "quantity": -2}, 400, "quantity"),
        ({"kind": "ADJUST", "quantity": 0}, 400, "quantity"),
        ({"kind": "RESERVE", "quantity": 1}, 400, "kind"),
        ({"kind": "RESTOCK"}, 400, "quantity"),
    ],
)
def test_bad_movements_are_refused_and_change_nothing(api_client, tenant, body, status, attr):
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=5)

    assert_error(api_client.post(MOVEMENTS.format(lamp.pk), body, format="json"), status, attr=attr)

    assert stock(lamp.pk) == 5
    assert StockMovement.objects.filter(item=lamp).count() == 1


@pytest.mark.django_db
def test_unlimited_stock_has_nothing_to_move_but_reserves_always_succeed(api_client, tenant):
    ebook = item(tenant, "E-book", 200, kind="DIGITAL")

    assert_error(
        api_client.post(MOVEMENTS.format(ebook.pk), {"kind": "RESTOCK", "quantity": 1}, format="json"),
        409,
        code="stock_not_tracked",
    )
    change = services.stock_reserve(tenant=tenant, item_id=ebook.pk, quantity=3, reference_type="t", reference_id="1")
    assert change.stock_after is None
    assert stock(ebook.pk) is None


@pytest.mark.django_db
def test_counting_an_unlimited_items_stock_starts_with_a_movement(tenant):
    ebook = item(tenant, "E-book", 200)

    services.stock_track(tenant=tenant, item=ebook, quantity=7, reason="limited edition")

    assert stock(ebook.pk) == 7 == movements_total(ebook.pk)


@pytest.mark.django_db
def test_another_tenants_item_has_no_stock_to_move(other_client, tenant):
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=5)

    assert_error(other_client.post(MOVEMENTS.format(lamp.pk), {"kind": "RESTOCK", "quantity": 9}, format="json"), 404)
    assert_error(other_client.get(MOVEMENTS.format(lamp.pk)), 404)
    assert stock(lamp.pk) == 5


@pytest.mark.django_db(transaction=True)
def test_200_concurrent_reservations_of_50_in_stock_take_exactly_50(tenant):
    # given an item with 50 in stock
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=50)

    # when 200 reservations of one race on 16 connections
    def reserve(i):
        try:
            services.stock_reserve(
                tenant=tenant, item_id=lamp.pk, quantity=1, reference_type="test", reference_id=str(i)
            )
            return "ok"
        except OutOfStock:
            return "out"

    outcomes = run_in_threads(200, reserve, workers=16)

    # then exactly 50 got one, the stock is 0, and the movements account for every unit
    assert outcomes.count("ok") == 50
    assert outcomes.count("out") == 150
    assert stock(lamp.pk) == 0
    assert movements_total(lamp.pk) == 0
    assert StockMovement.objects.filter(item=lamp, kind="RESERVE").count() == 50


@pytest.mark.django_db(transaction=True)
def test_reservations_and_restocks_racing_add_up(tenant):
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=10)

    def act(i):
        if i % 3 == 0:
            services.stock_record(tenant=tenant, item=lamp, kind="RESTOCK", quantity=2)
            return "restock"
        try:
            services.stock_reserve(tenant=tenant, item_id=lamp.pk, quantity=1, reference_type="t", reference_id=str(i))
            return "ok"
        except OutOfStock:
            return "out"

    outcomes = run_in_threads(60, act, workers=16)

    assert stock(lamp.pk) == 10 + 2 * outcomes.count("restock") - outcomes.count("ok")
    assert stock(lamp.pk) == movements_total(lamp.pk)
    assert stock(lamp.pk) >= 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_edits_on_one_version_let_exactly_one_through(tenant):
    tote = item(tenant, "Tote Bag", 1000)

    def edit(i):
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=tenant.raw_api_key)
        response = client.patch(
            f"/api/v1/catalog/items/{tote.pk}", {"pointCost": 2000 + i, "version": 1}, format="json"
        )
        return response.status_code, response.json().get("pointCost")

    outcomes = run_in_threads(12, edit, workers=12)

    winners = [cost for code, cost in outcomes if code == 200]
    assert len(winners) == 1
    assert sorted(code for code, _ in outcomes) == [200] + [409] * 11
    current = Item.objects.get(pk=tote.pk)
    assert (current.point_cost, current.version) == (winners[0], 2)
