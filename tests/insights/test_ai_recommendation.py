"""POST /api/v1/ai/recommendation: the rules by default, the LLM provider when configured (a
fake one on 127.0.0.1 here), and the rules again whenever the provider times out, fails or
answers anything but the JSON asked for. Also /ready's view of the provider."""

import json
import socket
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from catalog import services as catalog
from catalog.selectors import viewer_for
from core.rls import WALL_QUERIES
from insights.ai.base import AiContext, ProviderMalformed
from insights.ai.fake_provider import FakeProvider
from insights.ai.llm import choice_parse
from insights.recommendations import category_values
from tests.conftest import client_for_key
from tests.factories import TenantFactory
from tests.insights.ai_helpers import build_catalog, member_at, names

pytestmark = pytest.mark.django_db

URL = "/api/v1/ai/recommendation"


@pytest.fixture
def fake_provider():
    """The fake AI provider on a free port, in mode ok."""
    provider = FakeProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def provider_settings(settings, fake_provider):
    """The AI endpoint configured against the fake provider (timeout 5 s; tests of timeouts
    set their own)."""
    settings.AI_PROVIDER_URL = fake_provider.url
    settings.AI_PROVIDER_MODEL = "fake-model"
    settings.AI_PROVIDER_API_KEY = "sk-test"
    settings.AI_PROVIDER_TIMEOUT_SECONDS = 5
    return settings


