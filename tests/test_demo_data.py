"""The demo data `make run` loads: created once, safe to load again."""

import pytest
from django.core.management import call_command

from campaigns.models import Campaign, Cohort
from tiers.models import Tier, TierAssignment

pytestmark = pytest.mark.django_db


def test_the_demo_loads_twice_without_duplicates(capsys):
    for _ in range(2):
        call_command("seed_demo", members=12)
        call_command("seed_demo_tiers")
        call_command("seed_demo_campaigns")

    assert Tier.objects.filter(tenant__slug="demo").count() == 3
    assert TierAssignment.objects.filter(tenant__slug="demo", tier__tier_id="bronze").count() == 12
    running = Campaign.objects.filter(tenant__slug="demo", status="ACTIVE")
    assert running.count() == 3
    assert Cohort.objects.get(tenant__slug="demo", code="regulars").member_count == 6
    assert "members placed 12/12" in capsys.readouterr().out
