"""The analytics export (`GET /api/v1/exports/transfers`, `/api/v1/exports/incentives`): JSON
Lines after a cursor, read page by page while writes keep arriving, yields every row exactly
once and in order; a transaction that commits late lands after the cursor, not behind it.

Every test commits (transaction=True): a page holds only rows of finished transactions, so
rows written inside a test's own open transaction would never be on it.
"""

import base64
import threading
from datetime import UTC
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from campaigns.models import CouponCode, CouponPool, Incentive
from core.changefeed import Cursor
from core.rls import WALL_QUERIES
from rewards.models import Transfer
from rewards.selectors import member_get
from rewards.services import points_adjust
from tests.campaigns.helpers import action, action_rule, campaign_make, purchase
from tests.conftest import client_for_key
from tests.core.shapes import assert_error
from tests.factories import MemberFactory
from tests.insights.export_helpers import drain, read_page, settle

pytestmark = pytest.mark.django_db(transaction=True)

HOLD_TIMEOUT_S = 60


def post_event(client, body: dict) -> dict:
    response = client.post("/api/v1/events", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def coupon_campaign(tenant, *, codes: int) -> None:
    """A campaign giving each `app.share` one of `codes` coupon codes (C0, C1, ...)."""
    pool = CouponPool.objects.create(tenant=tenant, code="spring", name="Spring")
    CouponCode.objects.bulk_create(CouponCode(tenant=tenant, pool=pool, code=f"C{i}") for i in range(codes))
    rule = {
        "trigger": {"eventTypes": ["action"], "actionCodes": ["app.share"]},
        "reward": {"type": "COUPON", "pool": "spring"},
    }
    campaign_make(tenant, name="Coupons", rule=rule)


def ids(rows: list[dict]) -> list[str]:
    return [row["id"] for row in rows]


def feed_order(model, exported_ids: list[str]) -> list[tuple[int, str]]:
    """(tx_id, pk) of the exported rows, in the order they were exported."""
    rows = model.objects.filter(pk__in=exported_ids).values_list("pk", "tx_id")
    keys = {str(pk): (tx_id, str(pk)) for pk, tx_id in rows}
    return [keys[pk] for pk in exported_ids]


# 1. A transaction that commits late ----------------------------------------------------------


def test_a_transfer_whose_transaction_commits_late_is_exported_after_the_cursor_not_skipped(tenant, api_client):
    # given two committed transfers, read: the loader holds a cursor after them
    early = MemberFactory(tenant=tenant, external_ref="early")
    for n in range(2):
        points_adjust(tenant=tenant, member=early, points=10 + n, reason="early", actor="test")
    settle()
    page = read_page(api_client, "transfers")
    assert len(page.rows) == 2 and not page.has_more
    cursor = page.cursor

    # and a transaction that inserts a transfer and stays open
    late_member = MemberFactory(tenant=tenant, external_ref="late")
    inserted, release = threading.Event(), threading.Event()
    held: dict = {}

    def hold_open():
        try:
            with transaction.atomic():
                held["transfer"] = points_adjust(
                    tenant=tenant, member=late_member, points=5, reason="late", actor="test"
                ).transfer
                inserted.set()
                assert release.wait(HOLD_TIMEOUT_S), "never released"
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            held["error"] = exc
            inserted.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold_open)
    holder.start()
    try:
        assert inserted.wait(HOLD_TIMEOUT_S) and "error" not in held, held.get("error")

        # when three later transfers commit while it is open
        later = []
        for n in range(3):
            member = MemberFactory(tenant=tenant, external_ref=f"later-{n}")
            later.append(points_adjust(tenant=tenant, member=member, points=1, reason="later", actor="test").transfer)

        # then the export holds them back: nothing after the cursor is ready, the cursor stays
        waiting = read_page(api_client, "transfers", cursor=cursor)
        assert waiting.rows == [] and not waiting.has_more and waiting.cursor == cursor
        # while a reader paging by created_at has already read past the open transaction's row
        naive = list(Transfer.objects.filter(tenant=tenant).order_by("created_at", "pk"))
        naive_ids = {str(t.pk) for t in naive}
        assert {str(t.pk) for t in later} <= naive_ids
        assert str(held["transfer"].pk) not in naive_ids
        naive_cursor = naive[-1].created_at
    finally:
        release.set()
        holder.join(HOLD_TIMEOUT_S)
    assert not holder.is_alive() and "error" not in held, held.get("error")
    late = Transfer.objects.get(pk=held["transfer"].pk)

    # the late row sorts before what the created_at reader already read: it would skip it for good
    assert late.created_at < naive_cursor
    assert not Transfer.objects.filter(tenant=tenant, created_at__gt=naive_cursor, pk=late.pk).exists()

    # when it has committed, the next pages from the same cursor start with it, then the later ones
    settle()
    rows, _, _ = drain(api_client, "transfers", cursor=cursor, limit=2)
    assert ids(rows) == [str(late.pk), *(str(t.pk) for t in later)]
    assert rows[0]["memberRef"] == "late" and rows[0]["amount"] == 5


