"""The member demo app in a real browser: Debian's chromium, headless, driven by Playwright,
against a daphne server on the test database (HTTP and the WebSocket), a Celery worker taking
what daphne queues (fulfilment, the outbox relay) through Redis, and the sandbox fulfilment
partner over HTTP. Everything is started for each test, as in tests/integration: the tests'
cache reset flushes the Redis database, which broker and channel layer share, so nothing that
uses them may outlive a test.

Playwright never downloads a browser here: it launches CHROMIUM (/usr/bin/chromium, which
`make test` installs from Debian's packages)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from core.db import database_url
from redemptions.partners.sandbox import PartnerSandbox
from tests.integration.conftest import (  # noqa: F401 - fixtures used here
    celery_queue,
    celery_worker_process,
    process_stop,
)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def partner():
    """The sandbox fulfilment partner on a free port of 127.0.0.1."""
    sandbox = PartnerSandbox().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def demo_server_env() -> dict[str, str]:
    """More environment for the demo server (a test parametrizes it to change a setting)."""
    return {}


@pytest.fixture
def demo_server(request, tenant, celery_queue, demo_server_env, tmp_path) -> str:  # noqa: F811 - imported above
    """daphne serving config.asgi with the demo app on for `tenant`, queueing its tasks to this
    test's Celery worker; its base URL."""
    if not settings.REDIS_URL:
        pytest.fail("The browser tests need Redis (REDIS_URL): broker and channel layer.")
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": celery_queue,
        "DEMO_APP_ENABLED": "1",
        "DEMO_APP_TENANT": tenant.slug,
        "OUTBOX_RELAY_ON_COMMIT": "1",
        "REDEMPTION_FULFIL_ON_COMMIT": "1",
        "DB_CONN_MAX_AGE": "0",  # ASGI: a persistent connection per executor thread piles up
        "LOG_LEVEL": "WARNING",
        **demo_server_env,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = tmp_path / "daphne.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # The worker starts while daphne does (each takes a second or two).
        request.getfixturevalue("celery_worker_process")
        deadline = time.monotonic() + 30
        while True:
            if server.poll() is not None:
                raise RuntimeError("daphne exited:\n" + log_path.read_text())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("daphne did not listen within 30 s:\n" + log_path.read_text()) from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        process_stop(server)


@pytest.fixture
def page(demo_server, monkeypatch):
    """A fresh headless chromium page on the demo server (base URL set), in English and UTC.
    Uncaught script errors are collected on `page.script_errors`."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"No chromium at {CHROMIUM}: the browser tests drive Debian's chromium. `make test` installs it "
            "(apt-get install chromium); set CHROMIUM to use another build."
        )
    from playwright.sync_api import sync_playwright

    # Playwright's synchronous API keeps an asyncio loop running in this thread, which Django
    # takes for async code: it refuses ORM calls, and keeps the connections they open apart
    # from the thread's own. The test's queries are synchronous all the same (the servers are
    # other processes, started without this variable), so allow them, and close what they
    # opened before the loop goes (else the test database cannot be dropped at the end).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(base_url=demo_server, locale="en-US", timezone_id="UTC")
            context.set_default_timeout(15_000)
            new_page = context.new_page()
            new_page.script_errors = []
            new_page.on("pageerror", lambda error: new_page.script_errors.append(str(error)))
            yield new_page
        finally:
            browser.close()
            connections.close_all()
