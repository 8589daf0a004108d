"""The earning engine in-process (`python -m bench.engine`): transaction.created events for
distinct members through the API test client against the load benchmark's configuration
(spend categories and multipliers, four tiers, three active campaigns, one of them under a
budget, limits), with the median and p95 per event, the queries per event grouped by table,
and the same events through `events:batch` (ENGINE_BATCHES timed, then one counted). Set
ENGINE_PROFILE=1 for a pyinstrument profile of single events and of the counted batch.
"""

import os
import random
import statistics
import time
import uuid
from collections import Counter
from decimal import Decimal

from django.db import connection

from bench.common import report

EVENTS = int(os.environ.get("ENGINE_EVENTS") or 300)
MEMBERS = int(os.environ.get("ENGINE_MEMBERS") or 2_000)
BATCHES = int(os.environ.get("ENGINE_BATCHES") or 4)


def _purchase(rng: random.Random, event_id: str, member: int) -> dict:
    from bench.load.scenarios import MEMBER_REF, SPEND_CATEGORIES

    category = rng.choice(list(SPEND_CATEGORIES))
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": MEMBER_REF.format(member),
        "amount": str(Decimal(rng.randint(500, 12_000)) / 100),
        "currency": "USD",
        "category": category,
    }


def _origin(sql: str) -> str:
    words = sql.split()
    if not words:
        return "?"
    verb = words[0].upper()
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return verb
    for marker in ("FROM", "INTO", "UPDATE"):
        if marker in words:
            at = words.index(marker)
            if at + 1 < len(words):
                return f"{verb} {words[at + 1].strip(chr(34))}"
    return verb


def engine_bench() -> None:
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    from bench.load.loader import engine_tenant

    _, issued = engine_tenant("bench-engine", MEMBERS)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=issued.raw)
    rng = random.Random(7)
    run_id = uuid.uuid4().hex[:6]

    def post(event: dict) -> None:
        response = client.post("/api/v1/events", event, format="json")
        assert response.status_code == 201, response.content

    for i in range(20):  # caches, system accounts, connection
        post(_purchase(rng, f"{run_id}-warm-{i}", MEMBERS - 1 - i))

    samples, queries = [], []
    origins: Counter = Counter()
    for i in range(EVENTS):
        event = _purchase(rng, f"{run_id}-e-{i}", i % (MEMBERS - 40))
        connection.queries_log.clear()  # the log keeps 9,000 queries; a full one captures none
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            post(event)
            samples.append((time.perf_counter() - started) * 1000)
        queries.append(len(captured.captured_queries))
        origins.update(_origin(q["sql"]) for q in captured.captured_queries)
        if os.environ.get("ENGINE_SQL") and i == EVENTS - 1:
            print("\n".join(q["sql"][:300] for q in captured.captured_queries))
    report("single transaction.created (in-process, sequential)", samples)
    print(f"  queries per event: median {statistics.median(queries)}, max {max(queries)}")
    for origin, n in origins.most_common():
        print(f"    {n / EVENTS:5.2f}  {origin}")

    if os.environ.get("ENGINE_PROFILE"):
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        for i in range(20):
            post(_purchase(rng, f"{run_id}-p-{i}", (i * 7) % (MEMBERS - 40)))
        profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))

    workers = int(os.environ.get("ENGINE_WORKERS") or 0)
    if workers:
        _concurrent(issued.raw, run_id, workers)

    # Timed batches run without the query log (it renders every statement with its values,
    # which for a batch's 500-row INSERTs costs more than running them); one more batch after
    # them is counted, and profiled with ENGINE_PROFILE.
    rates, batch_queries = [], []
    batch_origins: Counter = Counter()
    for b in range(BATCHES + 1):
        events = [_purchase(rng, f"{run_id}-b{b}-{i}", (b * 500 + i) % (MEMBERS - 40)) for i in range(500)]
        counted = b == BATCHES
        if not counted:
            started = time.perf_counter()
            response = client.post("/api/v1/events:batch", {"events": events}, format="json")
            rates.append(500 / (time.perf_counter() - started))
            assert response.status_code < 300, response.content[:500]
            continue
        connection.queries_log.clear()
        profiler = None
        if os.environ.get("ENGINE_PROFILE"):
            from pyinstrument import Profiler

            profiler = Profiler()
            profiler.start()
        with CaptureQueriesContext(connection) as captured:
            response = client.post("/api/v1/events:batch", {"events": events}, format="json")
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        assert response.status_code < 300, response.content[:500]
        batch_queries.append(len(captured.captured_queries))
        batch_origins.update(_origin(q["sql"])[:60] for q in captured.captured_queries)
    if not rates:
        return
    from rewards.batch import BATCH_EVENTS

    lanes = {lane: int(BATCH_EVENTS.labels(lane=lane)._value.get()) for lane in ("set", "single")}
    print(
        f"  events:batch of 500: median {statistics.median(rates):.0f} events/s "
        f"({[round(r) for r in rates]}), queries in one more batch {batch_queries[0]}; "
        f"events set-based {lanes['set']}, on their own {lanes['single']} (a tier moved, a new member...)"
    )
    from rewards.batch import BATCH_SINGLE

    for metric in BATCH_SINGLE.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                print(f"    on their own: {int(sample.value):6d}  {sample.labels['reason']}")
    for origin, n in batch_origins.most_common(25):
        print(f"    {n:8d}  {origin}")


def _post_many(args: tuple) -> list[float]:
    """In a forked worker: its own connection, `count` events for its own members."""
    from rest_framework.test import APIClient

    raw_key, run_id, worker, count, offset = args
    connection.close()  # the parent's; this process opens its own
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    rng = random.Random(worker)
    samples = []
    for i in range(count):
        event = _purchase(rng, f"{run_id}-w{worker}-{i}", offset + i)
        started = time.perf_counter()
        response = client.post("/api/v1/events", event, format="json")
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 201, response.content
    connection.close()
    return samples


def _concurrent(raw_key: str, run_id: str, workers: int) -> None:
    """`workers` processes posting at once (closed loop), every event for a distinct member:
    what is left is what they share (the campaign's stats row, the database, the cores)."""
    import multiprocessing

    per_worker = int(os.environ.get("ENGINE_PER_WORKER") or 100)
    connection.close()
    jobs = [(raw_key, run_id, w, per_worker, w * per_worker) for w in range(workers)]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        results = pool.map(_post_many, jobs)
    elapsed = time.perf_counter() - started
    samples = sorted(x for r in results for x in r)
    p95 = samples[int(len(samples) * 0.95) - 1]
    print(
        f"  {workers} processes at once: {len(samples) / elapsed:.0f} events/s, "
        f"median {statistics.median(samples):.1f} ms, p95 {p95:.1f} ms (n={len(samples)})"
    )


def main() -> None:
    """`python -m bench.engine`: in a throwaway database, like bench/run.py's sections."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    django.setup()
    from django.conf import settings
    from django.test.utils import setup_test_environment

    setup_test_environment()
    connection.settings_dict.setdefault("TEST", {})["NAME"] = f"bench_engine_{connection.settings_dict['NAME']}"
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        print(f"machine: {os.cpu_count()} cores, database {connection.vendor}")
        settings.OUTBOX_RELAY_ON_COMMIT = False  # a worker publishes in production
        engine_bench()
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