# 2. Writers and a reader at once -------------------------------------------------------------

WRITERS = 4
EVENTS_MIN, EVENTS_MAX = 40, 400  # per writer: at least, and at most if the reader lags
PAGE = 7
PAGES_WHILE_WRITING = 20  # non-empty pages the reader reads before writers may stop


def test_a_reader_paging_while_writers_post_events_exports_every_transfer_and_incentive_once(
    tenant, other_tenant, api_client
):
    # given, in each tenant, a campaign that issues an incentive (and its points) for each login
    campaign_make(tenant, rule=action_rule("app.login", points=3))
    campaign_make(other_tenant, rule=action_rule("app.login", points=3))
    enough = threading.Event()
    failures: list[BaseException] = []
    written = [0] * (WRITERS + 1)

    def writer(w: int, raw_key: str):
        client = client_for_key(raw_key)
        try:
            n = 0
            while n < EVENTS_MIN or (not enough.is_set() and n < EVENTS_MAX):
                member_ref = f"w{w}-m{n % 5}"
                post_event(client, purchase(f"w{w}-p{n}", member_ref=member_ref, amount=f"{10 + n}.00"))
                if n % 3 == 0:
                    post_event(client, action(f"w{w}-a{n}", member_ref=member_ref))
                n += 1
            written[w] = n
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            failures.append(exc)
        finally:
            connection.close()

    # when four writers post purchases and logins for the tenant (and one for another tenant)
    threads = [threading.Thread(target=writer, args=(w, tenant.raw_api_key)) for w in range(WRITERS)]
    threads.append(threading.Thread(target=writer, args=(WRITERS, other_tenant.raw_api_key)))
    for thread in threads:
        thread.start()

    # while a loader reads both feeds in pages of 7
    feeds = ("transfers", "incentives")
    exported: dict[str, list[dict]] = {feed: [] for feed in feeds}
    cursors = dict.fromkeys(feeds, "")
    pages_while_writing = 0
    try:
        while any(thread.is_alive() for thread in threads[:WRITERS]):
            for feed in feeds:
                page = read_page(api_client, feed, cursor=cursors[feed], limit=PAGE)
                assert len(page.rows) <= PAGE
                exported[feed] += page.rows
                cursors[feed] = page.cursor
                pages_while_writing += bool(page.rows)
            if pages_while_writing >= PAGES_WHILE_WRITING:
                enough.set()
    finally:
        enough.set()
        for thread in threads:
            thread.join(300)
    assert not failures, failures[0]
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    # the reads really were interleaved with the writes (a page holds nothing while a transaction
    # older than the writes is open anywhere on the server: then the writers ran out first)
    assert pages_while_writing >= PAGES_WHILE_WRITING, f"only {pages_while_writing} pages with rows during writes"

    # and, once the writers stopped, drains what is left
    settle()
    for feed in feeds:
        rows, cursors[feed], _ = drain(api_client, feed, cursor=cursors[feed], limit=PAGE)
        exported[feed] += rows

    # then every transfer and incentive of the tenant was exported exactly once, in feed order
    for feed, model in (("transfers", Transfer), ("incentives", Incentive)):
        got = ids(exported[feed])
        assert len(got) == len(set(got)), f"{feed}: {len(got) - len(set(got))} rows exported twice"
        in_db = {str(pk) for pk in model.objects.filter(tenant=tenant).values_list("pk", flat=True)}
        assert set(got) == in_db, f"{feed}: missing {len(in_db - set(got))}, foreign {len(set(got) - in_db)}"
        order = feed_order(model, got)
        assert order == sorted(order)
    events = sum(written[:WRITERS])
    logins = sum(len(range(0, n, 3)) for n in written[:WRITERS])
    assert len(exported["transfers"]) == events + logins  # one per purchase, one per login
    assert len(exported["incentives"]) == logins
    # the other tenant wrote all along: none of its rows showed
    assert Transfer.objects.filter(tenant=other_tenant).count() >= EVENTS_MIN


