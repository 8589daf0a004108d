"""Rate limits on the endpoints that move points or stock (core/api/ratelimit.py): counted in
Redis atomically, per API key and per member, in separate buckets per scope; over a limit a
429 in the API's error shape with Retry-After, and nothing changes; windows start afresh;
while Redis fails, each process counts for itself (fail open, counted and logged)."""

import logging

import pytest
import redis as redis_lib
from django.db.models import Sum
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from catalog.models import Item, StockMovement
from core.api import ratelimit
from redemptions.models import Redemption
from rewards.models import Member, Transfer
from rewards.services import member_token_issue
from tenants.models import Operator
from tenants.services import api_key_create
from tests.catalog.helpers import item
from tests.conftest import PASSWORD, basic_auth
from tests.core.shapes import assert_error
from tests.factories import OperatorFactory
from tests.redemptions.helpers import member_with, partner_config, reward
from tests.rewards.test_earning_concurrency import purchase, run_in_threads

NOW = 1_900_000_000.25  # a quarter into its second; 40.25 s into its minute
MINUTE_LEFT = 20  # seconds until NOW's minute ends, rounded up


@pytest.fixture
def fixed_clock(monkeypatch):
    """Every request falls in the same window, however long the test takes."""
    monkeypatch.setattr(ratelimit, "clock", lambda: NOW)
    ratelimit._local.clear()
    return monkeypatch


@pytest.fixture
def limits(settings, fixed_clock):
    """Set one scope's limits for the test: `limits("points", api_key="5/min", member=None)`."""

    def set_limits(scope: str, **rates):
        settings.RATE_LIMITS = {**settings.RATE_LIMITS, scope: rates}

    return set_limits


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


def token_client(member) -> APIClient:
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def adjust(client, member_ref: str, points: int = 10, **headers):
    return client.post(
        f"/api/v1/members/{member_ref}/adjustments", {"points": points, "reason": "goodwill"}, format="json", **headers
    )


def adjustments(tenant) -> int:
    return Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.ADJUSTMENT).count()


def assert_throttled(response, retry_after: int = MINUTE_LEFT) -> None:
    assert_error(response, 429, code="throttled")
    assert response["Retry-After"] == str(retry_after)


# N + 1 at once: exactly N go through --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_six_adjustments_at_once_for_a_member_limited_to_five_move_points_five_times(tenant, limits):
    # given a member limit of 5 adjustments a minute
    limits("points", api_key="1000/min", member="5/min")
    member = member_with(tenant, 0)

    # when 6 are posted at the same moment, each on its own connection
    responses = run_in_threads(6, lambda i: adjust(key_client(tenant.raw_api_key), member.external_ref))

    # then exactly 5 went through and the ledger holds exactly 5
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [429]
    assert_throttled(next(r for r in responses if r.status_code == 429))
    assert adjustments(tenant) == 5
    assert Member.objects.get(pk=member.pk).accounts.get(kind="MEMBER").balance == 50


@pytest.mark.django_db(transaction=True)
def test_eleven_events_at_once_on_a_key_limited_to_ten_earn_ten_times(tenant, limits, fixed_clock):
    limits("events", api_key="10/min", member="1000/min")
    client = key_client(tenant.raw_api_key)

    responses = run_in_threads(11, lambda i: client.post("/api/v1/events", purchase(f"e-{i}", f"m-{i}"), format="json"))

    assert sorted(r.status_code for r in responses) == [201] * 10 + [429]
    assert_throttled(next(r for r in responses if r.status_code == 429))
    assert Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN).count() == 10
    # the refused event was never seen: posted again in the next window it is applied, not replayed
    refused = next(i for i, r in enumerate(responses) if r.status_code == 429)
    fixed_clock.setattr(ratelimit, "clock", lambda: NOW + 60)
    again = client.post("/api/v1/events", purchase(f"e-{refused}", f"m-{refused}"), format="json")
    assert again.status_code == 201, again.json()
    assert "Idempotent-Replayed" not in again


