"""Tier qualification through the earning engine: boundaries, upgrades at once, downgrades at
re-evaluation after the grace period, refunds and expiry, the tier in earnings and in the
member API, and one `vip_tier.assigned` per change."""

from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from rewards.expiry import member_points_expire
from rewards.models import OutboxEvent
from tests.campaigns.helpers import ingest, purchase, refund
from tests.factories import MemberFactory
from tiers.models import Tier, TierAssignment, TierHistory, TierPolicy
from tiers.qualification import tiers_reevaluate

pytestmark = pytest.mark.django_db


@pytest.fixture
def ladder(tenant):
    """Base (0), Silver (1,000), Gold (5,000 points, x1.5 and 20 bonus points a purchase)."""
    return {
        "base": Tier.objects.create(tenant=tenant, tier_id="base", names={"en": "Base"}, min_points=0),
        "silver": Tier.objects.create(tenant=tenant, tier_id="silver", names={"en": "Silver"}, min_points=1000),
        "gold": Tier.objects.create(
            tenant=tenant,
            tier_id="gold",
            names={"en": "Gold", "ar": "ذهبي"},
            min_points=5000,
            earn_multiplier=Decimal("1.5"),
            benefits={"bonus_points": 20},
            rank=2,
        ),
    }


def tier_of(tenant, ref: str) -> str | None:
    assignment = TierAssignment.objects.filter(member__tenant=tenant, member__external_ref=ref).first()
    return assignment.tier.tier_id if assignment and assignment.tier else None


def assigned_events(ref: str = "m-1") -> list[str]:
    return [
        e.data["tierId"]
        for e in OutboxEvent.objects.filter(type="vip_tier.assigned", member_ref=ref).order_by("created_at")
    ]


def test_a_new_member_starts_in_the_default_tier(tenant, ladder):
    ingest(tenant, {"type": "member.created", "eventId": "c-1", "memberRef": "m-1"})

    assert tier_of(tenant, "m-1") == "base"
    event = OutboxEvent.objects.get(type="vip_tier.assigned")
    assert set(event.data) >= {"eventId", "memberRef", "tierId", "assignedAt"}
    assert event.data["eventId"] == str(event.event_id) and event.data["tierId"] == "base"


def test_exactly_min_points_qualifies_and_one_less_does_not(tenant, ladder):
    ingest(tenant, purchase("p-1", amount="999.00"))
    assert tier_of(tenant, "m-1") == "base"

    ingest(tenant, purchase("p-2", amount="1.00"))  # 1,000 exactly
    assert tier_of(tenant, "m-1") == "silver"
    assert assigned_events() == ["base", "silver"]


def test_an_upgrade_can_skip_a_tier(tenant, ladder):
    ingest(tenant, purchase("p-1", amount="6000.00"))

    assert tier_of(tenant, "m-1") == "gold"
    assert list(TierHistory.objects.order_by("at", "pk").values_list("to_tier__tier_id", "reason")) == [
        ("base", "default"),
        ("gold", "upgrade"),
    ]


def test_the_tier_multiplier_and_bonus_apply_and_the_explanation_names_the_tier(tenant, ladder):
    ingest(tenant, purchase("p-1", amount="5000.00"))

    gold = ingest(tenant, purchase("p-2", amount="100.00")).body

    assert gold["points"] == 150 + 20
    assert gold["explanation"]["tier"] == "gold"
    assert Decimal(gold["explanation"]["tierFactor"]) == Decimal("1.5")
    assert gold["explanation"]["tierBonusPoints"] == 20


def test_a_refund_drops_qualifying_points_and_the_downgrade_waits_for_reevaluation_and_grace(tenant, ladder):
    TierPolicy.objects.create(tenant=tenant, downgrade_grace_days=30)
    ingest(tenant, purchase("p-1", amount="600.00"))
    ingest(tenant, purchase("p-2", amount="400.00"))
    assert tier_of(tenant, "m-1") == "silver"

    ingest(tenant, refund("r-1", "p-2", amount="1.00"))  # 999 qualifying points now
    assert tier_of(tenant, "m-1") == "silver"  # no downgrade outside re-evaluation
    now = timezone.now()

    tiers_reevaluate(now=now)
    assert tier_of(tenant, "m-1") == "silver"
    below_since = TierAssignment.objects.get(member__external_ref="m-1").below_since
    assert below_since is not None

    tiers_reevaluate(now=below_since + timedelta(days=30) - timedelta(seconds=1))
    assert tier_of(tenant, "m-1") == "silver"  # not before the grace period ends

    tiers_reevaluate(now=below_since + timedelta(days=30))
    assert tier_of(tenant, "m-1") == "base"
    assert assigned_events() == ["base", "silver", "base"]


