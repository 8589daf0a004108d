"""Benchmarks: run with `make bench` (PostgreSQL and Redis). Prints medians and rates.

The benchmarks run in a throwaway database (created and dropped like a test database), so
figures include real PostgreSQL round trips; compare them as ratios between runs on the
same machine.
"""

import os
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from bench.common import progress, report, timed  # noqa: E402
from rewards.services import member_create, points_adjust  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

SECTIONS = ("ledger", "catalog", "me", "redemptions", "realtime", "insights", "replay", "load")


def main() -> None:
    """`bench/run.py` runs every section; `bench/run.py catalog` only the ones named."""
    wanted = sys.argv[1:] or list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown benchmark sections {sorted(unknown)}; choose from {SECTIONS}")
    setup_test_environment()
    # Its own database name, so a benchmark never touches the test suite's database.
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_{connection.settings_dict['NAME']}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(f"machine: {os.cpu_count()} cores, database {connection.vendor}")
        # In production a Celery worker publishes outbound events after each commit; with no
        # broker here Celery would run the relay inside every request. The ledger, catalog and
        # redemptions sections leave it to the worker (it is not there: events stay unpublished), and the
        # realtime section measures it with a real worker.
        settings.OUTBOX_RELAY_ON_COMMIT = False
        if "ledger" in wanted:
            run()
        if "catalog" in wanted:
            from bench.catalog import catalog_bench

            catalog_bench()
        if "me" in wanted:
            from bench.me import me_bench

            me_bench()
        if "redemptions" in wanted:
            from bench.redemptions import redemptions_bench

            redemptions_bench()
        if "realtime" in wanted:
            from bench.realtime import realtime_bench

            realtime_bench()
        if "insights" in wanted:
            from bench.insights import insights_bench

            insights_bench()
        if "replay" in wanted:
            from bench.replay import replay_bench

            replay_bench()
        if "load" in wanted:
            from bench.load.harness import load_bench

            load_bench()
    finally:
        if connection.vendor == "postgresql":
            # Servers and workers a benchmark started may still be saying goodbye.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run() -> None:
    tenant, issued = tenant_create(name=f"bench-{uuid.uuid4().hex[:8]}")
    members = [member_create(tenant=tenant, external_ref=f"b-{i}") for i in range(50)]

    # 1. Service-level credits, one member after another.
    samples = timed(
        lambda i: points_adjust(tenant=tenant, member=members[i % 50], points=10, reason="bench", actor="bench"),
        500,
        "service credit",
    )
    report("service credit (sequential)", samples)

    # 2. Concurrent credits for different members: no shared hot row, so they should scale.
    def credit(i: int) -> None:
        points_adjust(tenant=tenant, member=members[i % 50], points=1, reason="bench", actor="bench")
        connection.close()

    for workers in (1, 4):
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(credit, range(400)))
        elapsed = time.perf_counter() - started
        print(f"  concurrent credits, {workers} threads: {400 / elapsed:.0f} transfers/s")

    # 3. The HTTP API in-process (no network): adjustment and member read.
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=issued.raw)
    samples = timed(
        lambda i: client.post(
            f"/api/v1/members/b-{i % 50}/adjustments", {"points": 5, "reason": "bench"}, format="json"
        ),
        300,
        "API adjustment",
    )
    report("POST /members/{ref}/adjustments", samples)
    samples = timed(lambda i: client.get(f"/api/v1/members/b-{i % 50}"), 300, "API member read")
    report("GET /members/{ref}", samples)

    # 4. Events through the earning engine: inbox, limits (Redis), transfer, lot and outbox each.
    run_id = uuid.uuid4().hex[:8]

    def purchase(event_id: str, member: int) -> dict:
        return {
            "type": "transaction.created",
            "eventId": f"{run_id}-{event_id}",
            "memberRef": f"b-{member}",
            "amount": "12.50",
            "currency": "USD",
        }

    def post_event(i: int) -> None:
        response = client.post("/api/v1/events", purchase(f"single-{i}", i % 50), format="json")
        assert response.status_code == 201, response.content

    started = time.perf_counter()
    samples = timed(post_event, 300, "API event")
    elapsed = time.perf_counter() - started
    report("POST /events", samples)
    print(f"  POST /events, sequential: {300 / elapsed:.0f} events/s")

    # 5. Batches: one request, one transaction per event, so the gain is the HTTP overhead saved.
    for size, rounds in ((100, 5), (1000, 2)):
        samples = []
        for r in range(rounds):
            events = [purchase(f"batch{size}.{r}-{i}", i % 50) for i in range(size)]
            started = time.perf_counter()
            response = client.post("/api/v1/events:batch", {"events": events}, format="json")
            samples.append(time.perf_counter() - started)
            assert response.json()["summary"]["applied"] == size, response.json()["summary"]
            progress(f"batch of {size}", r + 1, rounds)
        median = statistics.median(samples)
        print(f"  POST /events:batch of {size}: median {median * 1000:.0f} ms per batch, {size / median:.0f} events/s")

    # 6. Concurrent events, each thread on its own client and connection. Event i goes to member
    # i % 48, so with 1 or 4 threads no two threads ever share a member (and its row lock).
    def events_from(worker: int, workers: int, total: int) -> None:
        own = APIClient()
        own.credentials(HTTP_X_API_KEY=issued.raw)
        try:
            for i in range(worker, total, workers):
                body = purchase(f"threads{workers}-{i}", i % 48)
                assert own.post("/api/v1/events", body, format="json").status_code == 201
        finally:
            connection.close()

    for workers in (1, 4):
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda w, n=workers: events_from(w, n, 400), range(workers)))
        elapsed = time.perf_counter() - started
        print(f"  concurrent events, {workers} threads: {400 / elapsed:.0f} events/s")

    campaigns_bench(client, issued.raw, run_id, tenant.pk)


