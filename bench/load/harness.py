"""The load benchmark (`make bench BENCH=load`): the platform in its production shape under
load, measured from the client side.

On the throwaway bench database (bench/run.py) it loads one realistic tenant
(bench.load.loader), starts the platform as subprocesses (a multi-process HTTP server with
DEBUG off and a Celery worker on Redis, both on the bench database, a sandbox partner in
this process), drives each scenario (bench.load.scenarios) from a separate load-generator
process (bench.load.generator), checks the ledger and stock invariants once the worker has
drained, and watches the server's and the worker's memory. Prints one table and writes it
to bench/results/load-<UTC timestamp>.json.

    BENCH_SERVER           gunicorn (default: WSGI, gthread workers) or uvicorn (ASGI workers)
    BENCH_SERVER_WORKERS   server processes (4)
    BENCH_SERVER_THREADS   threads per gunicorn worker (4)
    BENCH_WORKER_CONCURRENCY  Celery prefork processes (2)
    BENCH_DRAIN_SECONDS    the longest to wait for the worker to drain (240)
    BENCH_MEMORY_INTERVAL  seconds between memory samples (30)
    BENCH_LOAD_MEMBERS, BENCH_LOAD_ITEMS  the tenant's size (100,000 each)
    BENCH_LOAD_CAMPAIGNS   active campaigns (3; fewer to see what they cost)
    BENCH_LOG_LEVEL        the server's and the worker's log level (WARNING)
    plus the scenario knobs in bench.load.scenarios.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from platform import machine, system

import psutil
import redis
from celery import Celery
from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from bench.load import scenarios as plan
from bench.load.loader import MEMBERS, load
from catalog.models import Item, StockMovement
from core.api.baseline import baseline_tables_create
from core.db import database_url
from redemptions.models import Redemption
from redemptions.partners.sandbox import PartnerSandbox
from rewards.models import Account, EarnedLot, Member, OutboxEvent
from rewards.selectors import ledger_verify
from rewards.services import member_token_issue

ROOT = Path(__file__).resolve().parent.parent.parent
RESULTS = ROOT / "bench" / "results"
TOKENS = 4_000


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The platform's processes ------------------------------------------------------------------


class Platform:
    """The HTTP server and the Celery worker, each in its own process group so that stopping
    it stops every process it forked."""

    def __init__(self, *, logs: Path):
        self.kind = os.environ.get("BENCH_SERVER", "gunicorn")
        if self.kind not in ("gunicorn", "uvicorn"):
            raise SystemExit(f"BENCH_SERVER must be gunicorn or uvicorn, not {self.kind!r}")
        self.workers = _env_int("BENCH_SERVER_WORKERS", 4)
        self.threads = _env_int("BENCH_SERVER_THREADS", 4) if self.kind == "gunicorn" else 1
        self.worker_concurrency = _env_int("BENCH_WORKER_CONCURRENCY", 2)
        self.port = _free_port()
        self.queue = f"bench-load-{uuid.uuid4().hex[:8]}"
        self.node = f"{self.queue}@bench"
        self.logs = logs
        self.server: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        if self.kind == "gunicorn":
            server = f"gunicorn (WSGI) {self.workers} gthread workers x {self.threads} threads"
        else:
            server = f"uvicorn (ASGI) {self.workers} workers"
        return f"{server}; celery worker prefork x {self.worker_concurrency} on Redis"

    def env(self) -> dict:
        extra = {}
        if self.kind == "uvicorn":
            # Under ASGI each sync view runs on an executor thread, and a persistent connection is
            # per thread: with DB_CONN_MAX_AGE they pile up until PostgreSQL refuses new clients
            # ("too many clients already"). A connection per request is what works there.
            extra["DB_CONN_MAX_AGE"] = "0"
        return {
            **os.environ,
            **extra,
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": settings.REDIS_URL,
            "CELERY_BROKER_URL": settings.REDIS_URL,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "DEBUG": "0",
            "BENCH_BASELINE_ENDPOINT": "1",
            # The scenarios post hundreds of events a second with one API key, and the burst has
            # members redeem far faster than a person would: the rate limits are measured apart.
            "RATE_LIMITS_ENABLED": "0",
            "REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS": "1",  # the sandbox partner is on 127.0.0.1
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(self, command: list[str], log_name: str) -> subprocess.Popen:
        log = (self.logs / log_name).open("ab")
        try:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            log.close()

    def start(self) -> None:
        if self.kind == "gunicorn":
            command = [
                sys.executable, "-m", "gunicorn", "config.wsgi:application",
                "--worker-class", "gthread", "--workers", str(self.workers), "--threads", str(self.threads),
                "--bind", f"127.0.0.1:{self.port}", "--backlog", "2048", "--keep-alive", "30",
                "--timeout", "120", "--log-level", "warning",
            ]  # fmt: skip
        else:
            command = [
                sys.executable, "-m", "uvicorn", "config.asgi:application", "--workers", str(self.workers),
                "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log", "--log-level", "warning",
                "--lifespan", "off",
            ]  # fmt: skip
        self.server = self._spawn(command, "server.log")
        worker = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
            "--concurrency", str(self.worker_concurrency), "-Q", self.queue, "-n", self.node,
            "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
        ]  # fmt: skip
        self.worker = self._spawn(worker, "worker.log")
        self._wait_server()
        self._wait_worker()

    def _wait_server(self) -> None:
        deadline = time.monotonic() + 90
        while True:
            if self.server.poll() is not None:
                raise RuntimeError(f"the server exited; see {self.logs / 'server.log'}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not listen within 90 s") from None
                time.sleep(0.2)
        # Every worker process forked (the warm-up then has each of them load the app).
        while len(self.server_workers()) < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError("the server's workers did not start within 90 s")
            time.sleep(0.2)

    def _wait_worker(self) -> None:
        app = Celery(broker=settings.REDIS_URL)
        deadline = time.monotonic() + 90
        try:
            while not app.control.ping(destination=[self.node], timeout=1.0):
                if self.worker.poll() is not None:
                    raise RuntimeError(f"the Celery worker exited; see {self.logs / 'worker.log'}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the Celery worker did not answer a ping within 90 s")
        finally:
            app.close()

    def server_workers(self) -> list[psutil.Process]:
        with suppress(psutil.Error):
            return sorted(psutil.Process(self.server.pid).children(), key=lambda p: p.pid)
        return []

    def relay_sweep(self) -> None:
        """What beat does every 5 s in production (the benchmark runs no beat): queue one outbox
        relay, which publishes events no commit queued a relay for (the loader's own)."""
        app = Celery(broker=settings.REDIS_URL)
        try:
            app.send_task("rewards.tasks.outbox_relay", queue=self.queue)
        finally:
            app.close()

    def queue_length(self) -> int:
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            return client.llen(self.queue)
        finally:
            client.close()

    def stop(self) -> None:
        for process in (self.server, self.worker):
            if process is None or process.poll() is not None:
                continue
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Forked children that outlived their parent (its group is the parent's pid).
        for process in (self.server, self.worker):
            if process is not None:
                with suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
        with suppress(Exception):
            app = Celery(broker=settings.REDIS_URL)
            with app.connection_for_write() as conn:
                conn.default_channel.queue_delete(self.queue)
            app.close()


def _tree(pid: int) -> list[psutil.Process]:
    with suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def _rss(processes: list[psutil.Process]) -> int:
    total = 0
    for process in processes:
        with suppress(psutil.Error):
            total += process.memory_info().rss
    return total


def _cpu(processes: list[psutil.Process], *, reaped: bool = True) -> float:
    """CPU seconds of the processes, and (reaped) of their children that have exited since
    (PostgreSQL's parallel query workers, for one)."""
    total = 0.0
    for process in processes:
        with suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
            if reaped:
                total += times.children_user + times.children_system
    return total


class MemoryWatch:
    """Resident memory of the Celery worker (its main process and pool processes) and of one
    server worker process, sampled every BENCH_MEMORY_INTERVAL seconds in a thread."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.server_worker = platform.server_workers()[0]
        self.samples: list[dict] = []
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def sample(self, label: str = "") -> dict:
        row = {
            "t": round(time.monotonic() - self.started, 1),
            "label": label,
            "celery_worker_rss": _rss(_tree(self.platform.worker.pid)),
            "server_worker_rss": _rss([self.server_worker]),
        }
        self.samples.append(row)
        return row

    def _run(self) -> None:
        interval = _env_int("BENCH_MEMORY_INTERVAL", 30)
        while not self._stop.wait(interval):
            self.sample()

    def start(self) -> dict:
        first = self.sample("start")
        self._thread.start()
        return first

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.sample("end")


class WaitSampler:
    """What the bench database's sessions are doing, sampled every 0.2 s while a scenario runs
    (pg_stat_activity): on CPU, waiting for a lock, for I/O, or idle in a transaction (the
    application holding a transaction open between statements). The dominant one names the
    database-side limit."""

    QUERY = """
        SELECT CASE
            WHEN state = 'idle in transaction' THEN 'idle in transaction'
            WHEN wait_event_type IS NULL THEN 'CPU'
            WHEN wait_event_type = 'Lock' THEN 'Lock:' || wait_event
            ELSE wait_event_type
        END, count(*)
        FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND state NOT IN ('idle')
            AND backend_type = 'client backend'
        GROUP BY 1
    """

    def __init__(self):
        self.counts: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.2):
                with connection.cursor() as cursor:
                    cursor.execute(self.QUERY)
                    for what, n in cursor.fetchall():
                        self.counts[what] += n
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> "WaitSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {what: n / total for what, n in self.counts.most_common()} if total else {}


# Running scenarios ---------------------------------------------------------------------------


def _postgres() -> list[psutil.Process]:
    """Every PostgreSQL process on the machine (the bench database's backends among them)."""
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] in ("postgres", "postmaster"):
            found.append(process)
    return found


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0)


def _generate(context: dict, scenario: plan.Scenario, platform: Platform, workdir: Path) -> dict:
    """One scenario from a load-generator process; its result, with where the machine's CPU
    went meanwhile (in cores: server, worker, PostgreSQL, load generator, anything else) and
    what the database sessions were doing."""
    spec = workdir / f"{scenario.name}.json"
    spec.write_text(json.dumps({"context": context, "scenario": scenario.as_dict()}))
    server, worker, postgres = _tree(platform.server.pid), _tree(platform.worker.pid), _postgres()
    harness = [psutil.Process()]  # without its reaped children: the load generator counts its own
    before = (
        _cpu(server),
        _cpu(worker),
        _cpu(postgres),
        _cpu(harness, reaped=False),
        _busy_seconds(),
        time.monotonic(),
    )
    limit = (scenario.duration or 600) + 600
    with WaitSampler() as waits:
        done = subprocess.run(
            [sys.executable, "-m", "bench.load.generator", str(spec)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed on {scenario.name}:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    server_s, worker_s, postgres_s, harness_s = (
        _cpu(server) - before[0],
        _cpu(worker) - before[1],
        _cpu(postgres) - before[2],
        _cpu(harness, reaped=False) - before[3],
    )
    busy, wall = _busy_seconds() - before[4], time.monotonic() - before[5]
    client_s = result["client_cpu_seconds"]
    result["server_cpu_seconds"] = server_s
    result["worker_cpu_seconds"] = worker_s
    result["server_cpu_ms_per_request"] = server_s * 1000 / result["requests"] if result["requests"] else None
    result["cores_used"] = {
        "server": server_s / wall,
        "worker": worker_s / wall,
        "postgresql": postgres_s / wall,
        "load generator": client_s / wall,
        "other": max(0.0, busy - server_s - worker_s - postgres_s - client_s - harness_s) / wall,
    }
    result["database_sessions"] = waits.shares()
    result["scenario"] = scenario.as_dict()
    return result


def _quiesce(platform: Platform, seconds: int = 90) -> None:
    """Before the next scenario: wait until the server and the worker have finished what the
    last one left (requests still running, queued tasks), so it does not share the machine."""
    deadline = time.monotonic() + seconds
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND state <> 'idle' AND backend_type = 'client backend'"
    )
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(query)
            busy = cursor.fetchone()[0]
        if not busy and not platform.queue_length():
            return
        time.sleep(0.5)
    print(f"  (the platform was still busy with the last scenario's work after {seconds} s; going on)")


def _not_ok(result: dict) -> int:
    return sum(n for status, n in result["statuses"].items() if not status.startswith("2")) + result["shed"]


def _line(result: dict) -> str:
    unit = result["scenario"]["unit"]
    bad = {status: n for status, n in result["statuses"].items() if not status.startswith("2")}
    extra = f", not 2xx: {bad}" if bad else ""
    extra += f", shed (platform behind): {result['shed']}" if result["shed"] else ""
    cache = f", {result['headers']}" if result["headers"] else ""
    sessions = ", ".join(f"{what} {share:.0%}" for what, share in list(result["database_sessions"].items())[:3])
    cores = ", ".join(f"{what} {used:.2f}" for what, used in result["cores_used"].items())
    per_request = result["server_cpu_ms_per_request"]
    return (
        f"  {result['scenario']['label']}: {result['throughput']:.0f} {unit}/s, p50 {result['p50']:.1f} ms, "
        f"p95 {result['p95']:.1f} ms, p99 {result['p99']:.1f} ms (n={result['requests']}{extra}{cache})\n"
        f"    cores busy: {cores}"
        f"{f'; server CPU {per_request:.1f} ms a request' if per_request else ''}\n"
        f"    database sessions: {sessions or 'idle'}"
        f"{_slow_line(result)}"
    )


def _slow_line(result: dict) -> str:
    """When the platform was slow in an open-loop run: the 10-second windows holding requests
    answered after generator.SLOW_MS, and shed requests, with what those requests were."""
    slow, shed_at = result.get("slow") or [], result.get("shed_at") or []
    if result["scenario"]["mode"] != "open" or not (slow or shed_at):
        return ""
    windows = Counter(int(started // 10) * 10 for started, _, _ in slow)
    shed_windows = Counter(int(started // 10) * 10 for started in shed_at)
    moments = ", ".join(
        f"{start}-{start + 10} s: {windows[start]} slow"
        + (f", {shed_windows[start]} shed" if shed_windows[start] else "")
        for start in sorted(set(windows) | set(shed_windows))
    )
    kinds = Counter(what for _, _, what in slow).most_common(4)
    return f"\n    answered after 1 s: {len(slow)} ({', '.join(f'{what} {n}' for what, n in kinds)}); when: {moments}"


def _drain(tenant, platform: Platform) -> tuple[float, int]:
    """Wait until the worker has published every outbound event and taken every redemption to a
    final status (and its queue is empty): how long it took, and how many redemptions were
    still open at the start."""
    started = time.monotonic()
    first_open = None
    deadline = started + _env_int("BENCH_DRAIN_SECONDS", 240)
    open_statuses = [Redemption.Status.PENDING, Redemption.Status.FULFILLING]
    next_sweep = started + 5
    while True:
        unpublished = OutboxEvent.objects.filter(tenant=tenant, published_at__isnull=True).count()
        open_redemptions = Redemption.objects.filter(tenant=tenant, status__in=open_statuses).count()
        queued = platform.queue_length()
        first_open = open_redemptions if first_open is None else first_open
        print(
            f"\r  draining the worker: {unpublished} events unpublished, {open_redemptions} redemptions open, "
            f"{queued} tasks queued   ",
            end="",
            flush=True,
        )
        if not (unpublished or open_redemptions or queued):
            print()
            return time.monotonic() - started, first_open
        if unpublished and not queued and time.monotonic() >= next_sweep:
            platform.relay_sweep()
            next_sweep = time.monotonic() + 5
        if time.monotonic() > deadline:
            print("\n  the worker did not drain in time; the figures below include what is still open")
            return time.monotonic() - started, first_open
        time.sleep(1)


def _invariants(tenant, redeem_items: list[str], sandbox: PartnerSandbox) -> dict:
    report = ledger_verify(tenant=tenant)
    accounts = Account.objects.filter(tenant=tenant, member__isnull=False)
    with connection.cursor() as cursor:
        # Each member's spendable lots add up to their balance.
        cursor.execute(
            f"""
            SELECT count(*) FROM {Account._meta.db_table} a
            LEFT JOIN (
                SELECT member_id, sum(remaining) AS s FROM {EarnedLot._meta.db_table}
                WHERE tenant_id = %s AND pending_until IS NULL GROUP BY member_id
            ) l ON l.member_id = a.member_id
            WHERE a.tenant_id = %s AND a.kind = %s AND a.balance <> coalesce(l.s, 0)
            """,
            [tenant.pk, tenant.pk, Account.Kind.MEMBER],
        )
        lots_mismatched = cursor.fetchone()[0]
        # Each redeemable item's stock is its opening stock plus its movements since.
        cursor.execute(
            f"""
            SELECT count(*) FROM {Item._meta.db_table} i
            WHERE i.id = ANY(%s::uuid[]) AND i.stock_quantity IS DISTINCT FROM
                (SELECT sum(m.quantity) FROM {StockMovement._meta.db_table} m WHERE m.item_id = i.id)
            """,
            [redeem_items],
        )
        stock_mismatched = cursor.fetchone()[0]
    statuses = Counter(
        dict(Redemption.objects.filter(tenant=tenant).values_list("status").annotate(n=Count("pk")).order_by())
    )
    orders = sandbox.orders()
    placed = sum(order["placed"] for order in orders.values()) if isinstance(orders, dict) else None
    return {
        "ledger_ok": report.ok,
        "ledger_balances_sum": report.balances_sum,
        "ledger_member_mismatches": len(report.member_mismatches),
        "negative_balances": accounts.filter(balance__lt=0).count(),
        "lots_not_matching_balance": lots_mismatched,
        "negative_stock": Item.objects.filter(tenant=tenant, stock_quantity__lt=0).count(),
        "stock_not_matching_movements": stock_mismatched,
        "redemptions": dict(sorted(statuses.items())),
        "partner_orders_placed": placed,
    }


# The report ------------------------------------------------------------------------------------

TARGETS = [
    # (scenario, what, check(result, baseline), wanted)
    ("events-open", "p95", lambda r, b: r["p95"] <= 50, "p95 <= 50 ms at the target rate"),
    ("events-open", "rate", lambda r, b: r["throughput"] >= 0.98 * r["scenario"]["rate"], "keeps up with 300/s"),
    ("events-closed", "ratio", lambda r, b: r["throughput"] >= 0.6 * b, "throughput >= 60% of the baseline"),
    ("batch", "throughput", lambda r, b: r["throughput"] >= 10_000, ">= 10,000 events/s"),
    ("me", "throughput", lambda r, b: r["throughput"] >= 2_000, ">= 2,000 req/s"),
    ("me", "p95", lambda r, b: r["p95"] <= 10, "p95 <= 10 ms"),
    ("search-uncached", "p95", lambda r, b: r["p95"] <= 30, "p95 <= 30 ms"),
    ("search-cached", "p95", lambda r, b: r["p95"] <= 5, "p95 <= 5 ms"),
    ("redemptions", "throughput", lambda r, b: r["throughput"] >= 300, ">= 300 req/s"),
]


def _table(results: list[dict], baseline: float) -> list[str]:
    lines = [
        f"  {'scenario':<44} {'throughput':>16} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'vs baseline':>12}"
        f" {'not ok':>7}",
    ]
    for result in results:
        scenario = result["scenario"]
        ratio = f"{result['throughput'] / baseline:.2f}" if baseline else "-"
        lines.append(
            f"  {scenario['label']:<44} {result['throughput']:>9.0f} {scenario['unit'] + '/s':<6} "
            f"{result['p50']:>8.1f} {result['p95']:>8.1f} {result['p99']:>8.1f} {ratio:>12} {_not_ok(result):>7}"
        )
    return lines


def _memory_lines(memory: dict) -> list[str]:
    lines = []
    for key, label in (("celery_worker_rss", "Celery worker (all processes)"), ("server_worker_rss", "server worker")):
        start, end = memory["start"][key], memory["end"][key]
        change = (end - start) / start * 100 if start else float("nan")
        memory[f"{key}_change_percent"] = change
        series = " ".join(f"{sample[key] / 2**20:.0f}" for sample in memory["samples"])
        lines.append(
            f"  {label} RSS: {start / 2**20:.0f} MB -> {end / 2**20:.0f} MB ({change:+.1f}%); samples MB: {series}"
        )
    return lines


# The section ---------------------------------------------------------------------------------


def load_bench() -> None:
    print("load: the platform in its production shape (server and worker processes), load from another process")
    if not settings.REDIS_URL:
        print("  skipped: needs REDIS_URL (the Celery broker, caches and limit counters)")
        return

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupted)
    # This process only loads and checks; publishing is the worker's (a section before may have
    # switched it on here).
    relay = settings.OUTBOX_RELAY_ON_COMMIT
    settings.OUTBOX_RELAY_ON_COMMIT = False
    logs = Path(tempfile.mkdtemp(prefix="bench-load-logs-"))
    keep_logs = False
    try:
        with ExitStack() as stack:  # everything started is stopped on the way out, whatever happened
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-load-")))
            try:
                _run(stack, workdir, logs)
            except BaseException:
                keep_logs = True
                raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        settings.OUTBOX_RELAY_ON_COMMIT = relay
        if keep_logs:
            print(f"\n  the server's and the worker's logs are kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)


def _run(stack: ExitStack, workdir: Path, logs: Path) -> None:
    started = time.monotonic()
    baseline_tables_create()
    # Events the other sections wrote (they run without publishing) are not this worker's to publish.
    OutboxEvent.objects.filter(published_at__isnull=True).update(published_at=timezone.now())
    sandbox = PartnerSandbox().start()
    stack.callback(sandbox.stop)

    loaded = load(partner_url=sandbox.url)
    tenant = loaded.tenant
    print(f"  loaded in {loaded.seconds:.0f} s")
    saved_ttl = settings.MEMBER_TOKEN_TTL
    settings.MEMBER_TOKEN_TTL = timedelta(hours=3)  # outlives a long soak
    try:
        members = Member.objects.filter(tenant=tenant).order_by("external_ref")[:TOKENS]
        tokens = [member_token_issue(member=member)[0] for member in members]
    finally:
        settings.MEMBER_TOKEN_TTL = saved_ttl

    platform = Platform(logs=logs)
    stack.callback(platform.stop)
    print(f"  starting {platform.describe()}")
    platform.start()
    context = {
        "base_url": platform.base_url,
        "api_key": loaded.api_key,
        "tokens": tokens,
        "members": MEMBERS,
        "redeem_items": loaded.redeem_items,
        "run_id": uuid.uuid4().hex[:8],
        "search_seed": 20261216,
    }

    for scenario in plan.warmup():
        _generate(context, scenario, platform, workdir)
    _quiesce(platform)
    print("  warmed up: every server worker has served every kind of request")
    memory = MemoryWatch(platform)
    memory.start()

    results = []
    for scenario in plan.scenarios():
        if scenario.name != "redemptions":  # the redemptions' fulfilment is measured in the drain below
            _quiesce(platform)
        result = _generate(context, scenario, platform, workdir)
        results.append(result)
        print(_line(result))
        for failure in result["failures"][:2]:
            print(f"    e.g. {failure}")

    drained, still_open = _drain(tenant, platform)
    rate = f"; {still_open} redemptions were still open, {still_open / drained:.0f}/s" if still_open else ""
    print(f"  worker drained in {drained:.0f} s{rate}")
    invariants = _invariants(tenant, loaded.redeem_items, sandbox)
    invariants.update(drain_seconds=drained, redemptions_open_after_burst=still_open)
    print(
        f"  invariants: ledger_verify ok={invariants['ledger_ok']}, negative balances "
        f"{invariants['negative_balances']}, lots != balance {invariants['lots_not_matching_balance']}, "
        f"negative stock {invariants['negative_stock']}, stock != movements "
        f"{invariants['stock_not_matching_movements']}"
    )
    print(f"  redemptions by status: {invariants['redemptions']}; partner orders placed: "
          f"{invariants['partner_orders_placed']}")  # fmt: skip

    soak = plan.soak()
    if soak is not None:
        _quiesce(platform)
        result = _generate(context, soak, platform, workdir)
        print(_line(result))
        results.append(result)
        # The run ends on the soak's traffic: the invariants are checked again once it is drained.
        _drain(tenant, platform)
        invariants.update(_invariants(tenant, loaded.redeem_items, sandbox))
        after = {k: invariants[k] for k in ("ledger_ok", "negative_balances", "lots_not_matching_balance")}
        print(f"  invariants after the soak: {after}")
    end = memory.stop()
    memory_report = {"start": memory.samples[0], "end": end, "samples": memory.samples}

    verdicts = _report(results, invariants, memory_report, platform, loaded.seconds, time.monotonic() - started)
    if soak is not None and os.environ.get("BENCH_SOAK_STRICT"):
        _soak_verdict(by_name={r["name"]: r for r in results}, verdicts=verdicts)


def _soak_verdict(*, by_name: dict, verdicts: list[dict]) -> None:
    """`make soak`: 0 errors in the soak, memory flat, invariants intact, or a failing exit."""
    soak = by_name["soak"]
    errors = _not_ok(soak)
    kept = {v["scenario"]: v["met"] for v in verdicts if v["what"] in ("memory", "invariants")}
    print(
        f"  soak: {soak['requests']} requests, {errors} errors; "
        + ", ".join(f"{k} {'ok' if ok else 'FAILED'}" for k, ok in kept.items())
    )
    if errors or not all(kept.values()):
        raise SystemExit("soak FAILED")
    print("  soak passed")


def _report(results, invariants, memory, platform: Platform, load_seconds: float, total_seconds: float) -> list:
    by_name = {result["name"]: result for result in results}
    baseline = by_name["baseline"]["throughput"] if "baseline" in by_name else 0.0
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0].split()[0]
    machine = (
        f"machine: {os.cpu_count()} cores ({platform_name()}), PostgreSQL {pg}; server: {platform.describe()}; "
        f"load generator: aiohttp, one process"
    )
    print()
    print(f"  {machine}")
    for line in _table(results, baseline):
        print(line)
    memory_lines = _memory_lines(memory)
    for line in memory_lines:
        print(line)

    invariants_ok = (
        invariants["ledger_ok"]
        and not invariants["negative_balances"]
        and not invariants["lots_not_matching_balance"]
        and not invariants["negative_stock"]
        and not invariants["stock_not_matching_movements"]
    )
    verdicts = []
    for name, what, check, wanted in TARGETS:
        if name in by_name and (what != "ratio" or baseline):
            met = bool(check(by_name[name], baseline))
            verdicts.append({"scenario": name, "what": what, "target": wanted, "met": met})
    verdicts.append(
        {"scenario": "ledger and stock", "what": "invariants", "target": "intact after the run", "met": invariants_ok}
    )
    for key in ("celery_worker_rss", "server_worker_rss"):
        change = memory[f"{key}_change_percent"]
        verdicts.append({"scenario": key, "what": "memory", "target": "flat within 10%", "met": abs(change) <= 10})
    print("  targets:")
    for v in verdicts:
        print(f"    {v['scenario']} {v['target']}: {'met' if v['met'] else 'MISSED'}")
    print(f"  the section took {total_seconds / 60:.1f} min (loading {load_seconds:.0f} s)")

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"load-{stamp}.json"
    path.write_text(
        json.dumps(
            {
                "machine": {
                    "cores": os.cpu_count(),
                    "platform": platform_name(),
                    "postgresql": pg,
                    "line": machine,
                },
                "server": {
                    "kind": platform.kind,
                    "workers": platform.workers,
                    "threads": platform.threads,
                    "celery_concurrency": platform.worker_concurrency,
                },
                "load_seconds": load_seconds,
                "total_seconds": total_seconds,
                "baseline_throughput": baseline,
                "scenarios": [
                    {**result, "ratio_to_baseline": result["throughput"] / baseline if baseline else None}
                    for result in results
                ],
                "invariants": invariants,
                "memory": memory,
                "targets": verdicts,
            },
            indent=2,
            default=str,
        )
    )
    print(f"  written to {path.relative_to(ROOT)}")
    return verdicts


def platform_name() -> str:
    return f"{system()} {machine()}"
