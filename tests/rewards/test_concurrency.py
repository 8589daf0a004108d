"""Races on real PostgreSQL connections: concurrent debits never overdraw, and one
Idempotency-Key sent many times at once posts one transfer."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from rest_framework.test import APIClient

from rewards import selectors, services
from rewards.exceptions import InsufficientPoints
from rewards.models import Transfer
from tenants.models import Tenant
from tests.factories import MemberFactory, TenantFactory

STARTING_BALANCE = 200
DEBIT = 10
ATTEMPTS = 50
EXPECTED_SUCCESSES = STARTING_BALANCE // DEBIT

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(count: int, action) -> list:
    """Run action(i) for i in range(count), each in its own thread (so its own database
    connection), all released at the same moment."""
    barrier = threading.Barrier(count, timeout=30)

    def worker(i):
        try:
            barrier.wait()
            return action(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(worker, range(count)))


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


@pytest.fixture
def funded_member(tenant):
    member = MemberFactory(tenant=tenant)
    services.points_adjust(tenant=tenant, member=member, points=STARTING_BALANCE, reason="float", actor="test")
    # Another tenant with its own activity: the invariants must hold in every tenant.
    bystander = TenantFactory()
    other = MemberFactory(tenant=bystander)
    services.points_adjust(tenant=bystander, member=other, points=35, reason="float", actor="test")
    services.points_adjust(tenant=bystander, member=other, points=-5, reason="spend", actor="test")
    return member


def assert_ledger_holds_in_every_tenant() -> None:
    tenants = list(Tenant.objects.all())
    assert len(tenants) >= 2
    for tenant in tenants:
        report = selectors.ledger_verify(tenant=tenant)
        assert report.ok, (tenant.slug, report)


def debit_balances_after(member) -> list[int]:
    return sorted(Transfer.objects.filter(debit_account__member=member).values_list("debit_balance_after", flat=True))


def test_concurrent_debits_through_the_service_never_overdraw(tenant, funded_member):
    # given a balance of 200 and 50 debits of 10 released at once
    def debit(i):
        try:
            services.points_adjust(tenant=tenant, member=funded_member, points=-DEBIT, reason=f"race {i}", actor="race")
        except InsufficientPoints:
            return "refused"
        return "debited"

    # when they run on separate connections
    outcomes = Counter(run_together(ATTEMPTS, debit))

    # then exactly 20 succeed, each saw a distinct balance, and it ends at exactly zero
    assert outcomes == {"debited": EXPECTED_SUCCESSES, "refused": ATTEMPTS - EXPECTED_SUCCESSES}
    assert selectors.member_balance(member=funded_member) == 0
    assert debit_balances_after(funded_member) == list(range(0, STARTING_BALANCE, DEBIT))
    assert_ledger_holds_in_every_tenant()


def test_concurrent_debits_through_the_api_never_overdraw(tenant, funded_member):
    # given a balance of 200 and 50 API clients, one per thread
    url = f"/api/v1/members/{funded_member.external_ref}/adjustments"

    def debit(i):
        response = key_client(tenant.raw_api_key).post(url, {"points": -DEBIT, "reason": f"race {i}"}, format="json")
        return response.status_code, response.json()

    # when each posts a debit of 10 at the same moment
    results = run_together(ATTEMPTS, debit)

    # then 20 are 201 and 30 are 422 insufficient_points, and the balance ends at zero
    statuses = Counter(status for status, _ in results)
    assert statuses == {201: EXPECTED_SUCCESSES, 422: ATTEMPTS - EXPECTED_SUCCESSES}
    for status, body in results:
        if status == 422:
            assert body["errors"][0]["code"] == "insufficient_points", body
            assert body["errors"][0]["attr"] == "points", body
        else:
            assert body["balance"] >= 0, body
            assert body["transfer"]["points"] == -DEBIT, body
    seen_after = sorted(body["transfer"]["balanceAfter"] for status, body in results if status == 201)
    assert seen_after == list(range(0, STARTING_BALANCE, DEBIT))
    assert selectors.member_balance(member=funded_member) == 0
    assert debit_balances_after(funded_member) == list(range(0, STARTING_BALANCE, DEBIT))
    assert_ledger_holds_in_every_tenant()


def test_one_idempotency_key_sent_concurrently_posts_one_transfer(tenant, funded_member):
    # given 20 retries of one request, with one Idempotency-Key, released at once
    url = f"/api/v1/members/{funded_member.external_ref}/adjustments"
    transfers_before = Transfer.objects.filter(tenant=tenant).count()

    def send(i):
        response = key_client(tenant.raw_api_key).post(
            url, {"points": 5, "reason": "once"}, format="json", HTTP_IDEMPOTENCY_KEY="retry-storm-1"
        )
        return response.status_code, response.headers.get("Idempotent-Replayed"), response.json()

    results = run_together(20, send)

    # then one posted the transfer, the others were replays of it or told to retry
    assert all(status < 500 for status, _, _ in results), results
    originals = [body for status, replayed, body in results if status == 201 and replayed is None]
    assert len(originals) == 1, results
    for status, replayed, body in results:
        if status == 409:
            assert body["errors"][0]["code"] == "idempotency_key_in_flight", body
        elif replayed is not None:
            assert replayed == "true"
            assert status in (200, 201)
            assert body == originals[0]
        else:
            assert status == 201
    assert Transfer.objects.filter(tenant=tenant).count() == transfers_before + 1
    assert selectors.member_balance(member=funded_member) == STARTING_BALANCE + 5
    assert_ledger_holds_in_every_tenant()
