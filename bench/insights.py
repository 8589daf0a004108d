"""Insights benchmarks (`make bench BENCH=insights`): what the change feed's trigger costs a
ledger write, how fast the spending rollups apply events, and what reading a member's insights
and an export page cost."""

import statistics
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from bench.common import progress, report, timed
from insights.rollups import rollups_update
from rewards.api.events import event_validate
from rewards.categories import category_create, multiplier_create
from rewards.earning import event_ingest
from rewards.services import member_create, member_token_issue, points_adjust
from tenants.services import tenant_create

MEMBERS = 200
EVENTS = 5000
BLOCKS = 10
BLOCK = 100


def _triggers(enabled: bool) -> None:
    verb = "ENABLE" if enabled else "DISABLE"
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE rewards_transfer {verb} TRIGGER rewards_transfer_tx_id")


def trigger_cost(tenant, members) -> None:
    """Credits with and without the tx_id trigger, in alternating blocks so that whatever else
    the machine does falls on both alike."""
    with_trigger, without = [], []
    for block in range(BLOCKS * 2):
        enabled = block % 2 == 0
        _triggers(enabled)
        for i in range(BLOCK):
            started = time.perf_counter()
            points_adjust(tenant=tenant, member=members[i % len(members)], points=1, reason="bench", actor="bench")
            (with_trigger if enabled else without).append((time.perf_counter() - started) * 1000)
        progress("credits with and without the trigger", block + 1, BLOCKS * 2)
    _triggers(True)
    report("credit with the tx_id trigger", with_trigger)
    report("credit without it", without)
    ratio = statistics.median(with_trigger) / statistics.median(without)
    print(f"  trigger's share: median with/without = {ratio:.3f}")


def insights_bench() -> None:
    if connection.vendor != "postgresql":
        print("insights: PostgreSQL only")
        return
    print("insights: change feed, rollups, member insights, export")
    settings.INSIGHTS_ROLLUPS_ON_READ = False  # a worker's beat applies events, not the reader
    tenant, issued = tenant_create(name=f"bench-insights-{uuid.uuid4().hex[:8]}")
    members = [member_create(tenant=tenant, external_ref=f"i-{i}") for i in range(MEMBERS)]
    for code, factor in (("dining", Decimal(3)), ("grocery", Decimal(2)), ("travel", None)):
        category = category_create(tenant=tenant, code=code, name=code.title())
        if factor:
            multiplier_create(tenant=tenant, category=category, factor=factor)

    trigger_cost(tenant, members)

    rollups_update()  # what earlier sections left behind
    now = timezone.now()
    for i in range(EVENTS):
        event = {
            "type": "transaction.created",
            "event_id": f"ins-{i}",
            "member_ref": f"i-{i % MEMBERS}",
            "amount": f"{10 + i % 90}.25",
            "currency": tenant.currency,
            "category": ("dining", "grocery", "travel", None)[i % 4],
            "occurred_at": (now - timedelta(days=i % 180)).isoformat(),
        }
        event_ingest(tenant=tenant, event=event_validate({k: v for k, v in event.items() if v is not None}))
        if (i + 1) % 500 == 0:
            progress("events posted", i + 1, EVENTS)
    started = time.perf_counter()
    applied = rollups_update(batch=1000)
    elapsed = time.perf_counter() - started
    print(f"  rollups: {applied} events applied in {elapsed:.2f} s = {applied / elapsed:,.0f} events/s")

    token, _ = member_token_issue(member=members[0])
    app = APIClient()
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    report(
        "GET /me/insights, cold (a new window each time)",
        timed(
            lambda i: app.get("/api/v1/me/insights", {"period": "month", "to": f"2030-01-{1 + i % 28:02d}"}),
            100,
            "cold",
        ),
    )
    report("GET /me/insights, cached", timed(lambda i: app.get("/api/v1/me/insights"), 200, "cached"))

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=issued.raw)
    report(
        "GET /exports/transfers, 1,000 a page",
        timed(lambda i: client.get("/api/v1/exports/transfers", {"limit": 1000}), 30, "export pages"),
    )
