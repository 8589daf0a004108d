"""Redis killed under the rate limits (core/api/ratelimit.py), and started again empty.

What the platform promises (README, "Rate limits"): the limits fail open. With Redis gone,
writes are still served and each process counts for itself from zero, so for the rest of the
window a deployment may let through up to its limit once more per process; a log line and
`loyalty_rate_limit_local_checks_total` say it is happening. When Redis is back, counting is
deployment-wide again.
"""

import pytest
import redis
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from core.api import ratelimit
from rewards.models import Transfer
from tests.redemptions.helpers import member_with

NOW = 1_900_000_000.25

pytestmark = pytest.mark.django_db


def test_the_limits_fail_open_to_per_process_counts_while_redis_is_down(tenant, redis_server, monkeypatch, settings):
    # given a member limit of 3 adjustments a minute, counted in the test's own Redis
    client_of_limits = redis.Redis.from_url(redis_server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    monkeypatch.setattr(ratelimit, "redis_client", lambda: client_of_limits)
    monkeypatch.setattr(ratelimit, "clock", lambda: NOW)
    ratelimit._local.clear()
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "points": {"api_key": "100/min", "member": "3/min"}}
    member = member_with(tenant, 0)
    api = APIClient()
    api.credentials(HTTP_X_API_KEY=tenant.raw_api_key)

    def adjust() -> int:
        url = f"/api/v1/members/{member.external_ref}/adjustments"
        return api.post(url, {"points": 1, "reason": "goodwill"}, format="json").status_code

    assert [adjust() for _ in range(4)] == [201, 201, 201, 429]
    assert client_of_limits.dbsize() == 2  # the key's and the member's counters

    # when Redis dies
    redis_server.kill()
    before = REGISTRY.get_sample_value("loyalty_rate_limit_local_checks_total", {"scope": "points"}) or 0

    # then writes are still served, and this process holds the limit from zero
    assert [adjust() for _ in range(4)] == [201, 201, 201, 429]
    assert REGISTRY.get_sample_value("loyalty_rate_limit_local_checks_total", {"scope": "points"}) - before == 4

    # and when Redis is back (empty), the count is Redis's again
    redis_server.start()
    client_of_limits.connection_pool.disconnect()  # its connections died with the old server
    assert [adjust() for _ in range(4)] == [201, 201, 201, 429]
    member_counter = f"rate_limit:points:member:{tenant.pk}:{member.external_ref}:{int(NOW // 60) * 60}"
    assert int(client_of_limits.get(ratelimit.redis_key(member_counter))) == 3
    assert Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.ADJUSTMENT).count() == 9
