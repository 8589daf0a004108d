"""Background work through a real Celery worker process (Redis broker, the test database):
a dynamic cohort recomputes and a campaign ends on schedule without anything run in-process."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import cohorts
from campaigns.models import Campaign, CohortRun
from campaigns.services import campaign_activate, campaign_create
from campaigns.tasks import campaigns_schedule_run
from rewards.models import Member
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(check, *, timeout: float = 60, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_dynamic_cohort_is_recomputed_by_the_worker(celery_worker_process):
    tenant = TenantFactory()
    Member.objects.bulk_create(
        Member(tenant=tenant, external_ref=f"m-{i}", attributes={"city": "Lisbon" if i % 3 == 0 else "Porto"})
        for i in range(300)
    )

    cohort = cohorts.cohort_create(
        tenant=tenant,
        name="Lisbon",
        code="lisbon",
        kind="DYNAMIC",
        rule_json={"==": [{"var": "member.attributes.city"}, "Lisbon"]},
    )

    run = wait_for(
        lambda: CohortRun.objects.filter(cohort=cohort, status__in=["SUCCEEDED", "FAILED"]).first(),
        what="the recompute run",
    )
    assert run.status == "SUCCEEDED", run.error
    assert (run.progress, run.members_after, run.added) == (100, 100, 100)
    cohort.refresh_from_db()
    assert cohort.member_count == 100
    assert set(cohort.memberships.values_list("member__external_ref", flat=True)) == {
        f"m-{i}" for i in range(0, 300, 3)
    }


def test_the_schedule_task_ends_a_campaign_in_the_worker(celery_worker_process):
    tenant = TenantFactory()
    now = timezone.now()
    campaign = campaign_create(
        tenant=tenant,
        name="Flash",
        type="SIMPLE",
        start_at=now - timedelta(hours=2),
        end_at=now + timedelta(hours=1),
        rule_json={"trigger": {"eventTypes": ["action"]}, "reward": {"type": "POINTS", "points": 5}},
    )
    campaign_activate(tenant=tenant, campaign=campaign)
    # Its end passes (the worker reads its own clock, so move the end rather than the clock).
    Campaign.objects.filter(pk=campaign.pk).update(end_at=now - timedelta(seconds=1))

    campaigns_schedule_run.delay()

    ended = wait_for(
        lambda: Campaign.objects.filter(pk=campaign.pk, status="ENDED").first(), what="the campaign to end"
    )
    assert ended.ended_at == now - timedelta(seconds=1)
