"""Tier changes raced over real PostgreSQL connections."""

import pytest

from rewards.models import OutboxEvent
from tests.campaigns.helpers import ingest, purchase
from tests.factories import TenantFactory
from tests.rewards.test_earning_concurrency import run_in_threads
from tiers.models import Tier, TierAssignment, TierHistory

pytestmark = pytest.mark.django_db(transaction=True)


def test_200_concurrent_earnings_that_cross_a_boundary_announce_exactly_one_assignment():
    tenant = TenantFactory()
    Tier.objects.create(tenant=tenant, tier_id="base", names={"en": "Base"}, min_points=0)
    Tier.objects.create(tenant=tenant, tier_id="silver", names={"en": "Silver"}, min_points=1000)

    # 200 purchases of 10 points for one member: the 100th crosses 1,000, whichever it is.
    results = run_in_threads(200, lambda i: ingest(tenant, purchase(f"p-{i}", amount="10.00")).body, workers=16)

    assert sum(r["points"] for r in results) == 2000
    assigned = OutboxEvent.objects.filter(tenant=tenant, type="vip_tier.assigned")
    assert [e.data["tierId"] for e in assigned.order_by("created_at")] == ["base", "silver"]
    assert TierHistory.objects.filter(tenant=tenant, to_tier__tier_id="silver").count() == 1
    assert TierAssignment.objects.get(member__external_ref="m-1").tier.tier_id == "silver"
