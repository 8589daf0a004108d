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


@pytest.mark.django_db(transaction=True)
def test_make_runs_seeds_work_outside_a_transaction_as_make_run_calls_them(capsys):
    """Tests usually run inside a transaction, which would hide a lock taken outside one
    (`select_for_update` refuses to run in autocommit on PostgreSQL)."""
    call_command("seed_demo", members=4)
    call_command("seed_demo_tiers")
    call_command("seed_demo_campaigns")
    call_command("seed_demo_catalog")
    call_command("seed_demo_redemptions")
    call_command("seed_demo_insights", members=2)

    assert TierAssignment.objects.filter(tenant__slug="demo").count() == 4
    out = capsys.readouterr().out
    assert "Demo tiers ready" in out and "Demo spending history" in out