# 3. The rows ---------------------------------------------------------------------------------


def test_transfer_rows_are_json_lines_with_both_sides_of_the_ledger(tenant, api_client):
    # given an earning (issuance -> member) and a debit adjustment (member -> adjustments)
    earned = post_event(api_client, purchase("p-1", member_ref="alice", amount="42.00"))
    alice = member_get(tenant=tenant, external_ref="alice")
    debit = points_adjust(tenant=tenant, member=alice, points=-2, reason="goodwill undone", actor="test").transfer
    settle()

    # when the loader reads the transfers
    page = read_page(api_client, "transfers")

    # then each is one line with the ledger's fields, camelCase, and both accounts
    earn = Transfer.objects.get(pk=earned["transferId"])
    assert page.rows == [
        {
            "id": str(earn.pk),
            "kind": "EARN",
            "amount": 42,
            "debitAccount": {"kind": "ISSUANCE", "memberRef": None},
            "creditAccount": {"kind": "MEMBER", "memberRef": "alice"},
            "memberRef": "alice",
            "reason": "transaction.created",
            "referenceType": "event",
            "referenceId": "p-1",
            "idempotencyKey": "event:p-1",
            "explanation": earn.explanation,
            "createdAt": earn.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "debitBalanceAfter": None,
            "creditBalanceAfter": 42,
        },
        {
            "id": str(debit.pk),
            "kind": "ADJUSTMENT",
            "amount": 2,
            "debitAccount": {"kind": "MEMBER", "memberRef": "alice"},
            "creditAccount": {"kind": "ADJUSTMENT", "memberRef": None},
            "memberRef": "alice",
            "reason": "goodwill undone",
            "referenceType": "adjustment",
            "referenceId": "test",
            "idempotencyKey": debit.idempotency_key,
            "explanation": debit.explanation,
            "createdAt": debit.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "debitBalanceAfter": 40,
            "creditBalanceAfter": None,
        },
    ]
    assert earn.explanation["awardedPoints"] == 42
    assert not page.has_more and page.link is None
    # the cursor is the last row's place in the feed (its transaction id is the database's)
    debit.refresh_from_db()
    assert Cursor.decode(page.cursor) == Cursor(debit.tx_id, str(debit.pk))


