"""Reading the analytics export as a warehouse loader would, for tests.

A page holds only rows of transactions older than the oldest one still running anywhere on
the PostgreSQL server, and other test runs share that server: a test that needs its own
commits on the next page first waits for them to settle (`settle`), rather than assuming no
one else has a transaction open.
"""

import json
import time
from dataclasses import dataclass

from django.db import connection

SETTLE_DEADLINE_S = 600


@dataclass(frozen=True)
class Page:
    rows: list[dict]
    cursor: str  # X-Next-Cursor
    has_more: bool
    link: str | None


def read_page(client, feed: str, *, cursor: str = "", limit: int | None = None) -> Page:
    params = {}
    if cursor:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    response = client.get(f"/api/v1/exports/{feed}", params)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-ndjson", response["Content-Type"]
    body = response.content.decode()
    # JSON Lines: every line one JSON object, each ending in a newline, nothing else.
    assert body == "" or body.endswith("\n"), body[-200:]
    rows = [json.loads(line) for line in body.splitlines()]
    assert all(isinstance(row, dict) for row in rows)
    assert response["X-Has-More"] in {"true", "false"}
    return Page(rows, response["X-Next-Cursor"], response["X-Has-More"] == "true", response.get("Link"))


def settle() -> None:
    """Wait until every transaction that began before this call has finished, so that what
    this test committed is on the export's next pages."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        (mine,) = cursor.fetchone()
    deadline = time.monotonic() + SETTLE_DEADLINE_S
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            (horizon,) = cursor.fetchone()
        if horizon > mine:
            return
        assert time.monotonic() < deadline, f"a transaction older than {mine} is still open on the server"
        time.sleep(0.05)


def drain(client, feed: str, *, cursor: str = "", limit: int | None = None) -> tuple[list[dict], str, int]:
    """Every row ready after `cursor`, page by page until a page says there is no more; the
    rows, the cursor to read on from, and how many pages it took."""
    rows: list[dict] = []
    pages = 0
    while True:
        page = read_page(client, feed, cursor=cursor, limit=limit)
        pages += 1
        rows += page.rows
        cursor = page.cursor
        if not page.has_more:
            return rows, cursor, pages
