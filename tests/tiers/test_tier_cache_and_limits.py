"""The tier cache (seed 004 keys, one hour) never answers with a tier older than the last
write that returned, even against a reader racing the write; the rate limit (100 requests a
second per tenant, counted in Redis) refuses exactly the requests over it; the seed's
metrics are exported."""

import random
import threading
import time

import pytest
from django.core.cache import cache
from django_redis import get_redis_connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from tests.core.shapes import assert_error
from tests.rewards.test_earning_concurrency import run_in_threads
from tiers import cache as tier_cache
from tiers import ratelimit, selectors, services
from tiers.models import Tier

NOW = 1_900_000_000.25  # a fixed instant, a quarter into its second


def key_client(tenant) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=tenant.raw_api_key)
    return client


def gold(tenant, **fields) -> Tier:
    return services.tier_create(
        tenant=tenant, tier_id="gold", names={"en": "Gold", "ar": "ذهبي"}, min_points=1000, **fields
    )


@pytest.fixture
def fixed_clock(monkeypatch):
    """Every request falls in the same second, however long the test takes."""
    monkeypatch.setattr(ratelimit, "clock", lambda: NOW)
    return monkeypatch


@pytest.fixture
def no_rate_limit(settings):
    settings.TIER_RATE_LIMIT_PER_SECOND = 0


# Cache ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_lookups_are_cached_under_the_seeds_keys_for_an_hour(tenant, django_assert_num_queries):
    gold(tenant)

    selectors.tier_get(tenant=tenant, tier_id="gold")
    selectors.tier_list(tenant=tenant)

    one, listed = f"cache:{tenant.pk}:gold", f"cache:{tenant.pk}:tiers"
    assert cache.get(one)[0] == "tier"
    assert cache.get(listed)[0] == "list"
    assert 3500 < cache.ttl(one) <= 3600
    assert 3500 < cache.ttl(listed) <= 3600
    with django_assert_num_queries(0):
        assert selectors.tier_get(tenant=tenant, tier_id="gold").names["ar"] == "ذهبي"
        assert [t.tier_id for t in selectors.tier_list(tenant=tenant)] == ["gold"]


@pytest.mark.django_db(transaction=True)
def test_a_read_right_after_an_update_sees_the_update(tenant, no_rate_limit):
    client = key_client(tenant)
    gold(tenant)
    assert client.get("/api/v1/tiers/gold").json()["minPoints"] == 1000  # now cached
    assert client.get("/api/v1/tiers").json()["results"][0]["minPoints"] == 1000

    updated = client.patch("/api/v1/tiers/gold", {"minPoints": 2000, "names": {"en": "Gold II"}}, format="json")

    assert updated.status_code == 200, updated.json()
    one = client.get("/api/v1/tiers/gold").json()
    listed = client.get("/api/v1/tiers").json()["results"][0]
    assert (one["minPoints"], one["name"], one["version"]) == (2000, "Gold II", 2)
    assert (listed["minPoints"], listed["name"], listed["version"]) == (2000, "Gold II", 2)


@pytest.mark.django_db(transaction=True)
def test_a_reader_that_read_before_a_write_committed_cannot_cache_the_old_tier(tenant):
    # given a reader that notes the generation, then reads the tier, then (before it stores
    # what it read) a write commits and returns
    tier = gold(tenant)
    key = tier_cache.tier_key(tenant.pk, "gold")

    def slow_load():
        old = selectors._pack([Tier.objects.get(pk=tier.pk)])
        services.tier_update(tenant=tenant, tier=tier, min_points=5000)  # commits: no transaction here
        return old

    stale = tier_cache.cached(tenant_pk=tenant.pk, key=key, kind=tier_cache.ONE, load=slow_load)
    assert selectors._unpack(stale)[0].min_points == 1000  # the reader answers what it read
    assert cache.get(key) is not None  # and stored it, under the generation it started with

    # then every read after the write sees the write
    assert selectors.tier_get(tenant=tenant, tier_id="gold").min_points == 5000
    assert selectors.tier_get(tenant=tenant, tier_id="gold").min_points == 5000


@pytest.mark.django_db(transaction=True)
def test_a_write_bypassing_the_services_still_invalidates(tenant):
    tier = gold(tenant)
    selectors.tier_get(tenant=tenant, tier_id="gold")

    tier.min_points = 7  # e.g. the admin
    tier.save()

    assert selectors.tier_get(tenant=tenant, tier_id="gold").min_points == 7


@pytest.mark.django_db(transaction=True)
def test_an_uncommitted_write_is_read_back_in_its_transaction_and_never_cached(tenant):
    from django.db import transaction

    tier = gold(tenant)
    selectors.tier_get(tenant=tenant, tier_id="gold")

    with transaction.atomic():
        services.tier_update(tenant=tenant, tier=tier, min_points=3)
        assert selectors.tier_get(tenant=tenant, tier_id="gold").min_points == 3
        transaction.set_rollback(True)

    assert selectors.tier_get(tenant=tenant, tier_id="gold").min_points == 1000


