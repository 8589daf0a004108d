"""The demo's fulfilment partners: loaded once, safe to load again, and every demo item has
a partner to fulfil it."""

import pytest
from django.core.management import call_command

from catalog.models import Item
from redemptions.models import PartnerConfig
from redemptions.services import partner_for

pytestmark = pytest.mark.django_db


def test_every_demo_item_can_be_fulfilled(capsys):
    for _ in range(2):
        call_command("seed_demo", members=2)
        call_command("seed_demo_catalog")
        call_command("seed_demo_redemptions")

    assert PartnerConfig.objects.filter(tenant__slug="demo").count() == 3
    items = list(Item.objects.filter(tenant__slug="demo", is_active=True))
    assert items
    for item in items:
        config = partner_for(tenant=item.tenant, item=item)
        assert item.kind in config.enabled_kinds
    assert "Demo fulfilment partners ready: 3 (0 new)" in capsys.readouterr().out
