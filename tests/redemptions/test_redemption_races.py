"""Redemptions racing over real PostgreSQL connections: stock is never oversold, points never
overspent, one Idempotency-Key is one redemption, and the books balance afterwards."""

from collections import Counter

import pytest
from rest_framework.test import APIClient

from redemptions.models import Redemption
from rewards.services import member_token_issue
from tests.redemptions.helpers import assert_books_balance, balance, member_with, partner_config, reward, stock
from tests.rewards.test_earning_concurrency import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)


def client_of(member) -> APIClient:
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def outcome(response) -> str:
    if response.status_code == 201:
        return "redeemed"
    return f"{response.status_code} {response.json()['errors'][0]['code']}"


def test_200_members_racing_for_50_in_stock_get_exactly_50(tenant):
    # given 200 members with 100 points each and an item of 100 points with 50 in stock
    partner_config(tenant, "http://127.0.0.1:9")
    members = [member_with(tenant, 100) for _ in range(200)]
    clients = [client_of(m) for m in members]
    item = reward(tenant, point_cost=100, stock=50)

    # when all of them redeem it at once
    def attempt(i):
        response = clients[i].post(
            "/api/v1/redemptions", {"itemId": str(item.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=f"race-{i}"
        )
        return outcome(response)

    outcomes = Counter(run_in_threads(200, attempt))

    # then exactly 50 succeed and the rest get a clear 409, stock is 0, nobody is below 0
    assert outcomes == {"redeemed": 50, "409 out_of_stock": 150}
    assert stock(item) == 0
    balances = Counter(balance(m) for m in members)
    assert balances == {0: 50, 100: 150}
    assert Redemption.objects.filter(item=item).count() == 50
    assert_books_balance(tenant)


def test_a_member_with_points_for_3_redeeming_10_times_at_once_gets_3(tenant):
    partner_config(tenant, "http://127.0.0.1:9")
    member = member_with(tenant, 300)
    client = client_of(member)
    item = reward(tenant, point_cost=100)  # unlimited stock: points are the only limit

    def attempt(i):
        response = client.post(
            "/api/v1/redemptions", {"itemId": str(item.pk)}, format="json", HTTP_IDEMPOTENCY_KEY=f"spend-{i}"
        )
        return outcome(response)

    outcomes = Counter(run_in_threads(10, attempt))

    assert outcomes == {"redeemed": 3, "422 insufficient_points": 7}
    assert balance(member) == 0
    assert Redemption.objects.filter(member=member).count() == 3
    assert_books_balance(tenant)


def test_the_same_idempotency_key_20_times_at_once_is_one_redemption(tenant):
    partner_config(tenant, "http://127.0.0.1:9")
    member = member_with(tenant, 1000)
    client = client_of(member)
    item = reward(tenant, point_cost=100, stock=20)

    def attempt(i):
        response = client.post(
            "/api/v1/redemptions", {"itemId": str(item.pk)}, format="json", HTTP_IDEMPOTENCY_KEY="only-once"
        )
        body = response.json()
        return response.status_code, body.get("redemptionId") or body["errors"][0]["code"]

    results = run_in_threads(20, attempt)

    # one redemption; every answer is it (created or replayed) or "still in flight, retry"
    assert Redemption.objects.filter(member=member).count() == 1
    only = str(Redemption.objects.get(member=member).pk)
    assert {r for r in results if r[0] == 201} == {(201, only)}
    assert {r for r in results if r[0] != 201} <= {(409, "idempotency_key_in_flight")}
    assert (balance(member), stock(item)) == (900, 19)
    # and a retry after the race gets the same redemption
    again = client.post(
        "/api/v1/redemptions", {"itemId": str(item.pk)}, format="json", HTTP_IDEMPOTENCY_KEY="only-once"
    )
    assert again.json()["redemptionId"] == only
    assert_books_balance(tenant)
