"""The catalog back office: tenant scoping, item images (upload, size and format checks,
preview), optimistic locking of edits, stock movements, and CSV import and export."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from catalog import services
from catalog.models import Category, Item, Partner, StockMovement
from tenants.models import Operator
from tests.catalog.helpers import tier_ladder
from tests.factories import OperatorFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


def login_operator(client, tenant, role=Operator.Role.OWNER) -> Operator:
    operator = OperatorFactory(tenant=tenant, role=role)
    client.force_login(operator.user)
    return operator


def make_item(tenant, name="Travel Mug", sku="MUG-1", point_cost=500, **fields) -> Item:
    return services.item_create(tenant=tenant, name=name, sku=sku, point_cost=point_cost, **fields)


def png(name="mug.png", size=(40, 30), color=(200, 40, 90)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return SimpleUploadedFile(name, buffer.getvalue(), content_type="image/png")


def item_data(**overrides) -> dict:
    """The item form as a browser posts it (unchecked boxes are absent)."""
    data = {
        "sku": "HP-1",
        "name": "Wireless Headphones",
        "names": json.dumps({"ar": "سماعات لاسلكية"}),
        "description": "Over-ear, noise cancelling.",
        "kind": "MERCHANDISE",
        "category": "",
        "partner": "",
        "point_cost": "12000",
        "cash_value": "149.99",
        "is_active": "on",
        "min_tier": "",
        "image_url": "",
        "stock_quantity": "",
        "_save": "Save",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def change_data(item: Item, loaded_version: int, **overrides) -> dict:
    data = item_data(
        sku=item.sku,
        name=item.name,
        names=json.dumps(item.names),
        description=item.description,
        kind=item.kind,
        category=item.category_id or "",
        partner=item.partner_id or "",
        point_cost=str(item.point_cost),
        cash_value=str(item.cash_value),
        is_active="on" if item.is_active else None,
        min_tier=item.min_tier,
        image_url=item.image_url,
        stock_quantity=None,
        loaded_version=str(loaded_version),
    )
    if item.is_in_offer_pool:
        data["is_in_offer_pool"] = "on"
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def form_errors(response) -> dict:
    assert response.status_code == 200, response.status_code
    return response.context["adminform"].form.errors


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# Scoping ---------------------------------------------------------------------------------


def test_an_operator_sees_only_their_tenants_items_categories_and_movements(client, tenant, other_tenant):
    mine = make_item(tenant, "Travel Mug", stock_quantity=5)
    theirs = make_item(other_tenant, "Secret Lamp", sku="LAMP-1", stock_quantity=9)
    my_category = services.category_create(tenant=tenant, code="kitchen", name="Kitchen")
    their_category = services.category_create(tenant=other_tenant, code="lighting", name="Hidden Lighting")
    Partner.objects.create(tenant=other_tenant, code="acme", name="Hidden Partner")
    login_operator(client, tenant, Operator.Role.VIEWER)

    items = client.get(url("catalog_item_changelist"))
    categories = client.get(url("catalog_category_changelist"))
    movements = client.get(url("catalog_stockmovement_changelist"))
    partners = client.get(url("catalog_partner_changelist"))

    assert [i.pk for i in items.context["cl"].result_list] == [mine.pk]
    assert "Secret Lamp" not in items.content.decode()
    assert [c.pk for c in categories.context["cl"].result_list] == [my_category.pk]
    assert "Hidden Lighting" not in categories.content.decode()
    assert [m.item_id for m in movements.context["cl"].result_list] == [mine.pk]
    assert list(partners.context["cl"].result_list) == []
    assert client.get(url("catalog_item_change", theirs.pk)).status_code == 404
    assert client.get(url("catalog_category_change", their_category.pk)).status_code == 404
    their_movement = StockMovement.objects.get(item=theirs)
    assert client.get(url("catalog_stockmovement_change", their_movement.pk)).status_code == 404


def test_another_tenants_item_cannot_be_edited_or_restocked_by_id(client, tenant, other_tenant):
    theirs = make_item(other_tenant, "Secret Lamp", sku="LAMP-1", stock_quantity=9)
    login_operator(client, tenant, Operator.Role.OWNER)

    edited = client.post(url("catalog_item_change", theirs.pk), change_data(theirs, 1, name="Mine now"))
    restocked = client.post(url("catalog_item_stock", theirs.pk), {"kind": "RESTOCK", "quantity": "5"})

    assert edited.status_code == 404 and restocked.status_code == 404
    theirs.refresh_from_db()
    assert (theirs.name, theirs.stock_quantity, theirs.version) == ("Secret Lamp", 9, 1)


def test_the_list_shows_unlimited_stock_and_filters_in_stock(client, tenant):
    make_item(tenant, "Gift Card", sku="GC-1")
    make_item(tenant, "Sold Out Mug", sku="MUG-0", stock_quantity=0)
    make_item(tenant, "Mug", sku="MUG-2", stock_quantity=3)
    login_operator(client, tenant, Operator.Role.VIEWER)

    listed = client.get(url("catalog_item_changelist"))
    in_stock = client.get(url("catalog_item_changelist"), {"in_stock": "yes"})
    out = client.get(url("catalog_item_changelist"), {"in_stock": "no"})

    assert '<td class="field-stock">unlimited</td>' in listed.content.decode()
    assert sorted(i.sku for i in in_stock.context["cl"].result_list) == ["GC-1", "MUG-2"]
    assert [i.sku for i in out.context["cl"].result_list] == ["MUG-0"]


# Creating items, images -------------------------------------------------------------------


def test_creating_an_item_with_a_png_stores_it_and_the_change_page_previews_it(client, tenant, _media):
    category = services.category_create(tenant=tenant, code="audio", name="Audio")
    login_operator(client, tenant, Operator.Role.MANAGER)

    response = client.post(
        url("catalog_item_add"), item_data(category=category.pk, stock_quantity="25", image=png("headphones.png"))
    )

    assert response.status_code == 302, form_errors(response)
    item = Item.objects.get(tenant=tenant, sku="HP-1")
    assert (item.name, item.category_id, item.point_cost, item.cash_value) == (
        "Wireless Headphones",
        category.pk,
        12000,
        Decimal("149.99"),
    )
    assert item.names == {"ar": "سماعات لاسلكية"}
    assert item.stock_quantity == 25 and item.version == 1
    (opening,) = StockMovement.objects.filter(item=item)
    assert (opening.kind, opening.quantity, opening.stock_after) == ("INITIAL", 25, 25)
    assert item.image.name.startswith("catalog/items/") and default_storage.exists(item.image.name)
    assert [p.name for p in stored_files(_media)] == [item.image.name.rsplit("/", 1)[-1]]
    with default_storage.open(item.image.name) as stored, Image.open(stored) as image:
        assert image.size == (40, 30)

    page = client.get(url("catalog_item_change", item.pk)).content.decode()
    listed = client.get(url("catalog_item_changelist")).content.decode()

    assert f'<img src="{item.image.url}" alt="" class="catalog-image-preview"' in page
    assert f'<img src="{item.image.url}"' in listed


def test_a_file_that_is_not_an_image_is_refused_and_nothing_is_written(client, tenant, _media):
    login_operator(client, tenant, Operator.Role.OWNER)
    fake = SimpleUploadedFile("photo.png", b"this is not a picture at all", content_type="image/png")

    response = client.post(url("catalog_item_add"), item_data(image=fake))

    errors = form_errors(response)
    assert list(errors) == ["image"]
    assert "valid image" in " ".join(errors["image"])
    assert not Item.objects.exists()
    assert stored_files(_media) == []


def test_an_image_over_the_size_limit_is_refused(client, tenant, settings, _media):
    settings.CATALOG_IMAGE_MAX_BYTES = 200
    login_operator(client, tenant, Operator.Role.OWNER)
    noisy = Image.effect_noise((200, 200), 80).convert("RGB")  # noise does not compress
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    big = SimpleUploadedFile("big.png", buffer.getvalue(), content_type="image/png")

    response = client.post(url("catalog_item_add"), item_data(image=big))

    assert "the most is 200" in " ".join(form_errors(response)["image"])
    assert not Item.objects.exists() and stored_files(_media) == []


def test_min_tier_is_a_choice_of_the_tenants_tiers_and_is_saved(client, tenant, other_tenant):
    tier_ladder(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    page = client.get(url("catalog_item_add"))
    field = page.context["adminform"].form.fields["min_tier"]
    response = client.post(url("catalog_item_add"), item_data(min_tier="gold"))

    assert [value for value, _ in field.choices] == ["", "bronze", "silver", "gold"]
    assert response.status_code == 302, form_errors(response)
    assert Item.objects.get(tenant=tenant, sku="HP-1").min_tier == "gold"
    refused = client.post(url("catalog_item_add"), item_data(sku="HP-2", min_tier="platinum"))
    assert "min_tier" in form_errors(refused)
    assert not Item.objects.filter(sku="HP-2").exists()


def test_a_taken_sku_is_an_error_on_the_field(client, tenant, other_tenant):
    make_item(tenant, sku="HP-1")
    make_item(other_tenant, sku="HP-2")
    login_operator(client, tenant, Operator.Role.OWNER)

    taken = client.post(url("catalog_item_add"), item_data(sku="HP-1"))
    elsewhere = client.post(url("catalog_item_add"), item_data(sku="HP-2"))

    assert "sku" in form_errors(taken)
    assert elsewhere.status_code == 302
    assert Item.objects.filter(tenant=tenant).count() == 2


# Editing: optimistic locking --------------------------------------------------------------


def test_an_edit_saves_through_the_service_and_moves_the_version(client, tenant, _media):
    item = make_item(tenant, stock_quantity=4)
    login_operator(client, tenant, Operator.Role.OWNER)

    page = client.get(url("catalog_item_change", item.pk))
    assert page.context["adminform"].form["loaded_version"].value() == 1
    response = client.post(
        url("catalog_item_change", item.pk),
        change_data(item, 1, name="Travel Mug XL", point_cost="650", image=png("mug.png")),
    )

    assert response.status_code == 302, form_errors(response)
    item.refresh_from_db()
    assert (item.name, item.point_cost, item.version, item.stock_quantity) == ("Travel Mug XL", 650, 2, 4)
    assert item.image and default_storage.exists(item.image.name)


def test_a_stale_edit_shows_an_error_and_changes_nothing(client, tenant, _media):
    item = make_item(tenant, stock_quantity=4)
    login_operator(client, tenant, Operator.Role.OWNER)
    page = client.get(url("catalog_item_change", item.pk))
    loaded = page.context["adminform"].form["loaded_version"].value()
    # Someone else saves the item meanwhile.
    services.item_update(item=item, expected_version=1, fields={"point_cost": 250})

    response = client.post(
        url("catalog_item_change", item.pk),
        change_data(item, loaded, name="My rename", point_cost="999", image=png("stale.png")),
    )

    form = response.context["adminform"].form
    assert response.status_code == 200
    assert "Someone else saved this item" in " ".join(form.non_field_errors())
    assert "Someone else saved this item" in response.content.decode()
    item.refresh_from_db()
    assert (item.name, item.point_cost, item.version) == ("Travel Mug", 250, 2)
    assert not item.image
    assert stored_files(_media) == []


def test_a_viewer_sees_the_item_read_only(client, tenant):
    item = make_item(tenant)
    login_operator(client, tenant, Operator.Role.VIEWER)

    page = client.get(url("catalog_item_change", item.pk))
    posted = client.post(url("catalog_item_change", item.pk), change_data(item, 1, name="Nope"))

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert "Record stock movement" not in page.content.decode()
    assert posted.status_code == 403
    item.refresh_from_db()
    assert item.name == "Travel Mug"


# Stock -----------------------------------------------------------------------------------


def test_recording_a_restock_moves_the_stock_and_writes_a_movement(client, tenant):
    item = make_item(tenant, stock_quantity=5)
    operator = login_operator(client, tenant, Operator.Role.MANAGER)
    assert "Record stock movement" in client.get(url("catalog_item_change", item.pk)).content.decode()

    response = client.post(
        url("catalog_item_stock", item.pk), {"kind": "RESTOCK", "quantity": "10", "reason": "Delivery 42"}
    )

    assert response.status_code == 302 and response.url == url("catalog_item_change", item.pk)
    item.refresh_from_db()
    assert (item.stock_quantity, item.version) == (15, 1)
    movement = StockMovement.objects.get(item=item, kind="RESTOCK")
    assert (movement.quantity, movement.stock_after, movement.reason) == (10, 15, "Delivery 42")
    assert movement.actor == f"operator:{operator.user.username}"
    page = client.get(url("catalog_item_change", item.pk)).content.decode()
    assert page.count('class="stock-movement-row"') == 2 and "Delivery 42" in page


def test_an_adjustment_below_zero_shows_an_error_and_changes_nothing(client, tenant):
    item = make_item(tenant, stock_quantity=3)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("catalog_item_stock", item.pk), {"kind": "ADJUST", "quantity": "-5", "reason": "Count"})

    assert response.status_code == 200
    assert "Not enough stock" in " ".join(response.context["form"].errors["quantity"])
    item.refresh_from_db()
    assert item.stock_quantity == 3
    assert not StockMovement.objects.filter(item=item, kind="ADJUST").exists()


def test_a_restock_of_nothing_is_refused(client, tenant):
    item = make_item(tenant, stock_quantity=3)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("catalog_item_stock", item.pk), {"kind": "RESTOCK", "quantity": "0"})

    assert "at least 1" in " ".join(response.context["form"].errors["quantity"])
    item.refresh_from_db()
    assert item.stock_quantity == 3


def test_an_unlimited_item_starts_being_counted_from_the_stock_page(client, tenant):
    item = make_item(tenant)
    login_operator(client, tenant, Operator.Role.OWNER)

    response = client.post(url("catalog_item_stock", item.pk), {"quantity": "7"})

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.stock_quantity == 7
    assert StockMovement.objects.get(item=item).kind == "INITIAL"


def test_a_viewer_cannot_record_stock(client, tenant):
    item = make_item(tenant, stock_quantity=3)
    login_operator(client, tenant, Operator.Role.VIEWER)

    assert client.post(url("catalog_item_stock", item.pk), {"kind": "RESTOCK", "quantity": "5"}).status_code == 403
    item.refresh_from_db()
    assert item.stock_quantity == 3


# Categories ------------------------------------------------------------------------------


def test_categories_are_created_and_nested_through_the_service(client, tenant, other_tenant):
    services.category_create(tenant=other_tenant, code="electronics", name="Not yours")
    parent = services.category_create(tenant=tenant, code="electronics", name="Electronics")
    login_operator(client, tenant, Operator.Role.OWNER)
    data = {"code": "audio", "name": "Audio", "names": '{"ar": "صوتيات"}', "parent": parent.pk, "sort_order": "2"}

    created = client.post(url("catalog_category_add"), {**data, "is_active": "on"})
    taken = client.post(url("catalog_category_add"), {**data, "is_active": "on"})

    assert created.status_code == 302, form_errors(created)
    audio = Category.objects.get(tenant=tenant, code="audio")
    assert (audio.parent_id, audio.names, audio.sort_order) == (parent.pk, {"ar": "صوتيات"}, 2)
    assert "code" in form_errors(taken)
    cycle = client.post(
        url("catalog_category_change", parent.pk),
        {"name": "Electronics", "names": "{}", "parent": audio.pk, "sort_order": "0", "is_active": "on"},
    )
    assert "parent" in form_errors(cycle)
    parent.refresh_from_db()
    assert parent.parent_id is None


# CSV export and import -------------------------------------------------------------------


def export_csv(client) -> list[dict]:
    page = client.get(url("catalog_item_export"))
    assert page.status_code == 200
    form = page.context["form"]
    data = {"format": "0", "resource": "0"}
    data.update({name: "on" for name in form.fields if name.startswith("itemresource_")})
    response = client.post(url("catalog_item_export"), data)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


def import_csv(client, rows: list[dict], confirm: bool = True):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    upload = SimpleUploadedFile("items.csv", buffer.getvalue().encode(), content_type="text/csv")
    preview = client.post(url("catalog_item_import"), {"format": "0", "resource": "0", "import_file": upload})
    assert preview.status_code == 200
    confirm_form = preview.context.get("confirm_form")
    if not confirm or confirm_form is None:
        return preview
    return client.post(url("catalog_item_process_import"), dict(confirm_form.initial))


def test_the_csv_export_holds_only_the_tenants_items(client, tenant, other_tenant):
    category = services.category_create(tenant=tenant, code="kitchen", name="Kitchen")
    make_item(tenant, "Travel Mug", sku="MUG-1", stock_quantity=5, category="kitchen", names={"he": "ספל"})
    make_item(tenant, "Gift Card", sku="GC-1", kind="GIFT_CARD")
    make_item(other_tenant, "Their Mug", sku="MUG-1")
    make_item(other_tenant, "Their Lamp", sku="LAMP-1")
    login_operator(client, tenant, Operator.Role.VIEWER)

    rows = export_csv(client)

    assert sorted(row["sku"] for row in rows) == ["GC-1", "MUG-1"]
    mug = next(row for row in rows if row["sku"] == "MUG-1")
    assert (mug["name"], mug["category"], mug["stock_quantity"]) == ("Travel Mug", category.code, "5")
    assert mug["names"] == '{"he": "ספל"}'
    assert "Their" not in json.dumps(rows)


def test_the_csv_import_creates_and_updates_by_sku_in_the_operators_tenant_only(client, tenant, other_tenant):
    services.category_create(tenant=tenant, code="bags", name="Bags")
    Partner.objects.create(tenant=tenant, code="acme", name="Acme Fulfilment")
    mine = make_item(tenant, "Travel Mug", sku="MUG-1", stock_quantity=5)
    theirs = make_item(other_tenant, "Their Mug", sku="MUG-1", stock_quantity=9)
    operator = login_operator(client, tenant, Operator.Role.OWNER)
    base = {"names": "", "description": "", "kind": "MERCHANDISE", "category": "", "partner": "", "cash_value": "5"}
    rows = [
        {**base, "sku": "MUG-1", "name": "Travel Mug v2", "point_cost": "650", "stock_quantity": "999"},
        {
            **base,
            "sku": "TOTE-1",
            "name": "Canvas Tote",
            "names": '{"ar": "حقيبة"}',
            "category": "bags",
            "partner": "acme",
            "point_cost": "300",
            "stock_quantity": "12",
        },
    ]

    page = client.get(url("catalog_item_import")).content.decode()
    assert "never changes the stock of an item that already exists" in page
    preview = import_csv(client, rows, confirm=False)
    assert preview.context["confirm_form"] is not None
    assert "never changes the stock of an item that already exists" in preview.content.decode()
    assert not Item.objects.filter(sku="TOTE-1").exists()  # the preview writes nothing

    response = import_csv(client, rows)

    assert response.status_code == 302
    mine.refresh_from_db()
    assert (mine.name, mine.point_cost, mine.version) == ("Travel Mug v2", 650, 2)
    assert mine.stock_quantity == 5  # never overwritten by an import
    assert list(StockMovement.objects.filter(item=mine).values_list("kind", flat=True)) == ["INITIAL"]
    tote = Item.objects.get(sku="TOTE-1")
    assert tote.tenant_id == tenant.pk
    assert (tote.category.code, tote.partner.code, tote.names) == ("bags", "acme", {"ar": "حقيبة"})
    assert tote.stock_quantity == 12
    opening = StockMovement.objects.get(item=tote)
    assert (opening.kind, opening.quantity, opening.actor) == ("INITIAL", 12, f"operator:{operator.user.username}")
    theirs.refresh_from_db()
    assert (theirs.name, theirs.point_cost, theirs.stock_quantity, theirs.version) == ("Their Mug", 500, 9, 1)
    assert Item.objects.filter(tenant=other_tenant).count() == 1


def test_an_import_naming_another_tenants_category_or_no_sku_shows_row_errors_and_writes_nothing(
    client, tenant, other_tenant
):
    services.category_create(tenant=other_tenant, code="secret", name="Secret")
    make_item(tenant, "Travel Mug", sku="MUG-1")
    login_operator(client, tenant, Operator.Role.OWNER)
    base = {"name": "Thing", "kind": "MERCHANDISE", "category": "", "point_cost": "100", "stock_quantity": ""}
    rows = [
        {**base, "sku": "MUG-1", "name": "Renamed"},
        {**base, "sku": "NEW-1", "category": "secret"},
        {**base, "sku": ""},
        {**base, "sku": "NEW-2", "point_cost": "0"},
    ]

    response = import_csv(client, rows)

    assert response.status_code == 200 and response.context.get("confirm_form") is None
    result = response.context["result"]
    assert [row.number for row in result.invalid_rows] == [2, 3, 4]
    html = response.content.decode()
    assert "No category with code &#x27;secret&#x27; in your catalog." in html
    assert "Every row needs a sku" in html
    assert Item.objects.get(tenant=tenant, sku="MUG-1").name == "Travel Mug"
    assert not Item.objects.filter(sku__startswith="NEW").exists()


def test_platform_staff_neither_import_nor_export(client, platform_admin):
    client.force_login(platform_admin)

    assert client.get(url("catalog_item_import")).status_code == 403
    assert client.get(url("catalog_item_export")).status_code == 403