@pytest.mark.django_db(transaction=True)
def test_a_tier_called_tiers_does_not_confuse_the_list(tenant):
    services.tier_create(tenant=tenant, tier_id="tiers", names={"en": "Tiers"})
    gold(tenant)

    for _ in range(2):
        assert selectors.tier_get(tenant=tenant, tier_id="tiers").tier_id == "tiers"
        assert [t.tier_id for t in selectors.tier_list(tenant=tenant)] == ["tiers", "gold"]


@pytest.mark.django_db(transaction=True)
def test_tenants_do_not_share_cache_entries(tenant, other_tenant):
    gold(tenant)
    services.tier_create(tenant=other_tenant, tier_id="gold", names={"en": "Other gold"})

    for _ in range(2):
        assert selectors.tier_get(tenant=tenant, tier_id="gold").names["en"] == "Gold"
        assert selectors.tier_get(tenant=other_tenant, tier_id="gold").names["en"] == "Other gold"


@pytest.mark.django_db(transaction=True)
def test_the_database_answers_when_the_cache_fails(tenant, monkeypatch):
    gold(tenant)

    def broken(*args, **kwargs):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(tier_cache.cache, "get_many", broken)

    assert selectors.tier_get(tenant=tenant, tier_id="gold").min_points == 1000


@pytest.mark.django_db(transaction=True)
def test_racing_readers_never_see_a_tier_older_than_the_last_update_that_returned(tenant, no_rate_limit, monkeypatch):
    """One writer PUTs 40 versions of a tier while 12 readers (on their own database
    connections) read it through the cache, one by one and as a list. Each read notes the
    last version whose PUT had returned before the read began; no read may show an older one.

    Readers dawdle between reading the database and filling the cache, so many of them fill
    it with what they read before a write committed (with invalidation by deletion alone,
    this test fails in most runs, and the deterministic test above in every run)."""
    pack = selectors._pack
    role = threading.local()

    def slow_pack(tiers):
        packed = pack(tiers)
        if getattr(role, "reader", False):
            time.sleep(random.uniform(0, 0.03))
        return packed

    monkeypatch.setattr(selectors, "_pack", slow_pack)
    gold(tenant)
    updates = 40
    returned = {"version": 1}
    done = threading.Event()
    seen: list[tuple[int, int]] = []  # (floor, shown)
    lock = threading.Lock()

    def writer():
        client = key_client(tenant)
        try:
            for points in range(1, updates + 1):
                response = client.put(
                    "/api/v1/tiers/gold", {"names": {"en": f"Gold {points}"}, "minPoints": points}, format="json"
                )
                assert response.status_code == 200, response.json()
                with lock:
                    returned["version"] = response.json()["version"]
        finally:
            done.set()

    def reader(i):
        role.reader = True
        client = key_client(tenant)
        while not done.is_set():
            with lock:
                floor = returned["version"]
            if i % 2:
                body = client.get("/api/v1/tiers/gold").json()
            else:
                body = client.get("/api/v1/tiers").json()["results"][0]
            # the name and minPoints always belong to the version shown
            assert body["name"] == ("Gold" if body["version"] == 1 else f"Gold {body['minPoints']}")
            with lock:
                seen.append((floor, body["version"]))

    run_in_threads(13, lambda i: writer() if i == 0 else reader(i), workers=13)

    stale = [(floor, shown) for floor, shown in seen if shown < floor]
    assert not stale, stale[:5]
    assert len(seen) > 100  # the readers did race the writer
    assert len({shown for _, shown in seen}) > 5
    final = key_client(tenant).get("/api/v1/tiers/gold").json()
    assert (final["version"], final["minPoints"]) == (updates + 1, updates)


# Rate limit ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_150_requests_in_one_second_the_50_over_100_are_refused(tenant, other_tenant, fixed_clock):
    services.tier_create(tenant=tenant, tier_id="gold", names={"en": "Gold"})
    client = key_client(tenant)

    responses = [client.get("/api/v1/tiers/gold") for _ in range(150)]

    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 100 + [429] * 50
    for refused in responses[100:]:
        assert_error(refused, 429, code="throttled")
        assert refused["Retry-After"] == "1"
    # counted in Redis under the seed's key, with its window in the name
    redis = get_redis_connection("default")
    key = ratelimit.redis_key(ratelimit.rate_limit_key(tenant.pk, int(NOW)))
    assert key.endswith(f"rate_limit:{tenant.pk}:campaign:{int(NOW)}")
    assert int(redis.get(key)) == 150
    assert 0 < redis.ttl(key) <= 60
    # another tenant is not affected
    assert key_client(other_tenant).get("/api/v1/tiers").status_code == 200
    # and the next second starts afresh
    fixed_clock.setattr(ratelimit, "clock", lambda: NOW + 1)
    assert client.get("/api/v1/tiers/gold").status_code == 200


