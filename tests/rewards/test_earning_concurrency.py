"""Races on the earning engine over real PostgreSQL connections and a real Redis: one eventId
sent many times at once is applied once, limits hold under a flood of events, when Redis is
down and after it comes back, counters lost from Redis are rebuilt from the ledger, and a
refund gives limit headroom back."""

import json
import threading
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import redis
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Sum
from django.utils import timezone
from django_redis import get_redis_connection
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from rewards import limits, selectors
from rewards.earning import event_ingest
from rewards.models import EarnedLot, InboundEvent, Member, OutboxEvent, Transfer
from tenants.services import limit_upsert

pytestmark = pytest.mark.django_db(transaction=True)

# PostgreSQL allows 100 connections here, shared with other test runs: every thread holds
# one, so the races run on fewer threads than they send requests.
WORKERS = 32
OCCURRED_AT = "2026-11-20T10:00:00Z"
FALLBACK_METRIC = "loyalty_limit_checks_in_database_total"


def run_in_threads(count: int, action, *, workers: int = WORKERS) -> list:
    """Run action(i) for i in range(count) on `workers` threads, each on its own database
    connection, all released at the same moment; the results come back in order of i."""
    workers = min(workers, count)
    barrier = threading.Barrier(workers, timeout=60)
    indexes = iter(range(count))
    take = threading.Lock()
    results: list = [None] * count
    failures: list[BaseException] = []

    def worker():
        try:
            barrier.wait()
            while True:
                with take:
                    i = next(indexes, None)
                if i is None:
                    return
                results[i] = action(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    if failures:
        raise failures[0]
    return results


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def purchase(event_id: str, member_ref: str = "m-1", amount: str = "10.00", **extra) -> dict:
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": member_ref,
        "amount": amount,
        "currency": "USD",
        "occurredAt": OCCURRED_AT,
        **extra,
    }


def post_event(tenant, body: dict) -> tuple[int, str | None, dict]:
    response = key_client(tenant.raw_api_key).post("/api/v1/events", body, format="json")
    return response.status_code, response.headers.get("Idempotent-Replayed"), response.json()


def earned(tenant) -> int:
    return Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN).aggregate(s=Sum("amount"))["s"] or 0


def balance(tenant, member_ref: str) -> int:
    return selectors.member_balance(member=Member.objects.get(tenant=tenant, external_ref=member_ref))


def member_daily_counter(tenant, member_ref: str) -> int | None:
    member = Member.objects.get(tenant=tenant, external_ref=member_ref)
    value = get_redis_connection("default").get(limits._redis_key(f"limit:{tenant.pk}:{member.pk}:daily"))
    return None if value is None else int(value)


def fallback_checks() -> float:
    return REGISTRY.get_sample_value(FALLBACK_METRIC) or 0.0


@pytest.fixture
def redis_down(monkeypatch):
    """The limiter's Redis refuses connections; the cache and everything else keep theirs."""
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)
    monkeypatch.setattr(limits, "_redis", lambda: unreachable)
    return monkeypatch


def assert_applied_once(tenant, event_id: str, *, points: int, member_ref: str = "m-1") -> None:
    assert InboundEvent.objects.filter(tenant=tenant, event_id=event_id).count() == 1
    assert InboundEvent.objects.get(tenant=tenant, event_id=event_id).status == InboundEvent.Status.APPLIED
    transfers = Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN)
    assert list(transfers.values_list("idempotency_key", "amount")) == [(f"event:{event_id}", points)]
    assert EarnedLot.objects.filter(tenant=tenant).count() == 1
    credited = OutboxEvent.objects.filter(tenant=tenant, type="points.credited")
    assert [o.data["eventId"] for o in credited] == [event_id]
    assert balance(tenant, member_ref) == points
    assert selectors.ledger_verify(tenant=tenant).ok


# 1. One event, many times at once ------------------------------------------------------


@pytest.mark.parametrize("with_occurred_at", [True, False], ids=["occurredAt sent", "occurredAt left out"])
def test_one_event_posted_100_times_at_once_through_the_api_is_applied_once(tenant, with_occurred_at):
    # given one body retried 100 times, possibly without occurredAt (it defaults to receipt)
    body = purchase("dup-1", amount="25.00")
    if not with_occurred_at:
        del body["occurredAt"]

    # when every copy is posted at once
    results = run_in_threads(100, lambda i: post_event(tenant, body))

    # then one 201 applied it and 99 replays answered with the very same body
    assert Counter(status for status, _, _ in results) == {201: 1, 200: 99}, results
    first = next(answer for status, _, answer in results if status == 201)
    assert first["points"] == 25
    for status, replayed, answer in results:
        assert answer == first
        assert replayed == ("true" if status == 200 else None)
    occurred_at = InboundEvent.objects.get(tenant=tenant, event_id="dup-1").occurred_at
    if with_occurred_at:
        assert occurred_at == datetime.fromisoformat(OCCURRED_AT)
    else:
        assert abs(timezone.now() - occurred_at) < timedelta(minutes=1)
    assert_applied_once(tenant, "dup-1", points=25)


