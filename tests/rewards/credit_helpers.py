"""Credit purchase test helpers: the sandbox gateway in-process, packages, and what moved."""

import json
import socket
import urllib.request
from decimal import Decimal

import pytest

from rewards import credit
from rewards.models import CreditPurchase, EarnedLot, OutboxEvent, Transfer
from rewards.payments.sandbox import sandbox_start

PURCHASES = "/api/v1/credit-purchases"
PACKAGES = "/api/v1/credit-packages"


@pytest.fixture
def sandbox(settings):
    """The sandbox gateway on a free port, with the platform pointed at it."""
    server, url = sandbox_start(delay=1.5)
    settings.PAYMENT_GATEWAY = "http"
    settings.PAYMENT_GATEWAY_URL = url
    settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 3
    yield server
    server.stop()


@pytest.fixture
def package(tenant):
    return credit.credit_package_create(
        tenant=tenant, code="pack-500", name="500 points", price=Decimal("4.99"), reward_points=500
    )


def sandbox_charges(server) -> dict:
    """What the sandbox says it charged, read over HTTP as an operator would."""
    with urllib.request.urlopen(f"{server.base_url}/_sandbox/charges", timeout=5) as response:
        return json.load(response)["charges"]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def buy(client, package, token: str, key: str, **extra):
    body = {"packageId": str(package.pk), "paymentToken": token, **extra}
    return client.post(PURCHASES, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def purchase_transfers(tenant) -> list[Transfer]:
    return list(Transfer.objects.filter(tenant=tenant, kind=Transfer.Kind.PURCHASE))


def credited_events(tenant) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(tenant=tenant, type="points.credited", data__reason="purchase"))


def assert_purchase_credited_once(tenant, member, purchase: CreditPurchase) -> Transfer:
    """One PURCHASE transfer of the package's points, one lot, one of each outbox event."""
    purchase.refresh_from_db()
    assert purchase.status == CreditPurchase.Status.COMPLETED
    transfers = purchase_transfers(tenant)
    assert len(transfers) == 1, transfers
    transfer = transfers[0]
    assert purchase.transfer_id == transfer.pk
    assert transfer.idempotency_key == f"purchase:{purchase.pk}"
    assert transfer.amount == purchase.points_awarded
    assert transfer.credit_account.member_id == member.pk
    assert transfer.debit_account.kind == "PURCHASE" and transfer.debit_account.member_id is None
    assert EarnedLot.objects.filter(transfer=transfer, points=purchase.points_awarded).count() == 1
    assert len(credited_events(tenant)) == 1
    assert OutboxEvent.objects.filter(tenant=tenant, type="credit_purchase.completed").count() == 1
    return transfer
