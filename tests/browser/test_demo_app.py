"""The member demo app (/demo/) in headless chromium, against real servers (see conftest): what
a member sees, what arrives live without a reload, and a redemption through to its gift card
code. The page may only talk to the public API (and the demo backend for its token)."""

import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from catalog.models import Item
from redemptions.models import Redemption
from tests.campaigns.helpers import action_rule, campaign_make
from tests.redemptions.helpers import member_with, partner_config, reward

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# What the page's scripts may call besides the page, its static files and the item images.
PUBLIC_SURFACE = ("/api/v1/", "/ws")


def by_id(page, test_id: str):
    return page.get_by_test_id(test_id)


def open_app(page, member_ref: str) -> None:
    """Open the app as the member and wait for its socket to be authenticated."""
    page.goto(f"/demo/?member={member_ref}")
    expect(by_id(page, "ws-status")).to_have_attribute("data-state", "live")


def post_event(page, server: str, tenant, event_id: str, member_ref: str, action_code: str) -> dict:
    """The tenant's backend posts an action event to the API with its key."""
    body = {"type": "action", "eventId": event_id, "memberRef": member_ref, "actionCode": action_code}
    response = page.request.post(f"{server}/api/v1/events", headers={"X-API-Key": tenant.raw_api_key}, data=body)
    assert response.status == 201, response.text()
    return response.json()


