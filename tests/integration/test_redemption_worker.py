"""Redemptions fulfilled by real Celery workers (separate processes, Redis broker) against the
sandbox partner over real HTTP: workers killed with SIGKILL mid-fulfilment lose nothing and
order nothing twice; a partner that is down opens its circuit and every redemption is
refunded, with nothing left stuck."""

import random
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest

from redemptions import services, workflow
from redemptions.models import FulfilmentAttempt, Redemption
from redemptions.partners.sandbox import PartnerSandbox
from redemptions.tasks import redemptions_reconcile
from tests.integration.conftest import celery_worker_start, celery_worker_stop
from tests.redemptions.helpers import assert_books_balance, balance, member_with, partner_config, reward, stock

pytestmark = [pytest.mark.integration, pytest.mark.fulfil, pytest.mark.django_db(transaction=True)]

FINAL = {"COMPLETED", "REFUNDED"}


@pytest.fixture
def sandbox():
    partner = PartnerSandbox().start()
    yield partner
    partner.stop()


def wait_until_final(ids, *, timeout: float = 120, reconcile: bool = True) -> dict:
    """Sweep (as beat would) until every redemption is final; their statuses."""
    deadline = time.monotonic() + timeout
    while True:
        found = dict(Redemption.objects.filter(pk__in=ids).values_list("pk", "status"))
        if set(found.values()) <= FINAL:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"not final after {timeout} s: {Counter(found.values())}")
        if reconcile:
            redemptions_reconcile()
        time.sleep(0.5)


def test_workers_killed_mid_fulfilment_lose_nothing_and_order_nothing_twice(celery_queue, sandbox, tenant, settings):
    # given 20 redemptions for a partner that takes 0.3 s per order (so a kill lands mid-call)
    settings.REDEMPTION_STUCK_AFTER = timedelta(seconds=1)
    worker_env = {
        "REDEMPTION_LEASE_MARGIN_SECONDS": "1",
        "REDEMPTION_MAX_ATTEMPTS": "10",
        "REDEMPTION_RETRY_BASE_SECONDS": "0.2",
        "REDEMPTION_STUCK_AFTER_SECONDS": "1",
        "OUTBOX_RELAY_ON_COMMIT": "0",
    }
    sandbox.set_mode("slow", delay=0.3)
    partner_config(tenant, sandbox.url, timeout="2", max_attempts=1, threshold=1000)
    item = reward(tenant, point_cost=100, stock=20)
    members = [member_with(tenant, 250) for _ in range(20)]
    ids = [
        services.redemption_request(tenant=tenant, member=member, item_id=item.pk)[0].pk for member in members
    ]  # each queued for fulfilment on commit

    # when a worker is killed with SIGKILL 20 times at random moments, and restarted each time
    rng = random.Random(7)
    kills_mid_flight = 0
    for _ in range(20):
        worker = celery_worker_start(celery_queue, **worker_env)
        redemptions_reconcile()  # what beat would do: resume what the last kill left behind
        time.sleep(rng.uniform(0.2, 1.2))
        kills_mid_flight += Redemption.objects.filter(pk__in=ids, status="FULFILLING").exists()
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)

    # and a last worker is left to finish
    worker = celery_worker_start(celery_queue, **worker_env)
    try:
        statuses = wait_until_final(ids)
    finally:
        celery_worker_stop(worker)

    # then every redemption is COMPLETED or REFUNDED, points are conserved, and the partner
    # holds exactly one effective order for each completed redemption and none for the others
    assert kills_mid_flight >= 5, "the kills did not land during fulfilment"
    orders = sandbox.orders()
    for redemption in Redemption.objects.filter(pk__in=ids).select_related("member"):
        order = orders.get(str(redemption.pk), {"placed": 0, "void": False})
        assert order["placed"] <= 1, (redemption.pk, order)
        effective = 0 if order["void"] else order["placed"]
        if redemption.status == "COMPLETED":
            assert effective == 1, (redemption.pk, order)
            assert balance(redemption.member) == 150
        else:
            assert effective == 0, (redemption.pk, order)
            assert balance(redemption.member) == 250
    completed = sum(1 for status in statuses.values() if status == "COMPLETED")
    assert stock(item) == 20 - completed
    assert completed >= 15  # a partner that is up fulfils nearly all of them despite the kills
    assert_books_balance(tenant)
    print(f"20 kills ({kills_mid_flight} mid-fulfilment): {Counter(statuses.values())}")


def test_a_partner_that_is_down_opens_its_circuit_and_everything_is_refunded(celery_queue, sandbox, tenant, settings):
    # given a partner answering 503 to everything, with a circuit that opens after 3 failures
    settings.REDEMPTION_STUCK_AFTER = timedelta(seconds=2)
    sandbox.set_mode("fail")
    config = partner_config(tenant, sandbox.url, timeout="1", max_attempts=2, threshold=3, reset=600)
    item = reward(tenant, point_cost=100, stock=10)
    members = [member_with(tenant, 100) for _ in range(10)]
    worker = celery_worker_start(
        celery_queue,
        REDEMPTION_MAX_ATTEMPTS="3",
        REDEMPTION_RETRY_BASE_SECONDS="0.2",
        REDEMPTION_STUCK_AFTER_SECONDS="2",
        OUTBOX_RELAY_ON_COMMIT="0",
    )
    try:
        # when ten members redeem
        ids = [services.redemption_request(tenant=tenant, member=m, item_id=item.pk)[0].pk for m in members]

        # then each is retried, then failed and refunded: points and stock back
        statuses = wait_until_final(ids, reconcile=False)
    finally:
        celery_worker_stop(worker)

    assert set(statuses.values()) == {"REFUNDED"}
    assert all(balance(m) == 100 for m in members)
    assert stock(item) == 10
    assert set(Redemption.objects.filter(pk__in=ids).values_list("failure_code", flat=True)) == {"partner_unavailable"}
    # the circuit opened: the partner saw the calls that tripped it, the rest were not made
    outcomes = Counter(FulfilmentAttempt.objects.filter(partner_config=config).values_list("outcome", flat=True))
    assert outcomes["circuit_open"] >= 20
    requests = sum(order["requests"] for order in sandbox.orders().values())
    assert requests <= 3 + 2  # the tripping failures (and one in-flight retry at most)
    assert not any(order["placed"] for order in sandbox.orders().values())
    # and nothing is left for reconciliation, even once its window has passed
    assert not workflow.stuck().exists()
    assert redemptions_reconcile() == 0
    assert_books_balance(tenant)