@pytest.mark.django_db(transaction=True)
def test_four_redemptions_at_once_by_a_member_limited_to_three_take_stock_three_times(tenant, limits):
    limits("redemptions", api_key="1000/min", member="3/min")
    partner_config(tenant, "http://127.0.0.1:9")
    member = member_with(tenant, 1000)
    gift = reward(tenant, point_cost=100, stock=10)

    def redeem(i):
        return token_client(member).post(
            "/api/v1/redemptions", {"itemId": str(gift.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=f"r-{i}"
        )

    responses = run_in_threads(4, redeem)

    assert sorted(r.status_code for r in responses) == [201] * 3 + [429]
    assert_throttled(next(r for r in responses if r.status_code == 429))
    assert Redemption.objects.filter(member=member).count() == 3
    assert Item.objects.get(pk=gift.pk).stock_quantity == 7
    assert Member.objects.get(pk=member.pk).accounts.get(kind="MEMBER").balance == 700


@pytest.mark.django_db(transaction=True)
def test_four_stock_movements_at_once_on_a_key_limited_to_three_move_stock_three_times(tenant, limits):
    limits("stock", api_key="3/min")
    lamp = item(tenant, "Desk Lamp", 700, stock_quantity=5)
    url = f"/api/v1/catalog/items/{lamp.pk}/stock-movements"

    responses = run_in_threads(
        4,
        lambda i: key_client(tenant.raw_api_key).post(
            url, {"kind": "RESTOCK", "quantity": 1, "reason": f"delivery {i}"}, format="json"
        ),
    )

    assert sorted(r.status_code for r in responses) == [201] * 3 + [429]
    assert_throttled(next(r for r in responses if r.status_code == 429))
    assert Item.objects.get(pk=lamp.pk).stock_quantity == 8
    assert StockMovement.objects.filter(item=lamp, kind="RESTOCK").aggregate(s=Sum("quantity"))["s"] == 3


# Buckets ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_two_api_keys_of_a_tenant_have_separate_buckets(tenant, limits):
    limits("points", api_key="2/min", member=None)
    member = member_with(tenant, 0)
    first, second = key_client(tenant.raw_api_key), key_client(api_key_create(tenant=tenant, name="pos").raw)

    assert [adjust(first, member.external_ref).status_code for _ in range(3)] == [201, 201, 429]
    assert [adjust(second, member.external_ref).status_code for _ in range(3)] == [201, 201, 429]
    assert adjustments(tenant) == 4


@pytest.mark.django_db
def test_an_operator_calling_the_api_counts_as_a_key_of_their_own(tenant, limits):
    limits("points", api_key="1/min", member=None)
    member = member_with(tenant, 0)
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.OWNER)
    signed_in = APIClient()
    signed_in.credentials(HTTP_AUTHORIZATION=basic_auth(operator.user.username, PASSWORD))

    assert adjust(key_client(tenant.raw_api_key), member.external_ref).status_code == 201
    assert adjust(signed_in, member.external_ref).status_code == 201
    assert_throttled(adjust(signed_in, member.external_ref))


@pytest.mark.django_db
def test_two_members_have_separate_buckets(tenant, limits):
    limits("points", api_key="100/min", member="2/min")
    ann, bob = member_with(tenant, 0), member_with(tenant, 0)
    client = key_client(tenant.raw_api_key)

    assert [adjust(client, ann.external_ref).status_code for _ in range(3)] == [201, 201, 429]
    assert [adjust(client, bob.external_ref).status_code for _ in range(3)] == [201, 201, 429]


@pytest.mark.django_db
def test_the_members_app_and_the_backend_acting_for_the_member_share_its_bucket(tenant, limits):
    limits("redemptions", api_key="100/min", member="2/min")
    partner_config(tenant, "http://127.0.0.1:9")
    member = member_with(tenant, 1000)
    gift = reward(tenant, point_cost=100, stock=10)

    def redeem(client, key, **body):
        return client.post(
            "/api/v1/redemptions", {"itemId": str(gift.pk), **body}, format="json", HTTP_IDEMPOTENCY_KEY=key
        )

    assert redeem(token_client(member), "a").status_code == 201
    assert redeem(key_client(tenant.raw_api_key), "b", memberRef=member.external_ref).status_code == 201
    assert_throttled(redeem(token_client(member), "c"))
    assert_throttled(redeem(key_client(tenant.raw_api_key), "d", memberRef=member.external_ref))
    assert Redemption.objects.filter(member=member).count() == 2


@pytest.mark.django_db
def test_a_member_refused_does_not_use_up_its_api_keys_allowance(tenant, limits):
    limits("points", api_key="3/min", member="1/min")
    ann, bob, cat = (member_with(tenant, 0) for _ in range(3))
    client = key_client(tenant.raw_api_key)

    assert adjust(client, ann.external_ref).status_code == 201
    for _ in range(5):
        assert_throttled(adjust(client, ann.external_ref))

    assert adjust(client, bob.external_ref).status_code == 201
    assert adjust(client, cat.external_ref).status_code == 201


@pytest.mark.django_db
def test_scopes_are_counted_apart(tenant, limits):
    limits("points", api_key="1/min", member=None)
    limits("events", api_key="1/min", member=None)
    member = member_with(tenant, 0)
    client = key_client(tenant.raw_api_key)

    assert adjust(client, member.external_ref).status_code == 201
    assert client.post("/api/v1/events", purchase("e-1", member.external_ref), format="json").status_code == 201
    assert_throttled(adjust(client, member.external_ref))


@pytest.mark.django_db
def test_a_batch_counts_as_its_number_of_events_and_a_refused_batch_applies_none(tenant, limits):
    limits("events", api_key="5/min", member="1/min")
    client = key_client(tenant.raw_api_key)

    def batch(prefix: str, size: int):
        # one member for every event: batches are held to the key's bucket only
        return client.post(
            "/api/v1/events:batch", {"events": [purchase(f"{prefix}-{i}", "m-1") for i in range(size)]}, format="json"
        )

    assert batch("a", 3).json()["summary"]["applied"] == 3
    assert_throttled(batch("b", 3))
    assert batch("c", 2).json()["summary"]["applied"] == 2
    assert_throttled(batch("d", 1))
    assert Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.EARN).count() == 5


