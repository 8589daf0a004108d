"""The load generator: an asyncio HTTP client (aiohttp) in its own process, so the load it
makes is not served by, nor slowed by, the processes it measures.

    python -m bench.load.generator <run.json>

`run.json` holds {"context": ..., "scenario": ...} (bench.load.harness writes it); the
result is printed as one JSON line. aiohttp rather than locust: one process drives hundreds
of connections from a single event loop with little CPU of its own (it shares the machine
with the server), and it lets an open-loop run start each request at its scheduled time and
count latency from then, which locust's per-user pacing does not.
"""

import asyncio
import json
import math
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent))

from bench.load.scenarios import (
    CURRENCY,
    MEMBER_REF,
    MIXED,
    SPEND_CATEGORIES,
    Scenario,
    cached_queries,
    uncached_queries,
)

JSON = {"Content-Type": "application/json"}
SLOW_MS = 1000  # a request answered later than this is listed with when it started


class Requests:
    """Builds request `i` of a scenario: (method, path, headers, body, units it carries)."""

    def __init__(self, context: dict, scenario: Scenario):
        self.context = context
        self.scenario = scenario
        self.rng = random.Random(f"{context['run_id']}-{scenario.name}")
        self.api_key = {"X-API-Key": context["api_key"]}
        self.tokens = context["tokens"]
        self.categories = list(SPEND_CATEGORIES.items())
        if scenario.kind == "search-uncached":
            queries = uncached_queries(seed=context["search_seed"])
            # The warm-up takes its queries from the far end, so the measured run meets none of them.
            self.queries = queries[::-1] if scenario.name.startswith("warmup") else queries
        else:
            self.queries = cached_queries()

    def _event(self, i: int, suffix: str = "") -> dict:
        rng = self.rng
        event = {
            "type": "transaction.created",
            "eventId": f"{self.context['run_id']}-{self.scenario.name}-{i}{suffix}",
            "memberRef": MEMBER_REF.format(rng.randrange(self.context["members"])),
            "amount": f"{rng.randint(500, 25_000) / 100:.2f}",
            "currency": CURRENCY,
        }
        pick = rng.random()
        code, mccs = self.categories[rng.randrange(len(self.categories))]
        if pick < 0.4:
            event["category"] = code
        elif pick < 0.7:
            event["mcc"] = rng.choice(mccs)
        return event

    def _bearer(self, i: int) -> dict:
        return {"Authorization": f"Bearer {self.tokens[i % len(self.tokens)]}"}

    def build(self, i: int) -> tuple[str, str, dict, bytes | None, int]:
        kind = self.scenario.kind
        if kind == "mixed":
            kind = MIXED[i % len(MIXED)]
        if kind == "baseline":
            return "POST", "/_bench/baseline", {}, None, 1
        if kind == "event":
            return "POST", "/api/v1/events", {**self.api_key, **JSON}, json.dumps(self._event(i)).encode(), 1
        if kind == "batch":
            size = self.scenario.per_request
            events = [self._event(i, f".{n}") for n in range(size)]
            body = json.dumps({"events": events}).encode()
            return "POST", "/api/v1/events:batch", {**self.api_key, **JSON}, body, size
        if kind == "me":
            return "GET", "/api/v1/me", self._bearer(self.rng.randrange(len(self.tokens))), None, 1
        if kind in ("search-uncached", "search-cached"):
            query = self.queries[i % len(self.queries)]
            path = f"/api/v1/catalog/search?{urlencode({'q': query, 'pageSize': 20})}"
            return "GET", path, self.api_key, None, 1
        if kind == "redemption":
            items = self.context["redeem_items"]
            key = f"{self.context['run_id']}-{self.scenario.name}-{i}"
            headers = {**self._bearer(i), **JSON, "Idempotency-Key": key}
            return "POST", "/api/v1/redemptions", headers, json.dumps({"itemId": items[i % len(items)]}).encode(), 1
        raise ValueError(f"unknown request kind {kind!r}")


class Tally:
    def __init__(self):
        self.latencies: list[float] = []  # ms, answered requests (any status)
        self.units = 0  # what succeeded (events applied, requests answered 2xx)
        self.statuses: Counter = Counter()
        self.headers: Counter = Counter()  # X-Cache hits and misses
        self.failures: list[str] = []  # a few bodies of what failed
        self.shed = 0  # open loop: requests not sent because too many were unanswered
        self.t0 = time.perf_counter()
        # When the platform was slow: (second of the run, ms, method and path) of each request
        # answered after SLOW_MS, and the second of each shed request (the first 500 of each).
        self.slow: list[tuple[float, float, str]] = []
        self.shed_at: list[float] = []

    def slow_add(self, started: float, took_ms: float, what: str) -> None:
        if took_ms >= SLOW_MS and len(self.slow) < 500:
            self.slow.append((round(started - self.t0, 1), round(took_ms), what))

    def add(self, status: int, took_ms: float, units: int, detail: str = "") -> None:
        self.latencies.append(took_ms)
        self.statuses[status] += 1
        self.units += units
        if detail and len(self.failures) < 5:
            self.failures.append(detail)