def test_one_event_ingested_100_times_at_once_through_the_service_is_applied_once(tenant):
    # given one event as the API would hand it to the engine
    event = {
        "type": "transaction.created",
        "event_id": "dup-2",
        "member_ref": "m-1",
        "amount": Decimal("40.00"),
        "currency": "USD",
        "occurred_at": datetime.fromisoformat(OCCURRED_AT),
    }

    def ingest(i):
        outcome = event_ingest(tenant=tenant, event=dict(event))
        # compared as a client would see them: the first answer is in memory, replays come from JSON
        return outcome.status_code, outcome.replayed, json.loads(json.dumps(outcome.body, cls=DjangoJSONEncoder))

    # when 100 workers ingest it at once
    results = run_in_threads(100, ingest)

    # then exactly one applied it and the rest replayed its result
    assert Counter((status, replayed) for status, replayed, _ in results) == {(201, False): 1, (200, True): 99}
    first = next(body for status, _, body in results if status == 201)
    assert first["points"] == 40
    assert all(body == first for _, _, body in results)
    assert_applied_once(tenant, "dup-2", points=40)


# 2. A flood of events under a daily limit ----------------------------------------------


def test_1000_concurrent_events_under_a_daily_limit_issue_exactly_the_limit(tenant):
    # given a member whose daily limit is worth 100 events of 10 points
    limit_upsert(tenant=tenant, scope="USER", member_ref="m-flood", max_per_day=1000)

    # when 1,000 distinct events of 10 points arrive at once
    results = run_in_threads(1000, lambda i: post_event(tenant, purchase(f"flood-{i}", "m-flood")), workers=16)

    # then all are applied, 100 earn 10 points, the rest earn nothing and say why
    assert Counter(status for status, _, _ in results) == {201: 1000}
    points = [body["points"] for _, _, body in results]
    assert sum(points) == 1000
    assert Counter(points) == {10: 100, 0: 900}
    for _, _, body in results:
        if body["points"] == 0:
            assert body["explanation"]["capsHit"] == [
                {"type": "limit", "scope": "USER", "window": "daily", "limit": 1000, "requested": 10, "granted": 0}
            ]
    # and the ledger, the balance and the Redis counter agree on exactly the limit
    assert InboundEvent.objects.filter(tenant=tenant, status=InboundEvent.Status.APPLIED).count() == 1000
    assert Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN).count() == 100
    assert earned(tenant) == 1000
    assert balance(tenant, "m-flood") == 1000
    assert member_daily_counter(tenant, "m-flood") == 1000
    assert selectors.ledger_verify(tenant=tenant).ok


# 3. Redis down: the database decides ----------------------------------------------------


@pytest.mark.parametrize(
    ("members", "user_per_day", "global_per_day", "expected_total"),
    [(1, 500, None, 500), (4, 300, 1000, 1000)],
    ids=["one member", "four members under a tenant limit"],
)
def test_with_redis_down_events_still_apply_and_limits_hold(
    tenant, redis_down, members, user_per_day, global_per_day, expected_total
):
    # given limits, and a limiter that cannot reach Redis
    limit_upsert(tenant=tenant, scope="USER", max_per_day=user_per_day)
    limit_upsert(tenant=tenant, scope="GLOBAL", max_per_day=global_per_day)
    checks_before = fallback_checks()

    # when 200 events of 10 points arrive at once, spread over the members
    refs = [f"m-{i % members}" for i in range(200)]
    results = run_in_threads(200, lambda i: post_event(tenant, purchase(f"down-{i}", refs[i])))

    # then none is lost or failed, and no limit is passed by a single point
    assert Counter(status for status, _, _ in results) == {201: 200}, [b for s, _, b in results if s != 201][:3]
    assert sum(body["points"] for _, _, body in results) == expected_total
    assert InboundEvent.objects.filter(tenant=tenant, status=InboundEvent.Status.APPLIED).count() == 200
    assert earned(tenant) == expected_total
    for ref in set(refs):
        assert balance(tenant, ref) <= user_per_day
    assert selectors.ledger_verify(tenant=tenant).ok
    # and every one of those checks was counted as done in the database
    assert fallback_checks() - checks_before == 200


