from io import StringIO

import pytest
from django.core.management import call_command

from insights.models import ALL_CATEGORIES, SpendingRollup
from insights.rollups import rollups_compute
from rewards.models import InboundEvent
from tenants.models import Tenant
from tenants.services import api_key_create
from tests.conftest import client_for_key

pytestmark = pytest.mark.django_db


def test_demo_history_fills_the_rollups_and_a_second_run_changes_nothing():
    call_command("seed_demo", members=3, stdout=StringIO())
    out = StringIO()
    call_command("seed_demo_insights", members=2, stdout=out)
    tenant = Tenant.objects.get(slug="demo")
    events = InboundEvent.objects.filter(tenant=tenant, event_id__startswith="demo-insights:")
    assert "members 2/2" in out.getvalue()
    assert f"Demo spending history: {events.count()} events for 2 members" in out.getvalue()
    assert events.filter(type="transaction.created").count() >= 2 * 6 * 2
    rows = SpendingRollup.objects.filter(tenant=tenant)
    assert len({r.day.replace(day=1) for r in rows}) >= 5  # months of history
    assert len(set(rows.exclude(category=ALL_CATEGORIES).values_list("category", flat=True))) >= 3
    assert len(rollups_compute(tenant=tenant)) == rows.count()

    again = StringIO()
    call_command("seed_demo_insights", members=2, stdout=again)
    assert "already there" in again.getvalue()
    assert events.count() == InboundEvent.objects.filter(tenant=tenant, event_id__startswith="demo-insights:").count()

    ref = rows.first().member.external_ref
    key = api_key_create(tenant=tenant, name="test").raw
    body = client_for_key(key).get(f"/api/v1/members/{ref}/insights").json()
    assert body["totals"]["transactionCount"] > 0 and body["topCategories"]
