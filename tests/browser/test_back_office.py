"""The back office in headless chromium, against real servers (see conftest): an operator
signs in, creates a campaign and activates it; a qualifying event posted afterwards shows its
notification in the member's app without a reload; another tenant's operator finds nothing
at the campaign's address."""

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from campaigns.models import Action, Campaign
from tenants.models import Operator
from tests.browser.conftest import ROOT
from tests.browser.test_demo_app import by_id, open_app, post_event
from tests.campaigns.helpers import action_rule, campaign_make
from tests.factories import OperatorFactory, TenantFactory, UserFactory
from tests.redemptions.helpers import member_with

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-operator-password"
# Where the screenshots the issue asks for land (make test leaves them there for people to look at).
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or ROOT / "build" / "screenshots")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000, path
    return path


def operator(tenant, role: str, username: str) -> Operator:
    user = UserFactory(username=username, is_staff=True)
    user.set_password(PASSWORD)
    user.save()
    return OperatorFactory(tenant=tenant, role=role, user=user)


def sign_in(page, username: str) -> None:
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#user-tools")).to_contain_text(username)


def create_campaign(page, tenant, name: str, rule: dict) -> None:
    page.goto("/admin/campaigns/campaign/add/")
    # An operator's campaigns are their tenant's: the field is fixed to it.
    expect(page.locator("#id_tenant")).to_be_disabled()
    page.fill("#id_name", name)
    page.select_option("#id_type", "SIMPLE")
    start = timezone.now() - timedelta(days=1)
    page.fill("#id_start_at_0", start.strftime("%Y-%m-%d"))
    page.fill("#id_start_at_1", start.strftime("%H:%M:%S"))
    page.fill("#id_rule_json", json.dumps(rule))
    screenshot(page, "campaign-builder")
    with page.expect_navigation():
        page.click("input[name=_save]")
    assert not page.locator(".errorlist").all_inner_texts(), page.locator("#content").inner_text()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")


def test_an_operator_creates_and_activates_a_campaign_that_then_notifies_the_member(page, tenant, demo_server):
    operator(tenant, Operator.Role.MANAGER, "maria")
    Action.objects.create(tenant=tenant, code="app.login", description="Opened the app")
    member_with(tenant, 10, external_ref="carol")
    sign_in(page, "maria")
    expect(page.locator("#insights-home")).to_contain_text("the last 30 days")
    screenshot(page, "back-office-dashboard")

    create_campaign(
        page,
        tenant,
        "Browser bonus",
        {
            "trigger": {"eventTypes": ["action"], "actionCodes": ["app.login"]},
            "reward": {"type": "POINTS", "points": 40},
        },
    )
    campaign = Campaign.objects.get(tenant=tenant, name="Browser bonus")
    assert campaign.status == Campaign.Status.DRAFT
    page.goto(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    page.click("form.campaign-lifecycle button[value=activate]")
    expect(page.locator("ul.messagelist")).to_contain_text("activated")
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.ACTIVE

    # The member's app is open; the tenant's backend posts the qualifying event.
    app = page.context.new_page()
    app.script_errors = []
    app.on("pageerror", lambda error: app.script_errors.append(str(error)))
    open_app(app, "carol")
    app.evaluate("window.stillTheSamePage = true")
    assert post_event(app, demo_server, tenant, "login-1", "carol", "app.login")["points"] == 40
    expect(app.locator('[data-testid="notification"][data-type="INCENTIVE_NOTIFICATION"]')).to_contain_text(
        "You earned 40 points"
    )
    expect(by_id(app, "balance")).to_have_text("50")
    screenshot(app, "demo-app-notification")
    assert app.evaluate("window.stillTheSamePage") is True
    assert not page.script_errors and not app.script_errors


def test_another_tenants_operator_gets_404_on_those_objects(page, tenant):
    mine = campaign_make(tenant, rule=action_rule("app.login", points=1), name="Ours only")
    member = member_with(tenant, 10, external_ref="dave")
    elsewhere = TenantFactory(name="Elsewhere")
    operator(elsewhere, Operator.Role.OWNER, "olga")
    sign_in(page, "olga")

    for path in (
        f"/admin/campaigns/campaign/{mine.pk}/change/",
        f"/admin/rewards/member/{member.pk}/change/",
    ):
        response = page.goto(path)
        assert response.status == 404, path
    listing = page.goto("/admin/campaigns/campaign/")
    assert listing.status == 200
    assert "Ours only" not in page.content()
