"""Credit packages and purchases through the API, one request at a time, against the sandbox
gateway over real HTTP (the concurrent cases are in test_credit_purchase_concurrency.py)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import IdempotencyRecord
from rewards import credit, selectors, services
from rewards.models import CreditPackage, CreditPurchase, Member, OutboxEvent, Transfer
from tenants.models import Operator
from tests.core.shapes import assert_error
from tests.factories import MemberFactory, OperatorFactory
from tests.rewards.credit_helpers import (
    PACKAGES,
    PURCHASES,
    assert_purchase_credited_once,
    buy,
    free_port,
    purchase_transfers,
    sandbox_charges,
)

pytestmark = pytest.mark.django_db


# Packages ------------------------------------------------------------------------------


def test_create_a_package_in_the_tenants_currency(api_client, tenant):
    response = api_client.post(
        PACKAGES,
        {"code": "starter", "name": "Starter", "price": "9.99", "rewardPoints": 1000, "description": "A start"},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["price"] == "9.99"
    assert body["currency"] == tenant.currency
    assert body["rewardPoints"] == 1000
    assert body["isActive"] is True
    package = CreditPackage.objects.get(pk=body["id"])
    assert package.tenant == tenant
    assert package.price == Decimal("9.99")


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"price": "0"}, "price"),
        ({"price": "-1.00"}, "price"),
        ({"price": "1.999"}, "price"),
        ({"rewardPoints": 0}, "rewardPoints"),
        ({"rewardPoints": 1.5}, "rewardPoints"),
        ({"currency": "usd"}, "currency"),
        ({"code": "has space"}, "code"),
    ],
    ids=["zero-price", "negative-price", "three-decimals", "zero-points", "fractional-points", "currency", "code"],
)
def test_invalid_package_is_refused_naming_the_field(api_client, tenant, body, attr):
    valid = {"code": "starter", "name": "Starter", "price": "9.99", "rewardPoints": 1000}

    response = api_client.post(PACKAGES, {**valid, **body}, format="json")

    assert_error(response, 400, attr=attr)
    assert not CreditPackage.objects.filter(tenant=tenant).exists()


def test_duplicate_code_is_a_conflict(api_client, tenant, package):
    response = api_client.post(
        PACKAGES, {"code": package.code, "name": "Again", "price": "1.00", "rewardPoints": 10}, format="json"
    )

    assert_error(response, 409, code="credit_package_exists", attr="code")
    assert CreditPackage.objects.filter(tenant=tenant).count() == 1


def test_update_a_package(api_client, package):
    response = api_client.patch(
        f"{PACKAGES}/{package.pk}", {"price": "5.49", "rewardPoints": 600, "isActive": False}, format="json"
    )

    assert response.status_code == 200, response.json()
    package.refresh_from_db()
    assert (package.price, package.reward_points, package.is_active) == (Decimal("5.49"), 600, False)


def test_members_see_active_packages_only_and_the_tenant_sees_all(api_client, member_client, tenant, package):
    hidden = credit.credit_package_create(
        tenant=tenant, code="retired", name="Retired", price=Decimal("1.00"), reward_points=10, is_active=False
    )

    as_tenant = api_client.get(PACKAGES)
    as_member = member_client.get(PACKAGES)

    assert as_tenant.status_code == 200 and as_member.status_code == 200
    assert {p["id"] for p in as_tenant.json()["results"]} == {str(package.pk), str(hidden.pk)}
    assert [p["id"] for p in as_member.json()["results"]] == [str(package.pk)]
    assert as_member.json()["count"] == 1
    assert member_client.get(f"{PACKAGES}/{hidden.pk}").status_code == 404
    assert member_client.get(f"{PACKAGES}/{package.pk}").status_code == 200
    assert_error(member_client.post(PACKAGES, {}, format="json"), 403)
    assert_error(member_client.patch(f"{PACKAGES}/{package.pk}", {"price": "0.01"}, format="json"), 403)


def test_viewer_operator_reads_packages_but_cannot_write(client, tenant, package):
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.VIEWER)
    client.force_login(operator.user)

    assert client.get(PACKAGES).status_code == 200
    response = client.patch(f"{PACKAGES}/{package.pk}", {"price": "0.01"}, content_type="application/json")

    assert response.status_code == 403
    package.refresh_from_db()
    assert package.price == Decimal("4.99")


def test_another_tenants_package_is_not_found(other_client, package):
    assert_error(other_client.get(f"{PACKAGES}/{package.pk}"), 404, code="credit_package_not_found")
    assert_error(other_client.patch(f"{PACKAGES}/{package.pk}", {"price": "0.01"}, format="json"), 404)
    assert other_client.get(PACKAGES).json()["count"] == 0
    package.refresh_from_db()
    assert package.price == Decimal("4.99")


# Purchases -----------------------------------------------------------------------------


def test_approved_purchase_credits_the_packages_points(api_client, tenant, member, package, sandbox):
    # given a member with 40 points
    services.points_adjust(tenant=tenant, member=member, points=40, reason="start", actor="test")

    # when the tenant's backend buys the package for them with an approving token
    response = buy(api_client, package, "tok_approve", "buy-1", memberRef=member.external_ref)

    # then the purchase completed and exactly the package's points were credited
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "COMPLETED"
    assert body["pointsAwarded"] == 500
    assert body["amountPaid"] == "4.99"
    assert body["currency"] == "USD"
    assert body["balance"] == 540
    assert body["memberRef"] == member.external_ref
    assert body["gatewayReference"].startswith("ch_")
    purchase = CreditPurchase.objects.get(pk=body["id"])
    transfer = assert_purchase_credited_once(tenant, member, purchase)
    assert body["transferId"] == str(transfer.pk)
    assert transfer.credit_balance_after == 540
    assert purchase.idempotency_key == "buy-1"
    assert purchase.resolved_at is not None
    assert selectors.member_balance(member=member) == 540
    assert selectors.ledger_verify(tenant=tenant).ok
    # the gateway charged once, for the package's price, under the purchase's id
    assert sandbox_charges(sandbox)[str(purchase.pk)] == {
        "charged": 1,
        "requests": 1,
        "status": "APPROVED",
        "amount": "4.99",
    }
    # the raw token is stored nowhere
    assert "tok_approve" not in str(CreditPurchase.objects.filter(pk=purchase.pk).values().get())
    assert purchase.payment_token_fingerprint.startswith("sha256:")
    event = OutboxEvent.objects.get(tenant=tenant, type="points.credited", data__reason="purchase")
    assert event.data["points"] == 500 and event.data["reason"] == "purchase"
    assert event.data["transferId"] == str(transfer.pk)


def test_purchase_snapshots_the_price_and_points(api_client, tenant, member, package, sandbox):
    response = buy(api_client, package, "tok_approve", "buy-1", memberRef=member.external_ref)
    credit.credit_package_update(package=package, price=Decimal("99.00"), reward_points=1)

    purchase = CreditPurchase.objects.get(pk=response.json()["id"])
    assert (purchase.amount_paid, purchase.points_awarded) == (Decimal("4.99"), 500)
    assert api_client.get(f"{PURCHASES}/{purchase.pk}").json()["pointsAwarded"] == 500


def test_member_buys_for_itself_and_a_retry_replays(member_client, tenant, member, package, sandbox):
    first = buy(member_client, package, "tok_approve", "my-key")
    again = buy(member_client, package, "tok_approve", "my-key")

    assert first.status_code == 201, first.json()
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    purchase = CreditPurchase.objects.get(pk=first.json()["id"])
    assert purchase.member == member
    assert_purchase_credited_once(tenant, member, purchase)
    assert selectors.member_balance(member=member) == 500
    assert IdempotencyRecord.objects.get(key="my-key").scope == f"member:{member.pk}"
    assert sandbox.state.report()["totalCharged"] == 1


@pytest.mark.parametrize(
    ("token", "decline_code"),
    [("tok_decline", "card_declined"), ("tok_insufficient_funds", "insufficient_funds")],
)
def test_declined_payment_is_a_402_and_credits_nothing(
    api_client, tenant, member, package, sandbox, token, decline_code
):
    services.points_adjust(tenant=tenant, member=member, points=40, reason="start", actor="test")
    transfers_before = Transfer.objects.filter(tenant=tenant).count()

    response = buy(api_client, package, token, "buy-declined", memberRef=member.external_ref)

    body = assert_error(response, 402, code="payment_declined", attr="paymentToken")
    assert decline_code in body["errors"][0]["detail"]
    assert selectors.member_balance(member=member) == 40
    assert Transfer.objects.filter(tenant=tenant).count() == transfers_before
    assert purchase_transfers(tenant) == []
    assert not OutboxEvent.objects.filter(tenant=tenant, data__reason="purchase").exists()
    purchase = CreditPurchase.objects.get(tenant=tenant)
    assert purchase.status == CreditPurchase.Status.DECLINED
    assert purchase.decline_code == decline_code
    assert purchase.transfer is None
    # the declined attempt reached the gateway once
    assert sandbox_charges(sandbox)[str(purchase.pk)]["charged"] == 1
    assert sandbox_charges(sandbox)[str(purchase.pk)]["status"] == "DECLINED"
    assert selectors.ledger_verify(tenant=tenant).ok


def test_gateway_timeout_leaves_the_purchase_pending(api_client, tenant, member, package, sandbox, settings):
    settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 0.3
    sandbox.state.delay = 1.0

    response = buy(api_client, package, "tok_timeout", "buy-slow", memberRef=member.external_ref)

    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "PENDING"
    assert body["transferId"] is None
    assert body["balance"] == 0
    assert selectors.member_balance(member=member) == 0
    assert purchase_transfers(tenant) == []
    # the gateway did charge: reconciliation will find it
    assert sandbox_charges(sandbox)[body["id"]]["status"] == "APPROVED"

    # when reconciliation runs before the purchase is old enough, nothing happens
    assert credit.credit_purchases_reconcile() == {}
    # and once it is, the purchase completes with the points credited once
    CreditPurchase.objects.filter(pk=body["id"]).update(created_at=timezone.now() - timedelta(minutes=2))
    assert credit.credit_purchases_reconcile() == {"completed": 1}
    assert credit.credit_purchases_reconcile() == {}
    assert_purchase_credited_once(tenant, member, CreditPurchase.objects.get(pk=body["id"]))
    assert selectors.member_balance(member=member) == 500
    assert api_client.get(f"{PURCHASES}/{body['id']}").json()["status"] == "COMPLETED"
    assert sandbox_charges(sandbox)[body["id"]]["charged"] == 1


def test_gateway_down_is_a_503_and_charges_nothing(api_client, tenant, member, package, sandbox, settings):
    # given nothing listening where the gateway should be
    settings.PAYMENT_GATEWAY_URL = f"http://127.0.0.1:{free_port()}"

    response = buy(api_client, package, "tok_approve", "buy-down", memberRef=member.external_ref)

    assert_error(response, 503, code="payment_gateway_unavailable")
    purchase = CreditPurchase.objects.get(tenant=tenant)
    assert purchase.status == CreditPurchase.Status.FAILED
    assert purchase.decline_code == "gateway_unavailable"
    assert selectors.member_balance(member=member) == 0
    assert purchase_transfers(tenant) == []

    # and once the gateway is back, the same request with the same key goes through
    settings.PAYMENT_GATEWAY_URL = sandbox.base_url
    retry = buy(api_client, package, "tok_approve", "buy-down", memberRef=member.external_ref)
    assert retry.status_code == 201, retry.json()
    assert selectors.member_balance(member=member) == 500
    assert sandbox.state.report()["totalCharged"] == 1


def test_idempotency_key_is_required(api_client, tenant, member, package, sandbox):
    response = api_client.post(
        PURCHASES,
        {"packageId": str(package.pk), "paymentToken": "tok_approve", "memberRef": member.external_ref},
        format="json",
    )

    assert_error(response, 400, code="idempotency_key_required", attr="Idempotency-Key")
    assert not CreditPurchase.objects.exists()
    assert sandbox.state.report()["charges"] == {}


@pytest.mark.parametrize(
    ("case", "status", "attr"),
    [
        ("unknown-package", 404, "packageId"),
        ("package-not-a-uuid", 400, "packageId"),
        ("inactive-package", 422, "packageId"),
        ("other-tenants-package", 404, "packageId"),
        ("missing-token", 400, "paymentToken"),
        ("blank-token", 400, "paymentToken"),
        ("missing-member-ref", 400, "memberRef"),
        ("unknown-member", 404, "memberRef"),
        ("closed-member", 422, "memberRef"),
    ],
)
def test_bad_purchase_input_is_refused_naming_the_field(
    api_client, tenant, other_tenant, member, package, sandbox, case, status, attr
):
    body = {"packageId": str(package.pk), "paymentToken": "tok_approve", "memberRef": member.external_ref}
    if case == "unknown-package":
        body["packageId"] = "00000000-0000-4000-8000-000000000000"
    elif case == "package-not-a-uuid":
        body["packageId"] = "pack-500"
    elif case == "inactive-package":
        credit.credit_package_update(package=package, is_active=False)
    elif case == "other-tenants-package":
        theirs = credit.credit_package_create(
            tenant=other_tenant, code="theirs", name="Theirs", price=Decimal("1.00"), reward_points=10
        )
        body["packageId"] = str(theirs.pk)
    elif case == "missing-token":
        del body["paymentToken"]
    elif case == "blank-token":
        body["paymentToken"] = ""
    elif case == "missing-member-ref":
        del body["memberRef"]
    elif case == "unknown-member":
        body["memberRef"] = "nobody"
    elif case == "closed-member":
        services.member_update(member=member, status=Member.Status.CLOSED)

    response = api_client.post(PURCHASES, body, format="json", HTTP_IDEMPOTENCY_KEY=f"bad-{case}")

    assert_error(response, status, attr=attr)
    assert not CreditPurchase.objects.exists()
    assert not Transfer.objects.exists()
    assert sandbox.state.report()["charges"] == {}


def test_member_token_cannot_buy_for_another_member(member_client, tenant, package, sandbox):
    other = MemberFactory(tenant=tenant)

    response = buy(member_client, package, "tok_approve", "k", memberRef=other.external_ref)

    assert_error(response, 400, attr="memberRef")
    assert not CreditPurchase.objects.exists()
    assert selectors.member_balance(member=other) == 0


def test_operators_cannot_buy(client, tenant, member, package, sandbox):
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.OWNER)
    client.force_login(operator.user)

    response = client.post(
        PURCHASES,
        {"packageId": str(package.pk), "paymentToken": "tok_approve", "memberRef": member.external_ref},
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY="op",
    )

    assert response.status_code == 403
    assert not CreditPurchase.objects.exists()


def test_purchase_lists_and_lookups_are_scoped(
    api_client, other_client, member_client, tenant, member, package, sandbox
):
    other_member = MemberFactory(tenant=tenant)
    mine = buy(member_client, package, "tok_approve", "a").json()["id"]
    theirs = buy(api_client, package, "tok_decline", "b", memberRef=other_member.external_ref)
    assert theirs.status_code == 402
    declined = CreditPurchase.objects.get(member=other_member)

    # the tenant sees both, and filters by member and status
    assert {p["id"] for p in api_client.get(PURCHASES).json()["results"]} == {mine, str(declined.pk)}
    by_member = api_client.get(PURCHASES, {"memberRef": other_member.external_ref}).json()["results"]
    assert [p["id"] for p in by_member] == [str(declined.pk)]
    by_status = api_client.get(PURCHASES, {"status": "COMPLETED"}).json()["results"]
    assert [p["id"] for p in by_status] == [mine]
    assert_error(api_client.get(PURCHASES, {"status": "NOPE"}), 400, attr="status")
    # the member sees only its own, and another member's purchase is not found
    assert [p["id"] for p in member_client.get(PURCHASES).json()["results"]] == [mine]
    assert member_client.get(f"{PURCHASES}/{mine}").status_code == 200
    assert_error(member_client.get(f"{PURCHASES}/{declined.pk}"), 404, code="credit_purchase_not_found")
    # another tenant sees none of it
    assert other_client.get(PURCHASES).json()["results"] == []
    assert_error(other_client.get(f"{PURCHASES}/{mine}"), 404, attr="purchaseId")
    assert_error(other_client.get(f"{PURCHASES}/not-a-uuid"), 404)


# The back office -----------------------------------------------------------------------


def test_admin_edits_packages_through_the_service_and_purchases_are_read_only(client, tenant, package):
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.OWNER)
    client.force_login(operator.user)

    added = client.post(
        reverse("admin:rewards_creditpackage_add"),
        {
            "code": "big",
            "name": "Big",
            "description": "",
            "price": "19.99",
            "currency": "",
            "reward_points": "2500",
            "is_active": "on",
            "sort_order": "1",
        },
    )

    assert added.status_code == 302, added.context["adminform"].form.errors if added.context else added
    big = CreditPackage.objects.get(tenant=tenant, code="big")
    assert (big.price, big.currency, big.reward_points) == (Decimal("19.99"), "USD", 2500)
    refused = client.post(
        reverse("admin:rewards_creditpackage_add"),
        {"code": "big", "name": "Again", "price": "1.00", "currency": "", "reward_points": "1", "sort_order": "0"},
    )
    assert refused.status_code == 200
    assert CreditPackage.objects.filter(tenant=tenant, code="big").count() == 1
    purchase = CreditPurchase.objects.create(
        tenant=tenant, member=MemberFactory(tenant=tenant), package=package, amount_paid="4.99", currency="USD",
        points_awarded=500,
    )  # fmt: skip
    assert client.get(reverse("admin:rewards_creditpurchase_change", args=[purchase.pk])).status_code == 200
    assert client.get(reverse("admin:rewards_creditpurchase_add")).status_code == 403


def test_admin_reconcile_now_settles_selected_pending_purchases(client, tenant, other_tenant, member, package, sandbox):
    # given a purchase the gateway approved but whose answer was lost
    purchase = CreditPurchase.objects.create(
        tenant=tenant, member=member, package=package, amount_paid="4.99", currency="USD", points_awarded=500
    )
    sandbox.state.charge(str(purchase.pk), {"amount": "4.99", "currency": "USD", "paymentToken": "tok_approve"})
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.SUPPORT)
    client.force_login(operator.user)

    # when the operator reconciles it from the changelist, although it is only seconds old
    response = client.post(
        reverse("admin:rewards_creditpurchase_changelist"),
        {"action": "reconcile_now", "_selected_action": [str(purchase.pk)]},
        follow=True,
    )

    # then it is completed and the points credited once
    assert response.status_code == 200
    assert_purchase_credited_once(tenant, member, purchase)
    assert selectors.member_balance(member=member) == 500
    assert any("1 completed" in str(m) for m in response.context["messages"])