def test_incentives_read_page_by_page_following_the_link_come_once_each_in_issue_order(tenant, api_client):
    # given logins that earn points incentives and shares that win the pool's three coupons
    campaign_make(tenant, rule=action_rule("app.login", points=5))
    coupon_campaign(tenant, codes=3)
    for n in range(8):
        post_event(api_client, action(f"login-{n}", member_ref=f"m-{n}"))
        if n % 2:
            post_event(api_client, action(f"share-{n}", member_ref=f"m-{n}", code="app.share"))  # the 4th finds none
    settle()
    issued = list(Incentive.objects.filter(tenant=tenant).order_by("issued_at"))
    assert len(issued) == 8 + 3

    # when the loader reads pages of 3, following each page's Link while there is more
    rows, page = [], read_page(api_client, "incentives", limit=3)
    pages = 1
    while True:
        rows += page.rows
        if not page.has_more:
            assert page.link is None
            break
        url, rel = page.link.split("; ")
        assert rel == 'rel="next"'
        query = parse_qs(urlsplit(url.strip("<>")).query)
        assert query == {"cursor": [page.cursor], "limit": ["3"]}
        page = read_page(api_client, "incentives", cursor=query["cursor"][0], limit=int(query["limit"][0]))
        pages += 1

    # then it got every incentive once, in the order they were issued (one commit each)
    assert pages == 4
    assert ids(rows) == [str(i.pk) for i in issued]
    coupons = [row for row in rows if row["type"] == "COUPON"]
    assert sorted(row["couponCode"] for row in coupons) == ["C0", "C1", "C2"]
    first = rows[0]
    assert first == {
        "id": str(issued[0].pk),
        "campaignId": str(issued[0].campaign_id),
        "memberRef": "m-0",
        "type": "POINTS",
        "rewardCurrency": "POINTS",
        "rewardAmount": "5.0000",
        "reversedAmount": "0.0000",
        "status": "ISSUED",
        "eventId": "login-0",
        "couponCode": None,
        "explanation": issued[0].explanation,
        "issuedAt": issued[0].issued_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "reversedAt": None,
    }


def test_an_empty_page_gives_back_the_cursor_it_was_sent(tenant, api_client):
    # from the start of an empty feed: no rows, and an empty cursor (read from the start again)
    start = read_page(api_client, "transfers")
    assert (start.rows, start.cursor, start.has_more) == ([], "", False)

    member = MemberFactory(tenant=tenant)
    points_adjust(tenant=tenant, member=member, points=3, reason="x", actor="test")
    settle()
    read = read_page(api_client, "transfers")
    assert len(read.rows) == 1

    # past the end: no rows, the same cursor, no more
    again = read_page(api_client, "transfers", cursor=read.cursor)
    assert (again.rows, again.cursor, again.has_more, again.link) == ([], read.cursor, False, None)


def test_the_loader_may_ask_for_json_lines_and_still_gets_errors_as_json(tenant, api_client):
    ok = api_client.get("/api/v1/exports/transfers", HTTP_ACCEPT="application/x-ndjson")
    assert ok.status_code == 200 and ok["Content-Type"] == "application/x-ndjson"
    refused = api_client.get("/api/v1/exports/transfers?limit=0", HTTP_ACCEPT="application/x-ndjson")
    assert refused["Content-Type"] == "application/json"
    assert_error(refused, 400, attr="limit")


# 4. Refusals, tenants and members ------------------------------------------------------------


