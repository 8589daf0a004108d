"""Redis killed while events are being earned, and started again empty.

What the platform promises (README, "Faults"): Redis holds the limit counters and
caches, never the truth. With Redis gone, events still apply; the limits are checked in the
database under a lock, so no limit is passed by a single point; and when Redis comes back
empty, its counters are rebuilt from the ledger. These tests kill a real redis-server (their
own, on a port of their own) in the middle of a flood of events.
"""

import threading

import pytest
import redis

from rewards import selectors
from rewards.models import InboundEvent, Member
from tenants.services import limit_upsert
from tests.rewards.test_earning_concurrency import earned, post_event, purchase, run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cache_on(settings, redis_server):
    """Point the cache and the limiter (both `caches['default']`) at the test's own Redis."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {**settings.CACHES["default"], "LOCATION": redis_server.url},
    }
    return redis_server


def test_redis_killed_mid_flood_loses_no_event_and_passes_no_limit(tenant, cache_on):
    # given daily limits of 300 points a member and 1,000 for the tenant
    limit_upsert(tenant=tenant, scope="USER", max_per_day=300)
    limit_upsert(tenant=tenant, scope="GLOBAL", max_per_day=1000)
    refs = [f"m-{i % 4}" for i in range(200)]
    answered, lock = [0], threading.Lock()
    # and a first event, whose limit counters are now in the test's Redis
    assert post_event(tenant, purchase("first", "m-0"))[2]["points"] == 10
    assert redis.Redis.from_url(cache_on.url).dbsize() > 0

    def post(i):
        result = post_event(tenant, purchase(f"flood-{i}", refs[i]))
        with lock:
            answered[0] += 1
            if answered[0] == 60:
                cache_on.kill()  # the other threads' requests are in flight right now
        return result

    # when 200 events of 10 points arrive at once, and Redis dies after the 60th answer
    results = run_in_threads(200, post)

    # then every event was answered and applied, before and after the kill
    statuses = [status for status, _, _ in results]
    assert statuses == [201] * 200, [body for status, _, body in results if status != 201][:3]
    assert cache_on.process is None
    assert InboundEvent.objects.filter(tenant=tenant, status=InboundEvent.Status.APPLIED).count() == 201
    # and no limit was passed by a single point: 4 x 300 wanted, the tenant's 1,000 granted (10 went to the first)
    assert sum(body["points"] for _, _, body in results) == 990
    assert earned(tenant) == 1000
    for ref in set(refs):
        assert selectors.member_balance(member=Member.objects.get(tenant=tenant, external_ref=ref)) <= 300
    assert selectors.ledger_verify(tenant=tenant).ok

    # when Redis comes back empty (no persistence) and more events arrive at once
    cache_on.start()
    later = run_in_threads(40, lambda i: post_event(tenant, purchase(f"later-{i}", refs[i])))

    # then they apply, and the counters rebuilt from the ledger leave no headroom
    assert [status for status, _, _ in later] == [201] * 40
    assert sum(body["points"] for _, _, body in later) == 0
    assert earned(tenant) == 1000
    assert selectors.ledger_verify(tenant=tenant).ok


def test_with_redis_gone_before_the_first_event_the_api_still_answers(tenant, cache_on, api_client):
    # given Redis killed before anything was cached
    cache_on.kill()

    # when events, a balance read and a profile read arrive
    posted = [post_event(tenant, purchase(f"cold-{i}")) for i in range(3)]
    member = api_client.get("/api/v1/members/m-1")

    # then all are answered from the database
    assert [status for status, _, _ in posted] == [201, 201, 201]
    assert member.status_code == 200, member.content
    assert member.json()["balance"] == 30
    assert selectors.ledger_verify(tenant=tenant).ok