@pytest.mark.django_db
def test_every_tier_endpoint_counts_against_the_limit(tenant, fixed_clock, settings):
    settings.TIER_RATE_LIMIT_PER_SECOND = 3
    client = key_client(tenant)

    client.get("/api/v1/tiers")
    client.get("/api/v1/tier-policy")
    client.post("/api/v1/tiers", {"tierId": "gold", "names": {"en": "Gold"}}, format="json")
    refused = client.patch("/api/v1/tiers/gold", {"rank": 1}, format="json")

    assert_error(refused, 429)
    assert Tier.objects.get(tier_id="gold").rank == 0


@pytest.mark.django_db(transaction=True)
def test_the_limit_holds_for_150_concurrent_requests(tenant, other_tenant, fixed_clock):
    services.tier_create(tenant=tenant, tier_id="gold", names={"en": "Gold"})

    statuses = run_in_threads(150, lambda i: key_client(tenant).get("/api/v1/tiers/gold").status_code)

    assert sorted(statuses) == [200] * 100 + [429] * 50
    assert key_client(other_tenant).get("/api/v1/tiers").status_code == 200


@pytest.mark.django_db
def test_without_redis_each_process_counts_for_itself(tenant, fixed_clock, settings):
    settings.REDIS_URL = ""
    ratelimit._local.clear()
    client = key_client(tenant)

    statuses = [client.get("/api/v1/tiers").status_code for _ in range(150)]

    assert statuses == [200] * 100 + [429] * 50


@pytest.mark.django_db
def test_when_redis_fails_the_limit_is_counted_in_process(tenant, fixed_clock):
    import redis as redis_lib

    unreachable = redis_lib.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)
    fixed_clock.setattr(ratelimit, "_redis", lambda: unreachable)
    ratelimit._local.clear()
    before = REGISTRY.get_sample_value("vip_tier_rate_limit_local_checks_total") or 0
    client = key_client(tenant)

    statuses = [client.get("/api/v1/tiers").status_code for _ in range(101)]

    assert statuses == [200] * 100 + [429]
    assert REGISTRY.get_sample_value("vip_tier_rate_limit_local_checks_total") - before == 101


def test_retry_after_is_the_rest_of_the_second_rounded_up(settings):
    settings.REDIS_URL = ""
    settings.TIER_RATE_LIMIT_PER_SECOND = 1
    ratelimit._local.clear()

    second = int(NOW)

    assert ratelimit.rate_limit_hit(tenant_pk="t", now=second + 0.0) == (True, 0)
    assert ratelimit.rate_limit_hit(tenant_pk="t", now=second + 0.001) == (False, 1)
    assert ratelimit.rate_limit_hit(tenant_pk="t", now=second + 0.999) == (False, 1)
    assert ratelimit.rate_limit_hit(tenant_pk="t", now=second + 1.0) == (True, 0)


# Metrics -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_seeds_metrics_are_exported(tenant, fixed_clock, settings):
    client = key_client(tenant)
    client.post("/api/v1/tiers", {"tierId": "gold", "names": {"en": "Gold"}}, format="json")
    client.get("/api/v1/tiers")
    client.get("/api/v1/tiers/gold")
    client.get("/api/v1/tiers/missing")
    settings.TIER_RATE_LIMIT_PER_SECOND = 1
    client.get("/api/v1/tiers/gold")

    text = APIClient().get("/metrics").content.decode()

    assert f'vip_tiers_total{{tenant="{tenant.pk}"}} 1.0' in text
    assert 'vip_tier_lookup_latency_seconds_count{operation="get"}' in text
    assert 'vip_tier_lookup_latency_seconds_bucket{le="0.2",operation="list"}' in text
    assert 'vip_tier_lookup_errors_by_type_total{type="not_found"}' in text
    assert 'vip_tier_lookup_errors_by_type_total{type="rate_limited"}' in text
    assert "# TYPE vip_tier_assignment_events_total counter" in text
    assert "# TYPE vip_tier_assignment_failures_total counter" in text


def test_the_assignment_counters_are_scraped_under_the_seeds_names():
    from tiers import metrics

    metrics.ASSIGNMENT_EVENTS.labels(event_type="vip_tier.assigned").inc()
    metrics.ASSIGNMENT_FAILURES.labels(event_type="vip_tier.assigned").inc()

    assert REGISTRY.get_sample_value("vip_tier_assignment_events_total", {"event_type": "vip_tier.assigned"}) >= 1
    assert REGISTRY.get_sample_value("vip_tier_assignment_failures_total", {"event_type": "vip_tier.assigned"}) >= 1