def campaigns_bench(client: APIClient, raw_key: str, run_id: str, tenant_id) -> None:
    """7. Campaigns: the cost of evaluating live campaigns on every event, and of a shared budget."""
    from campaigns.models import Campaign, CampaignStats

    def action_event(tag: str, i: int) -> dict:
        return {
            "type": "action",
            "eventId": f"{run_id}-{tag.replace(' ', '_')}-{i}",
            "memberRef": f"b-{i % 48}",
            "actionCode": "app.open",
        }

    def per_event(tag: str) -> float:
        def post(i: int) -> None:
            assert client.post("/api/v1/events", action_event(tag, i), format="json").status_code == 201

        samples = timed(post, 200, f"action events, {tag}")
        return statistics.median(samples)

    baseline = per_event("no campaigns")
    for n in range(10):
        rule = {
            "trigger": {"eventTypes": ["action"], "actionCodes": ["app.open"]},
            "conditions": {
                "and": [{"==": [{"var": "event.actionCode"}, "app.open"]}, {"!=": [{"var": "member.locale"}, "xx"]}]
            },
            "reward": {"type": "POINTS", "points": 1},
        }
        campaign = Campaign.objects.create(
            tenant_id=tenant_id, name=f"bench {n}", status="ACTIVE", start_at="2020-01-01T00:00:00Z", rule_json=rule
        )
        CampaignStats.objects.create(campaign=campaign)
    with_ten = per_event("10 campaigns")
    print(
        f"  action event median: no campaigns {baseline:.1f} ms, 10 live campaigns {with_ten:.1f} ms "
        f"({with_ten / baseline:.2f}x)"
    )

    # One budgeted campaign shared by every member: its stats row is the point of contention.
    Campaign.objects.filter(tenant_id=tenant_id).update(budget_rewards=10**6)

    def events_from(worker: int, workers: int, total: int) -> None:
        own = APIClient()
        own.credentials(HTTP_X_API_KEY=raw_key)
        try:
            for i in range(worker, total, workers):
                body = action_event(f"budget{workers}", i)
                assert own.post("/api/v1/events", body, format="json").status_code == 201
        finally:
            connection.close()

    for workers in (1, 4):
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda w, n=workers: events_from(w, n, 200), range(workers)))
        elapsed = time.perf_counter() - started
        print(f"  events on 10 budgeted campaigns, {workers} threads: {200 / elapsed:.0f} events/s")


if __name__ == "__main__":
    main()