def encoded(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


UUID = "0b9f7a52-5b1e-4c1e-9d7e-2f4c4f6a0e11"
BAD_CURSORS = {
    "not base64": "not a cursor!",
    "no separator": encoded("12345"),
    "tx not a number": encoded(f"abc:{UUID}"),
    "negative tx": encoded(f"-1:{UUID}"),
    "tx beyond bigint": encoded(f"{2**63}:{UUID}"),
    "pk not a uuid": encoded("12:not-a-uuid"),
    "too long": "A" * 201,
}


@pytest.mark.parametrize("feed", ["transfers", "incentives"])
@pytest.mark.parametrize("cursor", BAD_CURSORS.values(), ids=BAD_CURSORS.keys())
def test_a_cursor_the_feed_did_not_give_out_is_a_400_on_cursor(api_client, feed, cursor):
    assert_error(api_client.get(f"/api/v1/exports/{feed}", {"cursor": cursor}), 400, attr="cursor")


@pytest.mark.parametrize("limit", ["0", "-3", "abc", "51", "1.5"])
def test_a_limit_outside_1_to_the_configured_most_is_a_400_on_limit(api_client, settings, limit):
    settings.EXPORT_PAGE_MAX = 50
    assert_error(api_client.get("/api/v1/exports/transfers", {"limit": limit}), 400, attr="limit")


def test_the_configured_most_is_allowed_and_is_the_default_when_smaller(api_client, settings):
    settings.EXPORT_PAGE_MAX = 50
    assert api_client.get("/api/v1/exports/transfers", {"limit": "50"}).status_code == 200
    assert api_client.get("/api/v1/exports/incentives").status_code == 200


def test_another_tenants_rows_never_appear_even_with_its_cursor(tenant, other_tenant, api_client, other_client):
    # given both tenants with transfers and incentives, B's written after A's
    for owner, client in ((tenant, api_client), (other_tenant, other_client)):
        campaign_make(owner, rule=action_rule("app.login", points=2))
        for n in range(3):
            post_event(client, purchase(f"p-{n}", member_ref=f"m-{n}"))
            post_event(client, action(f"a-{n}", member_ref=f"m-{n}"))
    settle()

    for feed, model in (("transfers", Transfer), ("incentives", Incentive)):
        a_rows, a_cursor, _ = drain(api_client, feed)
        b_rows, _, _ = drain(other_client, feed)
        # B reading from A's last position: a position only, it shows B's later rows, never A's
        b_after_a, _, _ = drain(other_client, feed, cursor=a_cursor)

        a_ids = {str(pk) for pk in model.objects.filter(tenant=tenant).values_list("pk", flat=True)}
        b_ids = {str(pk) for pk in model.objects.filter(tenant=other_tenant).values_list("pk", flat=True)}
        assert set(ids(a_rows)) == a_ids and len(a_rows) == len(a_ids)
        assert set(ids(b_rows)) == b_ids and len(b_rows) == len(b_ids)
        assert set(ids(b_after_a)) == b_ids


def test_a_member_token_is_refused_and_no_credentials_are_unauthenticated(member, member_client, client):
    points_adjust(tenant=member.tenant, member=member, points=3, reason="x", actor="test")
    settle()
    for feed in ("transfers", "incentives"):
        assert_error(member_client.get(f"/api/v1/exports/{feed}"), 403, code="permission_denied")
        assert_error(client.get(f"/api/v1/exports/{feed}"), 401, code="not_authenticated")


# 5. Cost -------------------------------------------------------------------------------------


# The API key with its tenant, and one page query joined to what the rows name (the key's
# last use is written at most every few minutes, and was when the setup posted events).
QUERIES_PER_PAGE = 2 + WALL_QUERIES  # and the tenant scope of row-level security


def queries_for(client, feed: str, limit: int) -> tuple[list[str], int]:
    with CaptureQueriesContext(connection) as captured:
        page = read_page(client, feed, limit=limit)
    return [query["sql"] for query in captured.captured_queries], len(page.rows)


def test_the_queries_of_a_page_do_not_grow_with_its_size(tenant, api_client):
    # given 30 transfers and 30 incentives of 15 members, 15 of the incentives with coupons
    campaign_make(tenant, rule=action_rule("app.login", points=1))
    for n in range(15):
        post_event(api_client, action(f"a-{n}", member_ref=f"m-{n}"))  # an incentive and its transfer
        post_event(api_client, purchase(f"p-{n}", member_ref=f"m-{n}"))
    coupon_campaign(tenant, codes=15)
    for n in range(15):
        post_event(api_client, action(f"s-{n}", member_ref=f"m-{n}", code="app.share"))
    settle()

    for feed, table in (("transfers", "rewards_transfer"), ("incentives", "campaigns_incentive")):
        # when a page of 5 and a page of 200 are read
        small, small_rows = queries_for(api_client, feed, 5)
        large, large_rows = queries_for(api_client, feed, 200)

        # then both cost the same, the rows coming from one query
        assert (small_rows, large_rows) == (5, 30)
        assert len(small) == len(large) == QUERIES_PER_PAGE, "\n".join(large)
        assert sum(f'FROM "{table}"' in sql for sql in large) == 1, "\n".join(large)