def test_the_page_shows_the_members_balance_tier_and_history_from_the_api(page, tenant):
    # given a member with 1,234 points
    member_with(tenant, 1234, external_ref="alice")
    calls = []
    page.on("request", lambda request: calls.append((request.resource_type, urlsplit(request.url).path)))
    page.on("websocket", lambda socket: calls.append(("websocket", urlsplit(socket.url).path)))

    # when they open the app
    open_app(page, "alice")

    # then it shows their balance, the adjustment in their history and its reason
    expect(by_id(page, "balance")).to_have_text("1,234")
    expect(by_id(page, "pending")).to_have_text("None")
    expect(by_id(page, "tier-name")).to_have_text("No tiers in this program")
    row = by_id(page, "history-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("+1,234")
    expect(row).to_contain_text("seed")
    # and the catalog and recommendations loaded (empty in this tenant)
    expect(by_id(page, "catalog-summary")).to_contain_text("0 rewards")
    expect(by_id(page, "affordable-now")).to_contain_text("Nothing here yet")
    # and everything its scripts asked for was the public API or the socket
    scripted = {path for kind, path in calls if kind in {"fetch", "xhr", "websocket"}}
    assert scripted, calls
    assert all(path.startswith(PUBLIC_SURFACE) for path in scripted), scripted
    sections = {"/api/v1/me", "/api/v1/me/transfers", "/api/v1/me/insights", "/api/v1/me/recommendations"}
    assert {*sections, "/api/v1/catalog/items", "/ws"} <= scripted
    assert not page.script_errors


def test_a_qualifying_event_shows_its_notification_without_a_reload(page, tenant, demo_server):
    # given a campaign that gives 25 points for opening the app, and the member's app open
    campaign_make(tenant, rule=action_rule("app.login", points=25))
    member_with(tenant, 100, external_ref="bob")
    open_app(page, "bob")
    expect(by_id(page, "balance")).to_have_text("100")
    page.evaluate("window.stillTheSamePage = true")

    # when the tenant's backend posts a qualifying event through the API
    posted = time.monotonic()
    assert post_event(page, demo_server, tenant, "login-1", "bob", "app.login")["points"] == 25

    # then the notification appears (the Celery worker relays it, daphne pushes it to the socket)
    notification = page.locator('[data-testid="notification"][data-type="INCENTIVE_NOTIFICATION"]')
    expect(notification).to_contain_text("You earned 25 points")
    print(f"INCENTIVE_NOTIFICATION on the page {(time.monotonic() - posted) * 1000:.0f} ms after the POST")
    # and the balance follows from the POINTS_UPDATED frame, all without a reload
    expect(by_id(page, "balance")).to_have_text("125")
    assert page.evaluate("window.stillTheSamePage") is True
    assert not page.script_errors


def test_a_member_finds_a_gift_card_redeems_it_and_sees_its_code(page, tenant, partner):
    # given a gift card fulfilled by the sandbox partner, and a member who can afford it
    partner_config(tenant, partner.url, kinds=[Item.Kind.GIFT_CARD])
    item = reward(tenant, point_cost=500, kind=Item.Kind.GIFT_CARD, name="Bookstore Gift Card", stock=5)
    reward(tenant, point_cost=900, kind=Item.Kind.MERCHANDISE, name="Travel Mug")
    member_with(tenant, 1200, external_ref="carol")
    open_app(page, "carol")

    # when she searches the catalog for it and redeems it
    page.get_by_label("Search rewards").fill("bookstore")
    page.get_by_role("button", name="Search").click()
    card = by_id(page, "catalog-item")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Bookstore Gift Card")
    expect(card).to_contain_text("500 points")
    started = time.monotonic()
    card.get_by_role("button", name="Redeem Bookstore Gift Card for 500 points").click()

    # then she sees it completed with the gift card code, once the worker has fulfilled it
    expect(by_id(page, "redemption-status")).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    print(f"COMPLETED on the page {(time.monotonic() - started) * 1000:.0f} ms after the click")
    redemption = Redemption.objects.get(tenant=tenant, item=item)
    assert redemption.status == Redemption.Status.COMPLETED
    assert redemption.partner_reference.startswith("GC-")
    expect(by_id(page, "redemption-reference-label")).to_have_text("Gift card code")
    expect(by_id(page, "redemption-reference")).to_have_text(redemption.partner_reference)
    expect(by_id(page, "balance")).to_have_text("700")
    # and the partner placed exactly one order for it
    assert partner.orders()[str(redemption.pk)]["placed"] == 1
    assert not page.script_errors


def test_notifications_missed_while_the_app_was_closed_are_replayed_when_it_opens_again(page, tenant, demo_server):
    # given campaigns for opening the app (25 points) and sharing it (40 points), and a member
    # whose app saw the first reward
    campaign_make(tenant, rule=action_rule("app.login", points=25))
    campaign_make(tenant, rule=action_rule("app.share", points=40), name="Share")
    member_with(tenant, 100, external_ref="erin")
    open_app(page, "erin")
    post_event(page, demo_server, tenant, "login-1", "erin", "app.login")
    incentives = page.locator('[data-testid="notification"][data-type="INCENTIVE_NOTIFICATION"]')
    expect(incentives).to_have_count(1)
    expect(incentives).to_contain_text("You earned 25 points")
    expect(by_id(page, "balance")).to_have_text("125")

    # when the app is closed, the member earns the second reward, and the app opens again
    page.goto("about:blank")
    post_event(page, demo_server, tenant, "share-1", "erin", "app.share")
    open_app(page, "erin")

    # then it asked for what came after the last event it had seen: the second reward only
    expect(incentives).to_have_count(1)
    expect(incentives).to_contain_text("You earned 40 points")
    expect(by_id(page, "balance")).to_have_text("165")
    assert not page.script_errors


@pytest.mark.parametrize("demo_server_env", [{"MEMBER_TOKEN_TTL_SECONDS": "2"}])
def test_when_the_member_token_runs_out_the_app_gets_a_fresh_one(page, tenant, demo_server, demo_server_env):
    # given member tokens that last 2 seconds, and a member's app open
    campaign_make(tenant, rule=action_rule("app.login", points=25))
    reward(tenant, point_cost=500, name="Coffee Voucher")
    member_with(tenant, 100, external_ref="finn")
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    open_app(page, "finn")

    # when its token runs out, the server closes the socket (4401)
    expect(by_id(page, "ws-status")).to_have_attribute("data-state", "offline", timeout=10_000)

    # then the app gets a fresh token from its backend, reconnects, and frames still arrive
    expect(by_id(page, "ws-status")).to_have_attribute("data-state", "live")
    assert len(sockets) == 2
    post_event(page, demo_server, tenant, "login-1", "finn", "app.login")
    expect(page.locator('[data-testid="notification"][data-type="INCENTIVE_NOTIFICATION"]')).to_have_count(1)

    # and when an API call finds the token expired (no socket here renews it first: this one
    # never answers), the app gets a fresh token and tries again
    page.route_web_socket("**/ws", lambda socket: None)
    page.goto("/demo/?member=finn")
    expect(by_id(page, "catalog-summary")).to_contain_text("1 reward in the catalog")
    time.sleep(2.5)
    page.get_by_label("Search rewards").fill("coffee")
    page.get_by_role("button", name="Search").click()
    expect(by_id(page, "catalog-item")).to_contain_text("Coffee Voucher")
    expect(by_id(page, "api-log")).to_contain_text("GET /api/v1/catalog/search?q=coffee&pageSize=12 → 401")
    assert not page.script_errors
