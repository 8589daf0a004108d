"""Real services for integration tests: a Celery worker (a separate process on the test
database, fed through Redis, on a queue of its own so that parallel runs never take each
other's tasks) and a daphne ASGI server."""

import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from kombu import pools as kombu_pools

from config.celery import app
from core.db import database_url

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    return database_url(connection.settings_dict)


def celery_worker_start(queue: str, **extra_env: str) -> subprocess.Popen:
    """Start `celery worker` on the test database, taking tasks from `queue`; ready when it returns."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue,  # what the worker queues itself comes back to it
        "LOG_LEVEL": "INFO",  # the worker says "ready." at INFO
        "REDEMPTION_PARTNER_ALLOW_PRIVATE_TARGETS": "1",  # the sandbox partner is on 127.0.0.1
        **extra_env,
    }
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", queue),
            *("--without-heartbeat", "--without-gossip", "--without-mingle", "--loglevel=INFO"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_ready(worker)
    return worker


def process_stop(process: subprocess.Popen, *, grace: float = 10) -> None:
    """Ask a child process (a worker, a server) to stop; kill it if it takes longer than `grace`."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def celery_worker_stop(worker: subprocess.Popen) -> None:
    process_stop(worker, grace=20)


@pytest.fixture
def celery_queue(transactional_db):
    """A broker queue of this test's own (Redis), with this process's tasks routed to it;
    start workers on it with `celery_worker_start(queue)`."""
    if not settings.REDIS_URL:
        pytest.fail("The integration tests need Redis (REDIS_URL) as the Celery broker.")
    queue = f"it-{uuid.uuid4().hex[:12]}"
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url", "task_default_queue")}
    app.conf.update(task_always_eager=False, broker_url=settings.REDIS_URL, task_default_queue=queue)
    _pools_reset()
    try:
        yield queue
    finally:
        app.conf.update(**saved)
        _pools_reset()


@pytest.fixture
def celery_worker_process(celery_queue):
    """A `celery worker` against the test database, taking this test's tasks."""
    worker = celery_worker_start(celery_queue)
    try:
        yield worker
    finally:
        celery_worker_stop(worker)


def _pools_reset() -> None:
    """Drop connections made under the previous broker settings; the next send makes new ones."""
    kombu_pools.reset()  # kombu keeps producer pools per connection, process-wide
    app._pool = None
    app.amqp._producer_pool = None


def _wait_ready(worker: subprocess.Popen, timeout: float = 60) -> None:
    """Wait for the worker's "ready" line; its output is drained the whole time by a thread,
    so a chatty worker never blocks on a full pipe."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in worker.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if worker.poll() is not None:
                raise RuntimeError("celery worker exited:\n" + "".join(seen)) from None
            continue
        seen.append(line)
        if "ready." in line:
            return
    worker.kill()
    raise RuntimeError("celery worker did not become ready:\n" + "".join(seen))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daphne_url(transactional_db, settings):
    """`python -m daphne` serving config.asgi on the test database, with Redis as channel layer."""
    if not settings.REDIS_URL:
        pytest.fail("The WebSocket integration test needs Redis (REDIS_URL) as the channel layer.")
    settings.OUTBOX_RELAY_ON_COMMIT = False
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": settings.REDIS_URL}
    env.pop("CELERY_BROKER_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise RuntimeError("daphne exited:\n" + server.stderr.read())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("daphne did not listen within 30 s") from None
                time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        process_stop(server)
