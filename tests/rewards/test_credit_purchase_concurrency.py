"""Credit purchases racing on real PostgreSQL connections and a real HTTP gateway: one
Idempotency-Key sent 20 times at once charges and credits once; a purchase whose answer was
lost settles exactly once however many reconcilers and late answers race for it."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from rewards import credit, selectors, services
from rewards.models import CreditPurchase, EarnedLot, OutboxEvent, Transfer
from rewards.payments import ChargeResult, payment_gateway
from rewards.services import member_token_issue
from tests.factories import MemberFactory, TenantFactory
from tests.rewards.credit_helpers import (
    PURCHASES,
    assert_purchase_credited_once,
    purchase_transfers,
    sandbox_charges,
)
from tests.rewards.test_concurrency import assert_ledger_holds_in_every_tenant, run_together

pytestmark = pytest.mark.django_db(transaction=True)

RETRIES = 20
STARTING_BALANCE = 70


@pytest.fixture
def buyer(tenant):
    member = MemberFactory(tenant=tenant)
    services.points_adjust(tenant=tenant, member=member, points=STARTING_BALANCE, reason="float", actor="test")
    # Another tenant with its own activity: the invariants must hold in every tenant.
    bystander = MemberFactory(tenant=TenantFactory())
    services.points_adjust(tenant=bystander.tenant, member=bystander, points=35, reason="float", actor="test")
    return member


@pytest.mark.parametrize("caller", ["api_key", "member_token"])
def test_one_idempotency_key_sent_20_times_at_once_charges_and_credits_once(tenant, buyer, package, sandbox, caller):
    # given 20 retries of one purchase, with one Idempotency-Key, released at once
    body = {"packageId": str(package.pk), "paymentToken": "tok_approve"}
    if caller == "api_key":
        body["memberRef"] = buyer.external_ref
    token, _ = member_token_issue(member=buyer)

    def send(i):
        client = APIClient()
        if caller == "api_key":
            client.credentials(HTTP_X_API_KEY=tenant.raw_api_key)
        else:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = client.post(PURCHASES, body, format="json", HTTP_IDEMPOTENCY_KEY="buy-storm-1")
        return response.status_code, response.headers.get("Idempotent-Replayed"), response.json()

    results = run_together(RETRIES, send)

    # then one request bought, the others were replays of it or told to retry
    assert all(status < 500 for status, _, _ in results), results
    originals = [body for status, replayed, body in results if status == 201 and replayed is None]
    assert len(originals) == 1, results
    for status, replayed, response_body in results:
        if status == 409:
            assert response_body["errors"][0]["code"] == "idempotency_key_in_flight", response_body
        else:
            assert status == 201, response_body
            assert response_body == originals[0]
            assert replayed in (None, "true")
    statuses = Counter(status for status, _, _ in results)
    assert statuses[201] + statuses[409] == RETRIES
    assert sum(1 for _, replayed, _ in results if replayed == "true") == statuses[201] - 1
    # one purchase, charged once at the gateway under its id, credited once
    purchase = CreditPurchase.objects.get(tenant=tenant)
    assert originals[0]["id"] == str(purchase.pk)
    charges = sandbox_charges(sandbox)
    assert list(charges) == [str(purchase.pk)]
    assert charges[str(purchase.pk)]["charged"] == 1
    assert charges[str(purchase.pk)]["requests"] == 1
    assert_purchase_credited_once(tenant, buyer, purchase)
    assert selectors.member_balance(member=buyer) == STARTING_BALANCE + package.reward_points
    assert originals[0]["balance"] == STARTING_BALANCE + package.reward_points
    assert_ledger_holds_in_every_tenant()


def pending_purchase(tenant, member, package, settings, sandbox, *, token: str = "tok_timeout") -> CreditPurchase:
    """A purchase whose gateway answer came too late, made to look two minutes old."""
    settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 0.3
    sandbox.state.delay = 1.0
    purchase = credit.credit_purchase_start(tenant=tenant, member=member, package=package, payment_token=token)
    assert purchase.status == CreditPurchase.Status.PENDING
    CreditPurchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    purchase.refresh_from_db()
    return purchase


def test_timeout_then_concurrent_reconcilers_and_the_late_answer_settle_once(
    tenant, buyer, package, sandbox, settings, api_client
):
    # given a purchase through the API whose answer timed out: pending, nothing credited
    settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 0.3
    sandbox.state.delay = 1.0
    response = api_client.post(
        PURCHASES,
        {"packageId": str(package.pk), "paymentToken": "tok_timeout", "memberRef": buyer.external_ref},
        format="json",
        HTTP_IDEMPOTENCY_KEY="slow-1",
    )
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "PENDING"
    assert selectors.member_balance(member=buyer) == STARTING_BALANCE
    assert purchase_transfers(tenant) == []
    purchase = CreditPurchase.objects.get(pk=response.json()["id"])
    CreditPurchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    late_answer = ChargeResult(
        status="APPROVED", gateway_reference=sandbox.state.results[str(purchase.pk)]["gatewayReference"]
    )

    # when two reconcilers and the late answer race to settle it
    def settle(i):
        if i == 2:
            # as long on the wire as a reconciler's lookup, so that all three reach the database together
            payment_gateway().charge_lookup(reference=str(purchase.pk))
            return "late" if credit.credit_purchase_settle(purchase=purchase, result=late_answer).settled else "lost"
        return credit.credit_purchases_reconcile()

    outcomes = run_together(3, settle)

    # then exactly one of them settled it, and the points were credited once
    winners = [o for o in outcomes[:2] if o.get("completed")] + [o for o in outcomes[2:] if o == "late"]
    assert len(winners) == 1, outcomes
    assert_purchase_credited_once(tenant, buyer, purchase)
    assert selectors.member_balance(member=buyer) == STARTING_BALANCE + package.reward_points
    assert sandbox_charges(sandbox)[str(purchase.pk)]["charged"] == 1
    assert api_client.get(f"{PURCHASES}/{purchase.pk}").json()["status"] == "COMPLETED"
    assert_ledger_holds_in_every_tenant()


def test_many_pending_purchases_reconciled_by_racing_runs_settle_once_each(tenant, buyer, package, sandbox, settings):
    # given five purchases whose answers were lost, and one the gateway declined
    pending = [pending_purchase(tenant, buyer, package, settings, sandbox) for _ in range(5)]
    declined = pending_purchase(tenant, buyer, package, settings, sandbox, token="tok_lost")
    sandbox.state.charge(str(declined.pk), {"amount": "4.99", "currency": "USD", "paymentToken": "tok_decline"})

    # when four reconcilers run at once
    reports = run_together(4, lambda i: credit.credit_purchases_reconcile())

    # then each purchase was settled by exactly one of them
    totals = Counter()
    for report in reports:
        totals.update(report)
    assert totals["completed"] == 5, reports
    assert totals["declined"] == 1, reports
    for purchase in pending:
        purchase.refresh_from_db()
        assert purchase.status == CreditPurchase.Status.COMPLETED
        assert Transfer.objects.filter(tenant=tenant, idempotency_key=f"purchase:{purchase.pk}").count() == 1
        assert EarnedLot.objects.filter(transfer_id=purchase.transfer_id).count() == 1
    declined.refresh_from_db()
    assert declined.status == CreditPurchase.Status.DECLINED and declined.transfer_id is None
    assert len(purchase_transfers(tenant)) == 5
    assert OutboxEvent.objects.filter(tenant=tenant, type="credit_purchase.completed").count() == 5
    assert selectors.member_balance(member=buyer) == STARTING_BALANCE + 5 * package.reward_points
    assert_ledger_holds_in_every_tenant()


def test_lost_charge_fails_after_the_grace_period_and_credits_nothing(
    tenant, buyer, package, sandbox, settings, api_client
):
    # given a charge request the gateway dropped without recording it
    settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 0.3
    sandbox.state.delay = 1.0
    response = api_client.post(
        PURCHASES,
        {"packageId": str(package.pk), "paymentToken": "tok_lost", "memberRef": buyer.external_ref},
        format="json",
        HTTP_IDEMPOTENCY_KEY="lost-1",
    )
    assert response.status_code == 202, response.json()
    purchase = CreditPurchase.objects.get(pk=response.json()["id"])

    # when reconciliation finds no record of it within the grace period, it waits
    CreditPurchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert credit.credit_purchases_reconcile() == {"waiting": 1}
    purchase.refresh_from_db()
    assert purchase.status == CreditPurchase.Status.PENDING

    # and after it, two racing reconcilers fail it once
    CreditPurchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(minutes=16))
    reports = run_together(2, lambda i: credit.credit_purchases_reconcile())

    assert sum(report.get("failed", 0) for report in reports) == 1, reports
    purchase.refresh_from_db()
    assert purchase.status == CreditPurchase.Status.FAILED
    assert purchase.decline_code == "not_charged"
    assert purchase.transfer_id is None
    assert purchase.attempts >= 3  # the charge and the lookups
    assert purchase_transfers(tenant) == []
    assert selectors.member_balance(member=buyer) == STARTING_BALANCE
    assert sandbox_charges(sandbox)[str(purchase.pk)]["charged"] == 0
    assert credit.credit_purchases_reconcile() == {}
    assert_ledger_holds_in_every_tenant()


def test_reconciliation_leaves_purchases_pending_while_the_gateway_is_down(tenant, buyer, package, sandbox, settings):
    purchase = pending_purchase(tenant, buyer, package, settings, sandbox)
    CreditPurchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(hours=1))
    sandbox.stop()

    assert credit.credit_purchases_reconcile() == {"gateway_unavailable": 1}

    purchase.refresh_from_db()
    assert purchase.status == CreditPurchase.Status.PENDING
    assert purchase_transfers(tenant) == []
