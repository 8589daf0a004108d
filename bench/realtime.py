"""Real-time benchmark: how long from posting a qualifying event to the member's socket
holding its INCENTIVE_NOTIFICATION (seed 001 §1.5 asks for under a second), on real parts:
the API in this process, a Celery worker running the outbox relay, daphne serving /ws, Redis
as broker and channel layer. Run with `make bench` (or `bench/run.py realtime`)."""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone
from kombu import pools as kombu_pools
from rest_framework.test import APIClient

from bench.common import progress
from campaigns.models import Campaign, CampaignStats
from config.celery import app
from core.db import database_url
from rewards.models import OutboxEvent
from rewards.services import member_create, member_token_issue
from tenants.services import tenant_create

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen within 60 s") from None
            time.sleep(0.1)


def realtime_bench() -> None:
    from websockets.asyncio.client import connect

    print("realtime: event posted -> INCENTIVE_NOTIFICATION on the member's socket")
    if not settings.REDIS_URL:
        print("  skipped: needs REDIS_URL (broker and channel layer)")
        return
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "-Q", queue, "--without-gossip"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = _free_port()
    server_log = tempfile.NamedTemporaryFile(prefix="bench-daphne-", suffix=".log", delete=False)  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env={**env, "CELERY_BROKER_URL": ""},
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    saved = {key: app.conf[key] for key in ("task_always_eager", "broker_url", "task_default_queue")}
    app.conf.update(task_always_eager=False, broker_url=settings.REDIS_URL, task_default_queue=queue)
    kombu_pools.reset()
    app._pool = None
    settings.OUTBOX_RELAY_ON_COMMIT = True
    try:
        # Events the other sections wrote (they run without publishing) are not this one's to
        # publish: mark them done so the relay's backlog is only what this section posts.
        OutboxEvent.objects.filter(published_at__isnull=True).update(published_at=timezone.now())
        _wait_port(port, server, "daphne")
        tenant, issued = tenant_create(name=f"bench-realtime-{uuid.uuid4().hex[:8]}")
        campaign = Campaign.objects.create(
            tenant=tenant,
            name="bench login bonus",
            status="ACTIVE",
            start_at=timezone.now() - timedelta(days=1),
            rule_json={
                "trigger": {"eventTypes": ["action"], "actionCodes": ["app.login"]},
                "reward": {"type": "POINTS", "points": 5},
            },
        )
        CampaignStats.objects.create(campaign=campaign)
        member = member_create(tenant=tenant, external_ref="bench-member")
        token, _ = member_token_issue(member=member)
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=issued.raw)
        time.sleep(2)  # the worker's start-up

        poster = ThreadPoolExecutor(max_workers=1)  # one thread, so one database connection to close

        async def scenario() -> list[float]:
            loop = asyncio.get_running_loop()
            samples = []
            async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=["bearer", token]) as ws:
                json.loads(await asyncio.wait_for(ws.recv(), 30))  # ready
                for i in range(EVENTS):
                    body = {"type": "action", "eventId": f"login-{i}", "memberRef": member.external_ref}
                    started = time.perf_counter()
                    await loop.run_in_executor(
                        poster, lambda body=body: client.post("/api/v1/events", {**body, "actionCode": "app.login"})
                    )
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if frame["type"] == "INCENTIVE_NOTIFICATION":
                            break
                    samples.append((time.perf_counter() - started) * 1000)
                    progress("events", i + 1, EVENTS)
            return samples

        try:
            samples = sorted(asyncio.run(scenario()))
        except Exception:
            print(f"  the server's log: {server_log.name}")
            raise
        finally:
            poster.submit(lambda: connection.close()).result()  # the poster thread's own connection
            poster.shutdown()
        p95 = samples[int(len(samples) * 0.95) - 1]
        print(
            f"  post -> frame: n={len(samples)} median={statistics.median(samples):.0f} ms "
            f"p95={p95:.0f} ms max={samples[-1]:.0f} ms"
        )
    finally:
        app.conf.update(**saved)
        kombu_pools.reset()
        app._pool = None
        for process in (server, worker):
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
