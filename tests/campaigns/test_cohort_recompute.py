"""A dynamic cohort recompute over 100,000 members runs as set-based SQL, not a Python loop
per member: a bounded number of statements whatever the tenant's size, progress saved as
each chunk commits, and the exact membership the rule describes."""

import re
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import cohorts
from campaigns.models import Cohort, CohortMember, CohortRun

pytestmark = pytest.mark.django_db

MEMBERS = 100_000
RULE = {
    "and": [
        {">=": [{"var": "member.attributes.age"}, 30]},
        {"or": [{"==": [{"var": "member.attributes.plan"}, "gold"]}, {">=": [{"var": "activity.spend.30d"}, 100]}]},
        {"!": {"==": [{"var": "member.locale"}, "fr"]}},
    ]
}


def age(i: int):
    """Every seventh member's age is a string, which no number comparison matches."""
    return str(i % 90) if i % 7 == 0 else i % 90


def matches(i: int) -> bool:
    spend = i % 200 if i % 10 == 0 else 0
    return isinstance(age(i), int) and age(i) >= 30 and (i % 3 == 0 or spend >= 100) and i % 2 == 0


def members_bulk_insert(tenant, now) -> None:
    """Member i: age i % 90 (a string for every seventh), plan gold for every third, locale
    en or fr in turn; every tenth bought (i % 200) five days ago."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO rewards_member (id, tenant_id, external_ref, locale, status, attributes, created_at, updated_at)
            SELECT gen_random_uuid(), %(tenant)s, 'm-' || i, CASE WHEN i %% 2 = 0 THEN 'en' ELSE 'fr' END, 'ACTIVE',
                   jsonb_build_object(
                       'age', CASE WHEN i %% 7 = 0 THEN to_jsonb((i %% 90)::text) ELSE to_jsonb(i %% 90) END,
                       'plan', CASE WHEN i %% 3 = 0 THEN 'gold' ELSE 'basic' END),
                   %(now)s, %(now)s
            FROM generate_series(1, %(n)s) AS i
            """,
            {"tenant": tenant.pk, "now": now, "n": MEMBERS},
        )
        cursor.execute(
            """
            INSERT INTO rewards_inboundevent (tenant_id, event_id, type, member_ref, occurred_at, payload, payload_hash,
                                              status, result, amount, points, received_at)
            SELECT %(tenant)s, 'e-' || i, 'transaction.created', 'm-' || i, %(now)s - interval '5 days', '{}', '',
                   'APPLIED', '{}', i %% 200, 0, %(now)s
            FROM generate_series(10, %(n)s, 10) AS i
            """,
            {"tenant": tenant.pk, "now": now, "n": MEMBERS},
        )


def stale_members_insert(cohort: Cohort) -> set[int]:
    """Every fifth member already in the cohort, as if from an earlier rule."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_cohortmember (tenant_id, cohort_id, member_id, added_at)
            SELECT tenant_id, %s, id, now() FROM rewards_member
            WHERE tenant_id = %s AND substring(external_ref from 3)::int %% 5 = 0
            """,
            [cohort.pk, cohort.tenant_id],
        )
    return {i for i in range(1, MEMBERS + 1) if i % 5 == 0}


def progress_written(queries) -> list[int]:
    """The progress values the run wrote, in order (each UPDATE of the run that sets it)."""
    found = []
    for query in queries:
        if query["sql"].startswith('UPDATE "campaigns_cohortrun"'):
            match = re.search(r'"progress" = (\d+)', query["sql"])
            if match:
                found.append(int(match.group(1)))
    return found


def test_a_dynamic_cohort_over_100k_members_is_recomputed_set_based_with_progress(tenant, other_tenant):
    # given 100,000 members, 10,000 purchases, and a cohort holding every fifth member already
    started = time.monotonic()
    members_bulk_insert(tenant, timezone.now())
    members_bulk_insert(other_tenant, timezone.now())  # never selected: another tenant
    cohort = cohorts.cohort_create(
        tenant=tenant, name="Gold or big spenders", code="vip", kind="DYNAMIC", rule_json=RULE
    )
    stale = stale_members_insert(cohort)
    expected = {i for i in range(1, MEMBERS + 1) if matches(i)}
    run = CohortRun.objects.get(cohort=cohort)
    seeded = time.monotonic() - started

    # when the queued run is carried out
    started = time.monotonic()
    with CaptureQueriesContext(connection) as captured:
        run = cohorts.cohort_recompute(run_id=run.pk)
    took = time.monotonic() - started

    # then the cohort holds exactly the matching members, with what changed counted
    assert run.status == CohortRun.Status.SUCCEEDED, run.error
    refs = set(CohortMember.objects.filter(cohort=cohort).values_list("member__external_ref", flat=True))
    assert refs == {f"m-{i}" for i in expected}
    cohort.refresh_from_db()
    assert cohort.member_count == run.members_after == len(expected) == 11_426
    assert (run.members_total, run.added, run.removed) == (MEMBERS, len(expected - stale), len(stale - expected))
    assert cohort.computed_at is not None

    # and it took a bounded number of statements, one per chunk of 10,000 members, not one per
    # member: per chunk a savepoint, the statement, the progress and the release; never more
    # than MAX_CHUNKS chunks, whatever the tenant's size
    chunks = MEMBERS // cohorts.CHUNK_SIZE
    assert len(captured) <= 15 + 4 * chunks <= 15 + 4 * cohorts.MAX_CHUNKS, [q["sql"][:120] for q in captured]
    over_members = [q for q in captured if "rewards_member" in q["sql"]]
    assert len(over_members) == chunks + 2  # a count, the chunk bounds, then one statement per chunk

    # and progress was saved as each chunk committed, up to 100
    progress = progress_written(captured)
    assert progress[0] == 0
    assert progress[-1] == 100
    assert progress == sorted(progress)
    assert len(set(progress)) == chunks + 2

    # when it runs again, nothing changes; and the finished run itself is not redone
    again = cohorts.cohort_recompute(run_id=cohorts.cohort_recompute_request(tenant=tenant, cohort=cohort).pk)
    assert (again.status, again.added, again.removed, again.members_after) == ("SUCCEEDED", 0, 0, len(expected))
    with CaptureQueriesContext(connection) as replayed:
        assert cohorts.cohort_recompute(run_id=run.pk).finished_at == run.finished_at
    assert len(replayed) == 2
    print(f"\n100k members: seeded in {seeded:.1f}s, recomputed in {took:.1f}s with {len(captured)} queries")