async def _send(session: aiohttp.ClientSession, base: str, requests: Requests, i: int, tally: Tally, started: float):
    method, path, headers, body, units = requests.build(i)
    try:
        await _exchange(session, base, requests, tally, started, method, path, headers, body, units)
    finally:
        tally.slow_add(started, (time.perf_counter() - started) * 1000, f"{method} {path.split('?')[0]}")


async def _exchange(session, base, requests, tally, started, method, path, headers, body, units) -> None:
    try:
        async with session.request(method, base + path, headers=headers, data=body) as response:
            payload = await response.read()
            status = response.status
            if "X-Cache" in response.headers:
                tally.headers[f"X-Cache {response.headers['X-Cache']}"] += 1
    except (aiohttp.ClientError, TimeoutError) as exc:
        tally.add(0, (time.perf_counter() - started) * 1000, 0, f"{type(exc).__name__}: {exc}")
        return
    took = (time.perf_counter() - started) * 1000
    if not 200 <= status < 300:
        tally.add(status, took, 0, f"{status} {path}: {payload[:300].decode(errors='replace')}")
        return
    if requests.scenario.kind == "batch":
        summary = json.loads(payload)["summary"]
        detail = "" if summary["applied"] == units else f"batch summary {summary}"
        tally.add(status, took, summary["applied"], detail)
        return
    tally.add(status, took, units)


async def _closed(session, base, requests: Requests, scenario: Scenario, tally: Tally) -> None:
    counter = iter(range(10**12))
    # A count (burst) stops at its total, or at its duration if it has one and that comes first.
    deadline = time.perf_counter() + scenario.duration if scenario.duration else None
    limit = scenario.total if scenario.mode == "count" else None

    async def connection() -> None:
        while True:
            i = next(counter)
            if limit is not None and i >= limit:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            await _send(session, base, requests, i, tally, time.perf_counter())

    await asyncio.gather(*(connection() for _ in range(scenario.concurrency)))


async def _open(session, base, requests: Requests, scenario: Scenario, tally: Tally) -> float:
    """Start request i at t0 + i / rate; returns how late the latest start was (ms). A request
    due while `concurrency` are still unanswered is not sent but counted as shed: a platform
    that falls behind gets a bounded queue, not minutes of backlog."""
    total = int(scenario.rate * scenario.duration)
    t0 = time.perf_counter() + 0.05
    tasks: set[asyncio.Task] = set()
    late = 0.0
    for i in range(total):
        scheduled = t0 + i / scenario.rate
        wait = scheduled - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            late = max(late, -wait * 1000)
        if len(tasks) >= scenario.concurrency:
            tally.shed += 1
            if len(tally.shed_at) < 500:
                tally.shed_at.append(round(scheduled - tally.t0, 1))
            continue
        task = asyncio.create_task(_send(session, base, requests, i, tally, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return late


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted samples."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


async def run(context: dict, scenario: Scenario) -> dict:
    requests = Requests(context, scenario)
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=max(scenario.concurrency, 1), force_close=False, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=600)  # a batch of 500 at a slow rate takes minutes
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    late = 0.0
    async with aiohttp.ClientSession(context["base_url"], connector=connector, timeout=timeout) as session:
        started = tally.t0 = time.perf_counter()
        if scenario.mode == "open":
            late = await _open(session, "", requests, scenario, tally)
        else:
            await _closed(session, "", requests, scenario, tally)
        elapsed = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_SELF)
    ordered = sorted(tally.latencies)
    return {
        "name": scenario.name,
        "requests": len(ordered),
        "units": tally.units,
        "elapsed": elapsed,
        "throughput": tally.units / elapsed if elapsed else 0.0,
        "requests_per_second": len(ordered) / elapsed if elapsed else 0.0,
        "p50": percentile(ordered, 0.50),
        "p95": percentile(ordered, 0.95),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else float("nan"),
        "statuses": {str(status): n for status, n in sorted(tally.statuses.items())},
        "headers": dict(tally.headers),
        "failures": tally.failures,
        "shed": tally.shed,
        "shed_at": tally.shed_at,
        "slow": tally.slow,
        "latest_start_ms": late,
        "client_cpu_seconds": (used.ru_utime - cpu.ru_utime) + (used.ru_stime - cpu.ru_stime),
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    scenario = Scenario(**spec["scenario"])
    try:
        import uvloop  # a faster event loop: less of the machine spent on the client
    except ImportError:
        result = asyncio.run(run(spec["context"], scenario))
    else:
        result = uvloop.run(run(spec["context"], scenario))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