def test_earning_back_above_the_line_during_grace_keeps_the_tier(tenant, ladder):
    TierPolicy.objects.create(tenant=tenant, downgrade_grace_days=10)
    ingest(tenant, purchase("p-1", amount="1000.00"))
    ingest(tenant, refund("r-1", "p-1", amount="5.00"))
    tiers_reevaluate(now=timezone.now())
    assert TierAssignment.objects.get(member__external_ref="m-1").below_since is not None

    ingest(tenant, purchase("p-2", amount="5.00"))
    tiers_reevaluate(now=timezone.now() + timedelta(days=11))

    assert tier_of(tenant, "m-1") == "silver"
    assert TierAssignment.objects.get(member__external_ref="m-1").below_since is None


def test_without_grace_the_next_reevaluation_downgrades(tenant, ladder):
    ingest(tenant, purchase("p-1", amount="1000.00"))
    ingest(tenant, refund("r-1", "p-1"))

    tiers_reevaluate(now=timezone.now())

    assert tier_of(tenant, "m-1") == "base"


def test_expired_points_stop_counting(tenant, ladder):
    tenant.expiry_policy, tenant.expiry_days = "DAYS", 30
    tenant.save(update_fields=["expiry_policy", "expiry_days"])
    ingest(tenant, purchase("p-1", amount="1000.00"))
    assert tier_of(tenant, "m-1") == "silver"
    member = MemberFactory._meta.model.objects.get(tenant=tenant, external_ref="m-1")

    expired = member_points_expire(member=member, now=timezone.now() + timedelta(days=31))
    tiers_reevaluate(now=timezone.now() + timedelta(days=31))

    assert expired == 1000
    assert tier_of(tenant, "m-1") == "base"


def test_a_rolling_window_forgets_old_points(tenant, ladder):
    TierPolicy.objects.create(tenant=tenant, qualification="ROLLING", window_months=3)
    ingest(tenant, purchase("p-1", amount="1000.00"))
    assert tier_of(tenant, "m-1") == "silver"

    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(days=120)):
        tiers_reevaluate(now=timezone.now())

    assert tier_of(tenant, "m-1") == "base"


def test_the_member_api_shows_the_tier_and_progress(tenant, ladder, api_client):
    ingest(tenant, purchase("p-1", amount="1200.00"))

    body = api_client.get("/api/v1/members/m-1").json()

    assert body["tier"]["tierId"] == "silver" and body["tier"]["name"] == "Silver"
    assert body["tier"]["qualifyingPoints"] == 1200
    assert body["tier"]["nextTier"] == {"tierId": "gold", "name": "Gold", "minPoints": 5000, "pointsToGo": 3800}


def test_the_summary_counts_the_window_and_reads_a_tier_the_cached_list_lacks(tenant, ladder):
    from tiers.models import QualifyingPoints
    from tiers.qualification import member_tier_summary
    from tiers.selectors import assignment_with_points

    # given a member in Silver with 1,200 points this month and 700 four months ago
    ingest(tenant, purchase("p-1", amount="1200.00"))
    assignment = TierAssignment.objects.get(member__external_ref="m-1")
    month = QualifyingPoints.objects.get(member=assignment.member).month
    old_month = (month - timedelta(days=120)).replace(day=1)
    QualifyingPoints.objects.create(tenant=tenant, member=assignment.member, month=old_month, points=700)

    # then all months count without a window, and only the window's with one
    found = assignment_with_points(member=assignment.member, since=None, tiers=list(ladder.values()))
    assert (found.points, found.tier.tier_id) == (1900, "silver")
    assert assignment_with_points(member=assignment.member, since=month, tiers=[]).points == 1200
    # and a tier missing from the list given is read from the database
    assert assignment_with_points(member=assignment.member, since=month, tiers=[]).tier == ladder["silver"]
    # and the summary /me shows says the same under a rolling policy
    TierPolicy.objects.create(tenant=tenant, qualification="ROLLING", window_months=3)
    summary = member_tier_summary(assignment.member)
    assert (summary["tier_id"], summary["qualifying_points"]) == ("silver", 1200)
    assert summary["next_tier"]["points_to_go"] == 5000 - 1200


def test_a_tenant_without_tiers_shows_none(tenant, api_client):
    ingest(tenant, purchase("p-1", amount="10.00"))

    assert api_client.get("/api/v1/members/m-1").json()["tier"] is None
    assert not TierAssignment.objects.exists()


def test_a_replayed_earning_counts_once(tenant, ladder):
    ingest(tenant, purchase("p-1", amount="600.00"))
    ingest(tenant, purchase("p-1", amount="600.00"))
    ingest(tenant, purchase("p-2", amount="399.00"))

    assert tier_of(tenant, "m-1") == "base"