@pytest.mark.django_db
def test_cancelling_counts_against_the_member_the_redemption_belongs_to(tenant, limits):
    limits("redemptions", api_key="100/min", member="2/min")
    partner_config(tenant, "http://127.0.0.1:9")
    member = member_with(tenant, 1000)
    gift = reward(tenant, point_cost=100, stock=10)
    client = key_client(tenant.raw_api_key)
    created = client.post(
        "/api/v1/redemptions",
        {"itemId": str(gift.pk), "memberRef": member.external_ref},
        format="json",
        HTTP_IDEMPOTENCY_KEY="one",
    ).json()
    url = f"/api/v1/redemptions/{created['redemptionId']}:cancel"

    assert client.post(url, {"reason": "changed my mind"}, format="json").status_code == 200
    refused = client.post(url, {"reason": "again"}, format="json")

    assert_throttled(refused)
    # an unknown redemption counts against the key only, and is the view's 404
    assert client.post("/api/v1/redemptions/not-a-redemption:cancel", {"reason": "x"}, format="json").status_code == 404


@pytest.mark.django_db
def test_credit_purchases_are_limited_per_member(tenant, limits):
    limits("purchases", api_key="100/min", member="1/min")
    member = member_with(tenant, 0)
    client = token_client(member)

    def buy(key):
        return client.post(
            "/api/v1/credit-purchases",
            {"packageId": "no-such-package", "paymentToken": "tok"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=key,
        )

    # a refusal by the view (no such package) still counts
    assert buy("a").status_code in {400, 404}
    assert_throttled(buy("b"))


@pytest.mark.django_db
def test_a_member_ref_the_view_refuses_gets_no_bucket_of_its_own(tenant, limits):
    from django_redis import get_redis_connection

    limits("events", api_key="100/min", member="1/min")
    client = key_client(tenant.raw_api_key)
    too_long = "m" * 129

    statuses = [
        client.post("/api/v1/events", purchase(f"e-{i}", too_long), format="json").status_code for i in range(2)
    ]

    assert statuses == [400, 400]
    assert get_redis_connection("default").keys("*rate_limit:events:member:*") == []


@pytest.mark.django_db
def test_reads_are_not_counted(tenant, limits):
    limits("redemptions", api_key="1/min", member="1/min")
    client = key_client(tenant.raw_api_key)

    assert [client.get("/api/v1/redemptions").status_code for _ in range(3)] == [200] * 3


# Windows and settings -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_window_starts_afresh_and_retry_after_says_when(tenant, limits, fixed_clock):
    limits("points", api_key="2/min", member=None)
    member = member_with(tenant, 0)
    client = key_client(tenant.raw_api_key)
    adjust(client, member.external_ref)
    adjust(client, member.external_ref)

    assert_throttled(adjust(client, member.external_ref), retry_after=20)
    fixed_clock.setattr(ratelimit, "clock", lambda: NOW + 19.5)  # 0.25 s before the minute ends
    assert_throttled(adjust(client, member.external_ref), retry_after=1)
    fixed_clock.setattr(ratelimit, "clock", lambda: NOW + 19.75)  # the next minute
    assert [adjust(client, member.external_ref).status_code for _ in range(3)] == [201, 201, 429]


def test_rates_are_read_from_settings():
    assert ratelimit.rate_parse("600/min") == ratelimit.Rate(600, 60)
    assert ratelimit.rate_parse("10/s") == ratelimit.Rate(10, 1)
    assert ratelimit.rate_parse("5000/hour") == ratelimit.Rate(5000, 3600)
    assert ratelimit.rate_parse("7/day") == ratelimit.Rate(7, 86400)
    assert ratelimit.rate_parse(None) is None
    assert ratelimit.rate_parse(0) is None
    assert ratelimit.rate_parse("0/min") is None
    with pytest.raises(ValueError):
        ratelimit.rate_parse("5/fortnight")


@pytest.mark.django_db
def test_a_rate_of_none_or_zero_and_limits_turned_off_let_everything_through(tenant, limits, settings):
    member = member_with(tenant, 0)
    client = key_client(tenant.raw_api_key)

    limits("points", api_key=None, member="0/min")
    assert {adjust(client, member.external_ref).status_code for _ in range(5)} == {201}

    limits("points", api_key="1/min", member="1/min")
    settings.RATE_LIMITS_ENABLED = False
    assert {adjust(client, member.external_ref).status_code for _ in range(5)} == {201}


@pytest.mark.django_db
def test_counted_in_redis_under_the_cache_prefix_with_an_expiry(tenant, limits):
    from django_redis import get_redis_connection

    limits("points", api_key="5/min", member=None)
    member = member_with(tenant, 0)
    adjust(key_client(tenant.raw_api_key), member.external_ref)

    redis = get_redis_connection("default")
    keys = [k.decode() for k in redis.keys("*rate_limit:points:api_key:*")]
    assert len(keys) == 1
    assert keys[0].endswith(f":{int(NOW // 60) * 60}")
    assert int(redis.get(keys[0])) == 1
    assert 60 < redis.ttl(keys[0]) <= 120


# Redis down ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_while_redis_fails_each_process_counts_for_itself_and_says_so(tenant, limits, fixed_clock, caplog):
    # given Redis unreachable
    unreachable = redis_lib.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1, socket_timeout=1)
    fixed_clock.setattr(ratelimit, "redis_client", lambda: unreachable)
    limits("points", api_key="100/min", member="3/min")
    member = member_with(tenant, 0)
    client = key_client(tenant.raw_api_key)
    before = REGISTRY.get_sample_value("loyalty_rate_limit_local_checks_total", {"scope": "points"}) or 0

    # when a member's adjustments keep coming
    with caplog.at_level(logging.WARNING, logger="core.api.ratelimit"):
        statuses = [adjust(client, member.external_ref).status_code for _ in range(4)]

    # then the requests are served (fail open) and this process still holds the limit
    assert statuses == [201, 201, 201, 429]
    assert adjustments(tenant) == 3
    assert REGISTRY.get_sample_value("loyalty_rate_limit_local_checks_total", {"scope": "points"}) - before == 4
    assert any("Redis failed" in record.getMessage() for record in caplog.records)


