"""The catalog API: categories, items and their filters, what a member may see and pay,
optimistic locking of operator edits, deactivation, and a fixed query count for the list."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from catalog import services
from catalog.models import Item, Partner, StockMovement
from rewards import services as reward_services
from tests.catalog.helpers import item, put_in_tier, tier_ladder
from tests.core.shapes import assert_error

pytestmark = pytest.mark.django_db

ITEMS = "/api/v1/catalog/items"


@pytest.fixture
def shelves(tenant):
    electronics = services.category_create(tenant=tenant, code="electronics", name="Electronics")
    audio = services.category_create(
        tenant=tenant, code="audio", name="Audio", parent="electronics", names={"ar": "صوتيات"}
    )
    travel = services.category_create(tenant=tenant, code="travel", name="Travel")
    return {"electronics": electronics, "audio": audio, "travel": travel}


def names(response) -> list[str]:
    assert response.status_code == 200, response.json()
    return [row["name"] for row in response.json()["results"]]


def test_an_operator_adds_an_item_and_reads_it_back(api_client, shelves, tenant):
    body = {
        "sku": "HP-1",
        "name": "Wireless Headphones",
        "names": {"ar": "سماعات لاسلكية"},
        "description": "Over-ear, noise cancelling.",
        "category": "audio",
        "kind": "MERCHANDISE",
        "pointCost": 2500,
        "cashValue": "129.99",
        "stockQuantity": 10,
        "isInOfferPool": True,
    }

    created = api_client.post(ITEMS, body, format="json")

    assert created.status_code == 201, created.json()
    data = created.json()
    assert created["ETag"] == '"1"'
    assert data["category"] == {"code": "audio", "name": "Audio"}
    assert (data["pointCost"], data["cashValue"], data["currency"]) == (2500, "129.99", tenant.currency)
    assert (data["stockQuantity"], data["inStock"], data["version"]) == (10, True, 1)
    assert data["memberPointCost"] is None
    fetched = api_client.get(f"{ITEMS}/{data['itemId']}", HTTP_ACCEPT_LANGUAGE="ar").json()
    assert (fetched["name"], fetched["locale"]) == ("سماعات لاسلكية", "ar")
    assert fetched["category"]["name"] == "صوتيات"
    # a browser asking for English (with no English name) gets the default name, not the Arabic one
    english = api_client.get(f"{ITEMS}/{data['itemId']}", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").json()
    assert (english["name"], english["locale"]) == (data["name"], None)
    # the opening stock is the first movement
    movement = StockMovement.objects.get(item_id=data["itemId"])
    assert (movement.kind, movement.quantity, movement.stock_after) == ("INITIAL", 10, 10)


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"name": "X", "pointCost": 0}, "pointCost"),
        ({"name": "X", "pointCost": 10, "kind": "SPACESHIP"}, "kind"),
        ({"name": "X", "pointCost": 10, "category": "nope"}, "category"),
        ({"name": "X", "pointCost": 10, "partner": "nope"}, "partner"),
        ({"name": "X", "pointCost": 10, "minTier": "platinum"}, "minTier"),
        ({"name": "X", "pointCost": 10, "cashValue": "-1"}, "cashValue"),
        ({"name": "X", "pointCost": 10, "stockQuantity": -1}, "stockQuantity"),
        ({"name": "X", "pointCost": 10, "names": {"ar": ""}}, "names.ar"),
        ({"pointCost": 10}, "name"),
    ],
)
def test_bad_items_are_refused_naming_the_field_and_nothing_is_written(api_client, shelves, body, attr):
    response = api_client.post(ITEMS, body, format="json")

    assert_error(response, 400, attr=attr)
    assert not Item.objects.exists()


def test_the_sku_is_unique_in_a_tenant_but_not_across_tenants(api_client, other_client, shelves):
    assert api_client.post(ITEMS, {"sku": "A", "name": "One", "pointCost": 1}, format="json").status_code == 201
    assert_error(api_client.post(ITEMS, {"sku": "A", "name": "Two", "pointCost": 1}, format="json"), 409, attr="sku")
    assert other_client.post(ITEMS, {"sku": "A", "name": "Theirs", "pointCost": 1}, format="json").status_code == 201


def test_filters_narrow_the_list(api_client, tenant, shelves):
    item(tenant, "Earbuds", 500, category="audio", stock_quantity=0)
    item(tenant, "Speaker", 1500, category="audio", is_in_offer_pool=True)
    item(tenant, "Laptop Sleeve", 800, category="electronics", kind="MERCHANDISE")
    item(tenant, "Weekend in Lisbon", 40000, category="travel", kind="TRAVEL", stock_quantity=3)
    item(tenant, "Retired", 100, is_active=False)

    assert names(api_client.get(ITEMS)) == ["Earbuds", "Laptop Sleeve", "Speaker", "Weekend in Lisbon"]
    # a category takes in its subcategories
    assert names(api_client.get(ITEMS, {"category": "electronics"})) == ["Earbuds", "Laptop Sleeve", "Speaker"]
    assert names(api_client.get(ITEMS, {"category": "audio"})) == ["Earbuds", "Speaker"]
    assert names(api_client.get(ITEMS, {"kind": "TRAVEL"})) == ["Weekend in Lisbon"]
    assert names(api_client.get(ITEMS, {"minPoints": 600, "maxPoints": 1500})) == ["Laptop Sleeve", "Speaker"]
    assert names(api_client.get(ITEMS, {"inStock": "true"})) == ["Laptop Sleeve", "Speaker", "Weekend in Lisbon"]
    assert names(api_client.get(ITEMS, {"inStock": "false"})) == ["Earbuds"]
    assert names(api_client.get(ITEMS, {"offerPool": "true"})) == ["Speaker"]
    assert "Retired" in names(api_client.get(ITEMS, {"includeInactive": "true"}))


@pytest.mark.parametrize(
    ("params", "attr"),
    [
        ({"minPoints": "lots"}, "minPoints"),
        ({"minPoints": 10, "maxPoints": 5}, "maxPoints"),
        ({"kind": "BOAT"}, "kind"),
        ({"inStock": "maybe"}, "inStock"),
        ({"affordable": "true"}, "memberRef"),
    ],
)
def test_bad_filters_are_a_400_naming_the_parameter(api_client, params, attr):
    assert_error(api_client.get(ITEMS, params), 400, attr=attr)


def test_a_member_sees_only_active_items_their_tier_reaches_at_their_price(tenant, member, member_client):
    ladder = tier_ladder(tenant)
    put_in_tier(member, ladder["silver"])
    item(tenant, "Tote Bag", 1000)
    item(tenant, "Lounge Pass", 3000, min_tier="silver")
    gold_only = item(tenant, "Private Dinner", 9000, min_tier="gold")
    item(tenant, "Retired", 10, is_active=False)

    listed = member_client.get(ITEMS).json()["results"]

    assert [(row["name"], row["pointCost"], row["memberPointCost"]) for row in listed] == [
        ("Tote Bag", 1000, 900),
        ("Lounge Pass", 3000, 2700),
    ]
    # an item above the member's tier is not found, exactly like one that does not exist
    assert_error(member_client.get(f"{ITEMS}/{gold_only.pk}"), 404, attr="itemId")
    # and neither are the tenant's own switches
    assert_error(member_client.get(ITEMS, {"includeInactive": "true"}), 400, attr="includeInactive")


def test_a_member_without_a_tier_sees_only_ungated_items(tenant, member, member_client):
    tier_ladder(tenant)
    put_in_tier(member, None)
    item(tenant, "Tote Bag", 1000)
    item(tenant, "Lounge Pass", 3000, min_tier="bronze")

    assert names(member_client.get(ITEMS)) == ["Tote Bag"]


def test_affordable_compares_the_balance_with_the_discounted_price(tenant, member, member_client, api_client):
    ladder = tier_ladder(tenant)
    put_in_tier(member, ladder["gold"])  # 25% off
    reward_services.points_adjust(tenant=tenant, member=member, points=750, reason="seed", actor="test")
    item(tenant, "Exactly", 1000)  # costs the member 750
    item(tenant, "One over", 1002)  # ceil(751.5) = 752
    item(tenant, "Cheap", 10)

    assert names(member_client.get(ITEMS, {"affordable": "true"})) == ["Cheap", "Exactly"]
    assert names(member_client.get(ITEMS, {"affordable": "false"})) == ["One over"]
    # the tenant's backend asks the same question for a member it names
    as_member = api_client.get(ITEMS, {"affordable": "true", "memberRef": member.external_ref})
    assert names(as_member) == ["Cheap", "Exactly"]
    assert as_member.json()["results"][1]["memberPointCost"] == 750
    assert_error(api_client.get(ITEMS, {"affordable": "true", "memberRef": "nobody"}), 404, attr="memberRef")


def test_members_cannot_change_the_catalog(tenant, member_client):
    existing = item(tenant, "Tote Bag", 1000)

    assert_error(member_client.post(ITEMS, {"name": "Mine", "pointCost": 1}, format="json"), 403)
    assert_error(member_client.patch(f"{ITEMS}/{existing.pk}", {"pointCost": 1, "version": 1}, format="json"), 403)
    assert_error(member_client.delete(f"{ITEMS}/{existing.pk}"), 403)
    assert Item.objects.get(pk=existing.pk).point_cost == 1000


def test_an_edit_on_a_stale_version_is_a_409_and_changes_nothing(api_client, tenant):
    existing = item(tenant, "Tote Bag", 1000)
    url = f"{ITEMS}/{existing.pk}"
    first = api_client.patch(url, {"pointCost": 1200, "version": 1}, format="json")
    assert first.status_code == 200, first.json()
    assert (first.json()["pointCost"], first.json()["version"], first["ETag"]) == (1200, 2, '"2"')

    # a second operator, still looking at version 1, replaces the item
    stale = api_client.put(url, {"name": "Canvas Tote", "pointCost": 900, "version": 1}, format="json")

    assert_error(stale, 409, code="stale_version", attr="version")
    current = Item.objects.get(pk=existing.pk)
    assert (current.name, current.point_cost, current.version) == ("Tote Bag", 1200, 2)


def test_if_match_carries_the_version_and_an_edit_needs_one(api_client, tenant):
    existing = item(tenant, "Tote Bag", 1000)
    url = f"{ITEMS}/{existing.pk}"

    assert_error(api_client.patch(url, {"pointCost": 5}, format="json"), 400, attr="version")
    assert_error(api_client.patch(url, {"pointCost": 5}, format="json", HTTP_IF_MATCH='"7"'), 409, attr="version")
    updated = api_client.patch(url, {"pointCost": 5}, format="json", HTTP_IF_MATCH='"1"')

    assert updated.status_code == 200, updated.json()
    assert Item.objects.get(pk=existing.pk).point_cost == 5


def test_a_bad_edit_changes_nothing_even_on_the_current_version(api_client, tenant, shelves):
    existing = item(tenant, "Tote Bag", 1000, category="audio")

    response = api_client.patch(f"{ITEMS}/{existing.pk}", {"category": "nope", "version": 1}, format="json")

    assert_error(response, 400, attr="category")
    current = Item.objects.get(pk=existing.pk)
    assert (current.category.code, current.version) == ("audio", 1)


def test_put_replaces_and_stock_is_not_edited_there(api_client, tenant):
    existing = item(tenant, "Tote Bag", 1000, stock_quantity=4, is_in_offer_pool=True, description="Canvas")

    response = api_client.put(
        f"{ITEMS}/{existing.pk}",
        {"name": "Tote", "pointCost": 800, "version": 1, "stockQuantity": 99},
        format="json",
    )

    assert response.status_code == 200, response.json()
    current = Item.objects.get(pk=existing.pk)
    assert (current.name, current.point_cost, current.stock_quantity, current.version) == ("Tote", 800, 4, 2)


def test_delete_deactivates_and_members_stop_seeing_it(api_client, member_client, tenant):
    existing = item(tenant, "Tote Bag", 1000)

    assert api_client.delete(f"{ITEMS}/{existing.pk}").status_code == 204

    assert Item.objects.get(pk=existing.pk).is_active is False
    assert names(member_client.get(ITEMS)) == []
    assert_error(member_client.get(f"{ITEMS}/{existing.pk}"), 404)
    assert api_client.get(f"{ITEMS}/{existing.pk}").json()["isActive"] is False


def test_unknown_and_malformed_item_ids_are_404(api_client):
    assert_error(api_client.get(f"{ITEMS}/not-a-uuid"), 404, attr="itemId")
    assert_error(api_client.get(f"{ITEMS}/00000000-0000-0000-0000-000000000000"), 404, attr="itemId")


def test_an_uploaded_image_is_served_at_its_image_url(api_client, tenant, settings, tmp_path, client):
    settings.MEDIA_ROOT = tmp_path
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "teal").save(buffer, format="PNG")
    existing = item(tenant, "Tote Bag", 1000)
    existing.image = SimpleUploadedFile("tote.png", buffer.getvalue(), content_type="image/png")
    existing.save(update_fields=["image"])

    url = api_client.get(f"{ITEMS}/{existing.pk}").json()["imageUrl"]

    assert url.startswith("http://testserver/media/catalog/items/")
    served = client.get(url.removeprefix("http://testserver"))
    assert served.status_code == 200
    assert b"".join(served.streaming_content) == buffer.getvalue()


def test_the_item_list_costs_the_same_queries_whatever_the_page_size(tenant, member, member_client, shelves):
    ladder = tier_ladder(tenant)
    put_in_tier(member, ladder["silver"])
    partner = Partner.objects.create(tenant=tenant, code="acme", name="Acme")
    for n in range(60):
        item(tenant, f"Item {n:02d}", 100 + n, category="audio" if n % 2 else "travel", partner=partner)

    def queries(page_size: int) -> int:
        with CaptureQueriesContext(connection) as captured:
            response = member_client.get(ITEMS, {"pageSize": page_size})
        assert len(response.json()["results"]) == page_size
        return len(captured)

    assert queries(5) == queries(50)


def test_categories_list_and_change(api_client, member_client, shelves):
    listed = api_client.get("/api/v1/catalog/categories").json()["results"]
    assert [(c["code"], c["parent"]) for c in listed] == [
        ("audio", "electronics"),
        ("electronics", None),
        ("travel", None),
    ]

    changed = api_client.patch("/api/v1/catalog/categories/travel", {"isActive": False}, format="json")

    assert changed.status_code == 200, changed.json()
    assert [c["code"] for c in member_client.get("/api/v1/catalog/categories").json()["results"]] == [
        "audio",
        "electronics",
    ]
    assert_error(member_client.get("/api/v1/catalog/categories/travel"), 404)
    assert_error(
        api_client.patch("/api/v1/catalog/categories/audio", {"parent": "audio"}, format="json"), 400, attr="parent"
    )
    assert_error(
        api_client.post("/api/v1/catalog/categories", {"code": "audio", "name": "Again"}, format="json"),
        409,
        attr="code",
    )


def test_another_tenants_category_or_partner_cannot_be_attached(tenant, other_tenant):
    theirs = services.category_create(tenant=other_tenant, code="theirs", name="Theirs")
    partner = Partner.objects.create(tenant=other_tenant, code="acme", name="Acme")

    with pytest.raises(services.InvalidReference):
        services.item_create(tenant=tenant, name="X", point_cost=1, category=theirs)
    with pytest.raises(services.InvalidReference):
        services.item_create(tenant=tenant, name="X", point_cost=1, partner=partner)
    assert not Item.objects.filter(tenant=tenant).exists()


def test_options_on_the_item_list_describes_it_without_listing(api_client):
    response = api_client.options("/api/v1/catalog/items")

    assert response.status_code == 200, response.content
