from datetime import UTC, datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.utils import timezone

from rewards.earning import event_ingest
from rewards.expiry import member_pending_release, member_points_expire
from rewards.lots import expiry_for
from rewards.models import EarnedLot, OutboxEvent, Transfer
from rewards.selectors import ledger_verify, member_get
from rewards.services import points_adjust
from rewards.tasks import lots_due_process
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def earn(tenant, event_id: str, amount: str, member_ref: str = "m-1"):
    return event_ingest(
        tenant=tenant,
        event={
            "type": "transaction.created",
            "event_id": event_id,
            "member_ref": member_ref,
            "amount": Decimal(amount),
            "currency": "USD",
            "occurred_at": timezone.now(),
        },
    )


def points(tenant, member_ref="m-1"):
    member = member_get(tenant=tenant, external_ref=member_ref)
    return member.balance, member.pending


def test_pending_points_are_released_after_the_returns_window():
    tenant = TenantFactory(pending_days=14)
    outcome = earn(tenant, "e-1", "40.00")
    assert outcome.body["pending"] is True
    assert points(tenant) == (0, 40)

    member = member_get(tenant=tenant, external_ref="m-1")
    assert member_pending_release(member=member, now=timezone.now() + timedelta(days=13)) == 0
    assert member_pending_release(member=member, now=timezone.now() + timedelta(days=15)) == 40

    assert points(tenant) == (40, 0)
    assert Transfer.objects.filter(tenant=tenant, kind="MATURED", amount=40).count() == 1
    assert ledger_verify(tenant=tenant).ok


def test_spending_takes_the_points_closest_to_expiry_and_the_rest_expire():
    tenant = TenantFactory(expiry_policy="DAYS", expiry_days=30)
    earn(tenant, "e-1", "100.00")  # expires in 30 days
    member = member_get(tenant=tenant, external_ref="m-1")
    points_adjust(tenant=tenant, member=member, points=50, reason="goodwill", actor="test")  # never expires
    points_adjust(tenant=tenant, member=member, points=-30, reason="spend", actor="test")

    lots = {lot.transfer.kind: lot.remaining for lot in EarnedLot.objects.filter(member=member)}
    assert lots == {"EARN": 70, "ADJUSTMENT": 50}

    assert member_points_expire(member=member, now=timezone.now() + timedelta(days=29)) == 0
    assert member_points_expire(member=member, now=timezone.now() + timedelta(days=31)) == 70
    assert points(tenant) == (50, 0)
    expired = OutboxEvent.objects.get(tenant=tenant, type="points.expired")
    assert expired.data["points"] == 70 and expired.data["balanceAfter"] == 50
    assert member_points_expire(member=member, now=timezone.now() + timedelta(days=60)) == 0
    assert ledger_verify(tenant=tenant).ok


def test_a_refund_takes_back_from_its_own_earning_first():
    tenant = TenantFactory(expiry_policy="DAYS", expiry_days=30)
    earn(tenant, "e-1", "10.00")
    member = member_get(tenant=tenant, external_ref="m-1")
    points_adjust(tenant=tenant, member=member, points=5, reason="goodwill", actor="test")
    event_ingest(
        tenant=tenant,
        event={
            "type": "transaction.refunded",
            "event_id": "r-1",
            "original_event_id": "e-1",
            "occurred_at": timezone.now(),
        },
    )
    lots = {lot.transfer.kind: lot.remaining for lot in EarnedLot.objects.filter(member=member)}
    assert lots == {"EARN": 0, "ADJUSTMENT": 5}
    # nothing is left to expire from the refunded earning
    assert member_points_expire(member=member, now=timezone.now() + timedelta(days=31)) == 0
    assert ledger_verify(tenant=tenant).ok


def test_the_scheduled_task_releases_and_expires_what_is_due():
    tenant = TenantFactory(expiry_policy="DAYS", expiry_days=1, pending_days=1)
    earn(tenant, "e-1", "10.00", member_ref="a")
    earn(tenant, "e-2", "20.00", member_ref="b")
    later = timezone.now() + timedelta(days=2)
    with mock.patch("rewards.tasks.timezone.now", return_value=later):
        first = lots_due_process()
    assert first == {"release": 2, "expire": 0}
    with mock.patch("rewards.tasks.timezone.now", return_value=later):
        second = lots_due_process()
    assert second == {"release": 0, "expire": 2}
    assert points(tenant, "a") == (0, 0) and points(tenant, "b") == (0, 0)
    assert ledger_verify(tenant=tenant).ok


@pytest.mark.parametrize(
    ("policy", "n", "earned", "expected"),
    [
        ("NEVER", None, datetime(2026, 1, 31, 12, tzinfo=UTC), None),
        ("DAYS", 30, datetime(2026, 1, 31, 12, tzinfo=UTC), datetime(2026, 3, 2, 12, tzinfo=UTC)),
        # end of month in the tenant's zone (Paris is UTC+1 in January)
        ("END_OF_MONTH", 0, datetime(2026, 1, 31, 23, 30, tzinfo=UTC), datetime(2026, 2, 28, 23, tzinfo=UTC)),
        ("END_OF_MONTH", 1, datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 2, 28, 23, tzinfo=UTC)),
        ("END_OF_YEAR", 0, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 12, 31, 23, tzinfo=UTC)),
    ],
)
def test_expiry_dates_follow_the_tenant_policy_in_its_time_zone(policy, n, earned, expected):
    tenant = TenantFactory(timezone="Europe/Paris", expiry_policy=policy, expiry_days=n)
    assert expiry_for(tenant=tenant, earned_at=earned) == expected