# Metrics and schema -------------------------------------------------------------------------


@pytest.mark.django_db
def test_throttled_requests_are_counted_for_prometheus(tenant, limits):
    limits("points", api_key="1/min", member=None)
    member = member_with(tenant, 0)
    client = key_client(tenant.raw_api_key)
    adjust(client, member.external_ref)
    before = (
        REGISTRY.get_sample_value("loyalty_rate_limited_requests_total", {"scope": "points", "bucket": "api_key"}) or 0
    )

    adjust(client, member.external_ref)

    text = APIClient().get("/metrics").content.decode()
    assert 'loyalty_rate_limited_requests_total{bucket="api_key",scope="points"}' in text
    after = REGISTRY.get_sample_value("loyalty_rate_limited_requests_total", {"scope": "points", "bucket": "api_key"})
    assert after - before == 1


LIMITED_OPERATIONS = [
    ("/api/v1/events", "post"),
    ("/api/v1/events:batch", "post"),
    ("/api/v1/members/{member_ref}/adjustments", "post"),
    ("/api/v1/redemptions", "post"),
    ("/api/v1/redemptions/{redemption_id}:cancel", "post"),
    ("/api/v1/credit-purchases", "post"),
    ("/api/v1/catalog/items/{item_id}/stock-movements", "post"),
]


@pytest.mark.django_db
def test_the_schema_documents_the_429_with_retry_after_on_every_limited_operation():
    schema = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json").json()

    for path, method in LIMITED_OPERATIONS:
        response = schema["paths"][path][method]["responses"]["429"]
        assert "Retry-After" in response["headers"], path
        assert "per API key" in response["description"], path
    assert "429" not in schema["paths"]["/api/v1/redemptions"]["get"]["responses"]
