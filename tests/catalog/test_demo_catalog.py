"""The demo catalog `make run` loads: every kind of item, each with an image in storage,
tier-exclusive items on the demo's tiers; created once, safe to load again."""

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from catalog.models import Category, Item, Partner, StockMovement

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def catalog_state() -> dict:
    items = Item.objects.filter(tenant__slug="demo")
    return {
        "items": sorted(items.values_list("sku", "version", "image", "stock_quantity")),
        "categories": Category.objects.filter(tenant__slug="demo").count(),
        "partners": Partner.objects.filter(tenant__slug="demo").count(),
        "movements": StockMovement.objects.filter(tenant__slug="demo").count(),
    }


def test_the_demo_catalog_has_every_kind_with_images_and_loads_twice_without_changes(capsys, _media):
    call_command("seed_demo", members=2)
    call_command("seed_demo_tiers")
    capsys.readouterr()

    call_command("seed_demo_catalog")

    items = Item.objects.filter(tenant__slug="demo").select_related("category__parent")
    assert {item.kind for item in items} == set(Item.Kind.values)
    assert 35 <= items.count() <= 45
    headphones = items.get(name="Wireless Noise-Cancelling Headphones")
    assert headphones.category.code == "audio" and headphones.category.parent.code == "electronics"
    assert headphones.names["ar"] and headphones.names["he"]
    for item in items:
        assert item.image.name.startswith("catalog/items/"), item.sku
        assert default_storage.exists(item.image.name), item.sku
        with default_storage.open(item.image.name) as stored, Image.open(stored) as image:
            assert (image.format, image.size) == ("PNG", (400, 300))
        assert item.point_cost > 0 and item.cash_value > 0
    assert items.filter(stock_quantity__isnull=True).exists() and items.filter(stock_quantity__gt=0).exists()
    assert items.filter(is_in_offer_pool=True).exists()
    assert set(items.exclude(min_tier="").values_list("min_tier", flat=True)) == {"silver", "gold"}
    assert Category.objects.filter(tenant__slug="demo").count() >= 8
    assert Category.objects.filter(tenant__slug="demo", parent__isnull=False).count() >= 2
    assert Partner.objects.filter(tenant__slug="demo").count() == 3
    # Counted stock starts with its opening movement.
    limited = items.filter(stock_quantity__gt=0)
    assert StockMovement.objects.filter(item__in=limited, kind="INITIAL").count() == limited.count()
    out = capsys.readouterr().out
    assert "catalog: Audio" in out and "Demo catalog ready" in out
    before = catalog_state()
    files_before = sorted(p for p in _media.rglob("*") if p.is_file())

    call_command("seed_demo_catalog")

    assert catalog_state() == before
    assert sorted(p for p in _media.rglob("*") if p.is_file()) == files_before
    assert "(0 new, 0 images drawn)" in capsys.readouterr().out


def test_a_lost_image_is_drawn_again(_media):
    call_command("seed_demo", members=1)
    call_command("seed_demo_catalog")
    item = Item.objects.get(tenant__slug="demo", sku="AUD-001")
    default_storage.delete(item.image.name)

    call_command("seed_demo_catalog")

    item.refresh_from_db()
    assert default_storage.exists(item.image.name)
    # Without the demo tiers, nothing is tier-exclusive.
    assert not Item.objects.filter(tenant__slug="demo").exclude(min_tier="").exists()