@pytest.fixture
def shop(tenant, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return build_catalog(tenant)


@pytest.fixture
def silver(tenant, shop):
    """Silver (10% off), 1,000 points: Digital has the best value they can redeem now (0.016667)."""
    return member_at(tenant, shop["tiers"]["silver"], points=1000)


def ask(client, member=None, **body):
    if member is not None:
        body.setdefault("memberRef", member.external_ref)
    response = client.post(URL, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The rules ---------------------------------------------------------------------------------


def test_without_a_provider_the_rules_choose_the_best_value_the_member_can_redeem(api_client, silver, settings):
    settings.AI_PROVIDER_URL = ""

    body = ask(api_client, silver)

    assert body["engine"] == "rules" and body["fallbackReason"] is None
    assert body["recommendation"]["category"] == {
        "code": "digital",
        "name": "Digital",
        "description": "Digital rewards",
    }
    assert body["recommendation"]["reason"] == (
        "Digital gives your 1,000 points the most value: up to 1.67 USD per 100 points, on 2 rewards you can "
        "redeem now."
    )
    assert names(body["products"]) == ["Coffee", "Music credit"]
    assert [row["valuePerPoint"] for row in body["products"]] == ["0.016667", "0.016667"]
    assert body["memberRef"] == silver.external_ref and body["balance"] == 1000


def test_the_rules_prefer_a_category_the_member_names(api_client, silver, settings):
    settings.AI_PROVIDER_URL = ""

    body = ask(api_client, silver, context="Something for my next trip? travel maybe")

    # Travel holds nothing 1,000 points redeem at Silver's price: the Flight voucher is 2,700,
    # and the Gold lounge pass is not shown to Silver
    assert body["recommendation"]["category"]["code"] == "travel"
    assert body["recommendation"]["reason"] == (
        "You asked about Travel. You are 1,700 points away from a reward in Travel, where points are worth up "
        "to 1.67 USD per 100 points."
    )
    assert names(body["products"]) == ["Flight voucher"]
    assert body["products"][0]["pointsNeeded"] == 1700


def test_with_no_points_the_rules_choose_the_closest_reward(api_client, tenant, shop, settings):
    settings.AI_PROVIDER_URL = ""
    member = member_at(tenant, shop["tiers"]["silver"])

    body = ask(api_client, member)

    assert body["recommendation"]["category"]["code"] == "digital"
    assert body["recommendation"]["reason"].startswith("You are 180 points away from a reward in Digital")
    assert [row["pointsNeeded"] for row in body["products"]] == [180, 360]


# The provider --------------------------------------------------------------------------------


def test_a_configured_provider_answers(api_client, silver, fake_provider, provider_settings):
    fake_provider.set_mode("ok", category_id="gift-cards", reason="Gift cards suit your balance.")

    body = ask(api_client, silver, context="a present for a friend")

    assert body["engine"] == "llm" and body["fallbackReason"] is None
    assert body["recommendation"]["category"]["code"] == "gift-cards"
    assert body["recommendation"]["reason"] == "Gift cards suit your balance."
    # its products best value first: 25.00 for 1,800 before 10.00 for 900
    assert names(body["products"]) == ["Gift card 25", "Gift card 10"]
    assert [row["pointsNeeded"] for row in body["products"]] == [800, 0]

    # what the provider was sent: the model, the key, strict JSON asked for, the member as figures
    (request,) = fake_provider.requests()
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test"
    sent = request["body"]
    assert sent["model"] == "fake-model" and sent["response_format"] == {"type": "json_object"}
    prompt = json.loads(sent["messages"][1]["content"])
    assert prompt["member"] == {
        "points": 1000,
        "tier": "silver",
        "tierDiscountPercentage": "10.00",
        "pointsExpiringSoon": 0,
        "currency": "USD",
    }
    assert prompt["request"] == "a present for a friend"
    assert [c["categoryId"] for c in prompt["categories"]] == ["digital", "gift-cards", "merchandise", "travel"]
    digital = prompt["categories"][0]
    assert (digital["rewards"], digital["redeemableNow"], digital["bestValuePerPoint"]) == (2, 2, "0.016667")
    travel = prompt["categories"][3]
    assert (travel["rewards"], travel["redeemableNow"], travel["pointsToFirstReward"]) == (1, 0, 1700)
    assert silver.external_ref not in json.dumps(sent)


def test_a_provider_timeout_falls_back_to_the_rules_within_the_timeout(
    api_client, silver, fake_provider, provider_settings
):
    provider_settings.AI_PROVIDER_TIMEOUT_SECONDS = 0.5
    fake_provider.set_mode("timeout", delay=5)

    started = time.monotonic()
    body = ask(api_client, silver)
    elapsed = time.monotonic() - started

    assert body["engine"] == "rules" and body["fallbackReason"] == "timeout"
    assert body["recommendation"]["category"]["code"] == "digital"  # the rules' choice
    assert names(body["products"]) == ["Coffee", "Music credit"]
    assert len(fake_provider.requests()) == 1  # it was asked, and did not answer in time
    assert elapsed < 5  # the answer did not wait for the provider's


def test_a_provider_trickling_its_answer_cannot_stretch_the_timeout(
    api_client, silver, fake_provider, provider_settings
):
    # Headers at once, then a byte every 0.2 s (a minute for the whole answer): every read
    # arrives within the timeout, the whole answer does not.
    provider_settings.AI_PROVIDER_TIMEOUT_SECONDS = 0.5
    fake_provider.set_mode("trickle", delay=0.2)

    started = time.monotonic()
    body = ask(api_client, silver)

    assert body["engine"] == "rules" and body["fallbackReason"] == "timeout"
    assert time.monotonic() - started < 10


def test_a_provider_error_falls_back_to_the_rules(api_client, silver, fake_provider, provider_settings):
    fake_provider.set_mode("error")

    body = ask(api_client, silver)

    assert body["engine"] == "rules" and body["fallbackReason"] == "error"
    assert body["recommendation"]["category"]["code"] == "digital"
    assert len(fake_provider.requests()) == 1


def test_an_unreachable_provider_or_a_refused_key_is_an_error(api_client, silver, settings):
    settings.AI_PROVIDER_URL = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    body = ask(api_client, silver)
    assert (body["engine"], body["fallbackReason"]) == ("rules", "error")

    guarded = FakeProvider(key="the-right-key").start()
    try:
        settings.AI_PROVIDER_URL, settings.AI_PROVIDER_API_KEY = guarded.url, "a-wrong-key"
        body = ask(api_client, silver)
        assert (body["engine"], body["fallbackReason"]) == ("rules", "error")
        assert len(guarded.requests()) == 1
    finally:
        guarded.stop()


@pytest.mark.parametrize(
    "variant",
    [
        "text",  # the JSON inside a code fence: not JSON
        "keys",  # {"category", "why"}
        "extra",  # categoryId and reason, and one more key
        "category",  # a categoryId that was not offered
        "envelope",  # a body that is not a chat completion
    ],
)
def test_a_malformed_answer_falls_back_to_the_rules(api_client, silver, fake_provider, provider_settings, variant):
    fake_provider.set_mode("malformed", variant=variant)

    body = ask(api_client, silver)

    assert body["engine"] == "rules" and body["fallbackReason"] == "malformed"
    assert body["recommendation"]["category"]["code"] == "digital"


def test_choices_are_parsed_strictly(tenant, silver):
    viewer = viewer_for(tenant=tenant, member=silver)
    context = AiContext(
        balance=1000,
        tier_id="silver",
        discount_percentage=Decimal(10),
        currency="USD",
        expiring_points=0,
        categories=category_values(tenant=tenant, member=silver, viewer=viewer),
    )
    assert choice_parse('{"categoryId": "travel", "reason": " Go. "}', context).reason == "Go."
    for content in [
        '["travel", "Go."]',
        '{"categoryId": "travel"}',
        '{"categoryId": 4, "reason": "Go."}',
        '{"categoryId": "travel", "reason": ""}',
        '{"categoryId": "travel", "reason": ["Go."]}',
        '{"categoryId": "travel", "reason": "' + "x" * 1001 + '"}',
        '{"categoryId": "TRAVEL", "reason": "Go."}',
        '{"categoryId": "travel", "reason": "Go."} and more',
    ]:
        with pytest.raises(ProviderMalformed):
            choice_parse(content, context)


def test_with_nothing_to_recommend_the_provider_is_not_asked(api_client, member, fake_provider, provider_settings):
    body = ask(api_client, member)

    assert body["engine"] == "rules" and body["fallbackReason"] is None
    assert body["recommendation"] == {"category": None, "reason": "No rewards are available to you right now."}
    assert body["products"] == []
    assert fake_provider.requests() == []


def test_the_queries_do_not_grow_with_the_catalog(settings, django_capture_on_commit_callbacks):
    settings.AI_PROVIDER_URL = ""

    def queries_for(items: int) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            tenant = TenantFactory()
            tiers = build_catalog(tenant)["tiers"]
            for n in range(items):
                category = ["digital", "gift-cards", "travel"][n % 3]
                catalog.item_create(
                    tenant=tenant, name=f"Extra {n}", point_cost=100 + n, cash_value=Decimal(n), category=category
                )
        member = member_at(tenant, tiers["silver"], points=1000)
        client = client_for_key(tenant.raw_api_key)
        ask(client, member)  # the tier cache warmed
        with CaptureQueriesContext(connection) as captured:
            ask(client, member)
        return len(captured)

    # 10 at the time of writing, for 10 items as for 70
    assert queries_for(0) == queries_for(60) <= 10 + WALL_QUERIES


# Who asks -----------------------------------------------------------------------------------


def test_a_member_token_asks_for_its_own_member_only(tenant, silver, settings):
    from rewards.services import member_token_issue

    settings.AI_PROVIDER_URL = ""
    token, _ = member_token_issue(member=silver)
    client = client_for_key("")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    body = ask(client)
    assert body["memberRef"] == silver.external_ref

    response = client.post(URL, {"memberRef": "someone-else"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "memberRef"


def test_the_tenant_names_one_of_its_own_members(api_client, other_client, silver, settings):
    settings.AI_PROVIDER_URL = ""

    missing = api_client.post(URL, {}, format="json")
    assert missing.status_code == 400 and missing.json()["errors"][0]["attr"] == "memberRef"

    elsewhere = other_client.post(URL, {"memberRef": silver.external_ref}, format="json")
    assert elsewhere.status_code == 404 and elsewhere.json()["errors"][0]["attr"] == "memberRef"

    too_long = api_client.post(URL, {"memberRef": silver.external_ref, "context": "x" * 501}, format="json")
    assert too_long.status_code == 400 and too_long.json()["errors"][0]["attr"] == "context"


# Readiness ------------------------------------------------------------------------------------


def test_ready_reports_the_provider_degraded_not_down(client, settings, fake_provider, provider_settings):
    ok = client.get("/ready")
    assert ok.status_code == 200
    assert ok.json()["checks"]["aiProvider"] == "ok" and ok.json()["status"] == "ok"

    fake_provider.set_mode("error")
    degraded = client.get("/ready")
    assert degraded.status_code == 200
    body = degraded.json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "cache": "ok", "aiProvider": "degraded"}
    assert body["degraded"] == ["aiProvider"] and "failed" not in body

    fake_provider.set_mode("timeout", delay=3)
    assert client.get("/ready").json()["checks"]["aiProvider"] == "degraded"

    settings.AI_PROVIDER_URL = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    assert client.get("/ready").json()["checks"]["aiProvider"] == "degraded"

    settings.AI_PROVIDER_URL = ""
    assert "aiProvider" not in client.get("/ready").json()["checks"]