def test_after_redis_comes_back_points_granted_during_the_outage_still_count(tenant, monkeypatch):
    # given a member at 40 of 100 points today, counted in Redis
    limit_upsert(tenant=tenant, scope="USER", member_ref="m-1", max_per_day=100)
    assert post_event(tenant, purchase("before", amount="40.00"))[2]["points"] == 40
    assert member_daily_counter(tenant, "m-1") == 40

    # when the limiter loses Redis for a while (its counters survive, as in a network split)
    working = limits._redis
    unreachable = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)
    monkeypatch.setattr(limits, "_redis", lambda: unreachable)
    assert post_event(tenant, purchase("during", amount="50.00"))[2]["points"] == 50
    monkeypatch.setattr(limits, "_redis", working)

    # then back on Redis, the 50 points granted meanwhile still count against the limit
    after = run_in_threads(20, lambda i: post_event(tenant, purchase(f"after-{i}"))[2]["points"])
    assert sum(after) == 10
    assert balance(tenant, "m-1") == 100
    assert member_daily_counter(tenant, "m-1") == 100
    assert selectors.ledger_verify(tenant=tenant).ok


# 4. Counters rebuilt from the ledger ----------------------------------------------------


def test_counters_lost_from_redis_are_rebuilt_from_the_ledger(tenant):
    # given a member who earned 60 of a daily 100, counted in Redis
    limit_upsert(tenant=tenant, scope="USER", member_ref="m-1", max_per_day=100)
    limit_upsert(tenant=tenant, scope="GLOBAL", max_per_day=150)
    for i, amount in enumerate(["35.00", "25.00"]):
        assert post_event(tenant, purchase(f"early-{i}", amount=amount))[0] == 201
    assert member_daily_counter(tenant, "m-1") == 60

    # when Redis loses the tenant's counters
    client = get_redis_connection("default")
    lost = list(client.scan_iter(match=f"*limit:{tenant.pk}:*"))
    assert len(lost) == 2  # the tenant's and the member's daily counters
    client.delete(*lost)

    # then concurrent events get exactly the headroom the ledger leaves: 40 for m-1, and the
    # tenant's 150 caps m-2 at 50
    m1 = run_in_threads(30, lambda i: post_event(tenant, purchase(f"late-{i}"))[2]["points"])
    m2 = run_in_threads(30, lambda i: post_event(tenant, purchase(f"other-{i}", "m-2"))[2]["points"])
    assert sum(m1) == 40
    assert sum(m2) == 50
    assert balance(tenant, "m-1") == 100
    assert balance(tenant, "m-2") == 50
    assert member_daily_counter(tenant, "m-1") == 100
    assert selectors.ledger_verify(tenant=tenant).ok


# 5. Refunds give headroom back ----------------------------------------------------------


@pytest.mark.parametrize("limiter", ["redis", "database"])
def test_a_refund_gives_limit_headroom_back_the_same_day(tenant, monkeypatch, limiter):
    # given a member who reached a daily limit of 100, and a further event that earned nothing
    if limiter == "database":
        monkeypatch.setattr(limits, "_redis", lambda: None)
    limit_upsert(tenant=tenant, scope="USER", member_ref="m-1", max_per_day=100)
    assert post_event(tenant, purchase("buy", amount="100.00"))[2]["points"] == 100
    assert post_event(tenant, purchase("blocked", amount="10.00"))[2]["points"] == 0

    # when 40% of the purchase is refunded, then the rest
    refund = {"type": "transaction.refunded", "originalEventId": "buy", "occurredAt": OCCURRED_AT}
    partial = post_event(tenant, {**refund, "eventId": "refund-1", "amount": "40.00"})
    assert (partial[0], partial[2]["points"]) == (201, -40)
    after_partial = run_in_threads(10, lambda i: post_event(tenant, purchase(f"partial-{i}"))[2]["points"])
    rest = post_event(tenant, {**refund, "eventId": "refund-2"})
    assert (rest[0], rest[2]["points"]) == (201, -60)
    after_full = run_in_threads(20, lambda i: post_event(tenant, purchase(f"full-{i}"))[2]["points"])

    # then each refund freed exactly what it took back, and the day still ends at the limit
    assert sum(after_partial) == 40
    assert sum(after_full) == 60
    assert balance(tenant, "m-1") == 100
    if limiter == "redis":
        assert member_daily_counter(tenant, "m-1") == 100
    assert selectors.ledger_verify(tenant=tenant).ok
