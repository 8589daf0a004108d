"""Fulfilment partner adapters against the sandbox partner, over real HTTP, with the circuit
breaker's state in the real Redis."""

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from redemptions.partners import (
    CircuitOpen,
    FulfilmentRequest,
    HttpPartnerAdapter,
    PartnerAdapter,
    PartnerRejected,
    PartnerTimeout,
    PartnerUnavailable,
    circuit_health,
    circuit_reset,
    partner_adapter,
)
from redemptions.partners.sandbox import PartnerSandbox

GIFT_CARD = "GIFT_CARD"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def order(kind: str = GIFT_CARD, **changes) -> FulfilmentRequest:
    request = FulfilmentRequest(
        redemption_id=str(uuid.uuid4()),
        kind=kind,
        item_id=str(uuid.uuid4()),
        sku="SKU-1",
        item_name="Coffee voucher",
        quantity=1,
        member_ref="M-42",
        cash_value=Decimal("25.00"),
        currency="USD",
    )
    return replace(request, **changes)


def calls(outcome: str, partner: str = "acme") -> float:
    return REGISTRY.get_sample_value("loyalty_partner_calls_total", {"partner": partner, "outcome": outcome}) or 0.0


def trip(adapter, sandbox) -> FulfilmentRequest:
    """Fail one fulfilment: its max_attempts (3) failures reach the failure threshold (3)."""
    sandbox.set_mode("fail")
    request = order()
    with pytest.raises(PartnerUnavailable):
        adapter.fulfil(request)
    return request


def sandbox_http(sandbox, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{sandbox.url}{path}", data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def wait_until(condition, *, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never held")
        time.sleep(0.01)


@pytest.mark.parametrize(
    "kind, path, reference_kind, prefix",
    [
        ("GIFT_CARD", "/gift-cards", "giftCardCode", "GC-"),
        ("MERCHANDISE", "/shipments", "shipmentReference", "SHP-"),
        ("TRAVEL", "/bookings", "bookingReference", "BK-"),
        ("STATEMENT_CREDIT", "/statement-credits", "creditReference", "CR-"),
        ("DIGITAL", "/digital-codes", "digitalCode", "DG-"),
    ],
)
def test_each_kind_is_ordered_on_its_path_and_answers_its_reference(
    partner_sandbox, partner_settings, kind, path, reference_kind, prefix
):
    request = order(kind)

    result = partner_adapter(partner_settings, kind).fulfil(request)

    assert result.reference_kind == reference_kind
    assert result.reference.startswith(prefix)
    assert result.partner_order_id.startswith("ord_")
    assert result.details["status"] == "PLACED"
    assert result.details["cashValue"] == "25.00"
    assert result.details["memberRef"] == "M-42"
    assert partner_sandbox.orders() == {
        request.redemption_id: {"placed": 1, "void": False, "requests": 1, "kind": path}
    }


def test_the_same_key_twice_places_one_order_and_answers_it_again(partner_sandbox, partner_settings):
    request = order()

    first = partner_adapter(partner_settings, GIFT_CARD).fulfil(request)
    again = partner_adapter(partner_settings, GIFT_CARD).fulfil(request)

    assert again == first
    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 1
    assert partner_sandbox.orders()[request.redemption_id]["requests"] == 2


def test_another_order_under_a_used_key_is_refused_and_may_be_placed(partner_sandbox, partner_settings):
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    request = order()
    adapter.fulfil(request)

    with pytest.raises(PartnerRejected) as refused:
        adapter.fulfil(replace(request, quantity=2))

    assert refused.value.maybe_placed is True
    assert refused.value.retryable is False
    assert partner_sandbox.orders()[request.redemption_id]["requests"] == 2  # not retried


def test_a_flaky_partner_is_retried_until_it_places_the_order_once(partner_sandbox, partner_settings, caplog):
    partner_sandbox.set_mode("flaky", every=2)
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    first, second = order(), order()
    ok, unavailable = calls("ok"), calls("unavailable")

    adapter.fulfil(first)  # request 1: answered
    with caplog.at_level(logging.WARNING, logger="redemptions.partners.http"):
        result = adapter.fulfil(second)  # request 2: 503, request 3: placed

    assert result.reference_kind == "giftCardCode"
    orders = partner_sandbox.orders()
    assert orders[first.redemption_id]["requests"] == 1
    assert orders[second.redemption_id] == {"placed": 1, "void": False, "requests": 2, "kind": "/gift-cards"}
    failed = [record for record in caplog.records if getattr(record, "redemption", None) == second.redemption_id]
    assert len(failed) == 1
    assert failed[0].partner == "acme"
    assert failed[0].error.startswith("PartnerUnavailable")
    assert (calls("ok") - ok, calls("unavailable") - unavailable) == (2, 1)


def test_a_partner_that_is_down_is_unavailable_after_max_attempts_and_nothing_is_placed(
    partner_sandbox, partner_settings
):
    partner_sandbox.set_mode("fail")
    request = order()

    with pytest.raises(PartnerUnavailable) as down:
        partner_adapter(partner_settings, GIFT_CARD).fulfil(request)

    # The third failure also opened the circuit, but the caller sees what happened.
    assert type(down.value) is PartnerUnavailable
    assert down.value.retryable is True
    assert down.value.maybe_placed is False
    assert partner_sandbox.orders()[request.redemption_id] == {
        "placed": 0,
        "void": False,
        "requests": 3,
        "kind": "/gift-cards",
    }


def test_an_unreachable_partner_is_unavailable(partner_settings):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = replace(partner_settings, base_url=f"http://127.0.0.1:{port}", failure_threshold=10)

    with pytest.raises(PartnerUnavailable) as unreachable:
        partner_adapter(nowhere, GIFT_CARD).fulfil(order())

    assert type(unreachable.value) is PartnerUnavailable
    assert unreachable.value.maybe_placed is False


def test_a_rejection_is_not_retried_and_leaves_the_circuit_closed(partner_sandbox, partner_settings):
    partner_sandbox.set_mode("reject")
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    requests = [order() for _ in range(partner_settings.failure_threshold + 1)]

    for request in requests:
        with pytest.raises(PartnerRejected) as rejected:
            adapter.fulfil(request)
        assert rejected.value.retryable is False
        assert rejected.value.maybe_placed is False

    orders = partner_sandbox.orders()
    assert [orders[request.redemption_id]["requests"] for request in requests] == [1, 1, 1, 1]
    assert [orders[request.redemption_id]["placed"] for request in requests] == [0, 0, 0, 0]
    assert circuit_health(partner_settings) == {"state": "closed", "failures": 0, "openedAt": None}


def test_a_timeout_may_have_placed_the_order_and_the_retries_never_place_it_twice(partner_sandbox, partner_settings):
    partner = replace(partner_settings, failure_threshold=10)  # the circuit is other tests' subject
    adapter = partner_adapter(partner, GIFT_CARD)
    partner_sandbox.set_mode("timeout", delay=1.5)  # past the 1 s timeout
    request = order()

    with pytest.raises(PartnerTimeout) as timed_out:
        adapter.fulfil(request)

    assert timed_out.value.maybe_placed is True
    assert timed_out.value.retryable is True
    assert partner_sandbox.orders()[request.redemption_id]["requests"] == 3
    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 1
    found = adapter.lookup(redemption_id=request.redemption_id)  # lookups are answered at once
    assert found is not None
    assert found.reference_kind == "giftCardCode"
    partner_sandbox.set_mode("ok")
    assert adapter.fulfil(request) == found
    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 1


def test_a_dropped_connection_is_a_timeout_and_the_lookup_finds_nothing(partner_sandbox, partner_settings):
    adapter = partner_adapter(replace(partner_settings, failure_threshold=10), GIFT_CARD)
    partner_sandbox.set_mode("lost", delay=0.2)  # dropped before the client gives up
    request = order()

    with pytest.raises(PartnerTimeout) as lost:
        adapter.fulfil(request)

    assert lost.value.maybe_placed is True
    assert partner_sandbox.orders()[request.redemption_id]["requests"] == 3
    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 0
    assert adapter.lookup(redemption_id=request.redemption_id) is None


def test_a_voided_order_is_gone_and_no_order_is_placed_under_its_key_again(partner_sandbox, partner_settings):
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    request = order()
    adapter.fulfil(request)

    assert adapter.void(redemption_id=request.redemption_id) is True

    assert adapter.lookup(redemption_id=request.redemption_id) is None
    with pytest.raises(PartnerRejected) as refused:
        adapter.fulfil(request)
    assert refused.value.maybe_placed is False
    assert adapter.void(redemption_id=request.redemption_id) is True  # again: still void
    sandboxed = partner_sandbox.orders()[request.redemption_id]
    assert (sandboxed["placed"], sandboxed["void"]) == (1, True)


def test_voiding_a_key_never_placed_refuses_a_late_order_under_it(partner_sandbox, partner_settings):
    adapter = partner_adapter(partner_settings, "DIGITAL")
    request = order("DIGITAL")

    assert adapter.void(redemption_id=request.redemption_id) is True

    assert adapter.lookup(redemption_id=request.redemption_id) is None
    with pytest.raises(PartnerRejected):
        adapter.fulfil(request)
    sandboxed = partner_sandbox.orders()[request.redemption_id]
    assert (sandboxed["placed"], sandboxed["void"]) == (0, True)


def test_a_partner_refusing_to_void_answers_false_and_the_order_stands(partner_sandbox, partner_settings):
    adapter = partner_adapter(partner_settings, "MERCHANDISE")
    request = order("MERCHANDISE")
    placed = adapter.fulfil(request)
    partner_sandbox.set_mode("reject")

    assert adapter.void(redemption_id=request.redemption_id) is False

    assert adapter.lookup(redemption_id=request.redemption_id) == placed
    assert partner_sandbox.orders()[request.redemption_id]["void"] is False


def test_the_lookup_of_a_key_never_seen_is_none(partner_sandbox, partner_settings):
    assert partner_adapter(partner_settings, GIFT_CARD).lookup(redemption_id=str(uuid.uuid4())) is None


def test_the_circuit_opens_at_the_failure_threshold_and_then_calls_nobody(partner_sandbox, partner_settings):
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    before = datetime.now(UTC)
    trip(adapter, partner_sandbox)
    after = datetime.now(UTC)
    partner_sandbox.set_mode("ok")
    refused_before = calls("circuit_open")
    request = order()

    with pytest.raises(CircuitOpen) as refused:
        adapter.fulfil(request)

    assert refused.value.maybe_placed is False
    assert request.redemption_id not in partner_sandbox.orders()
    assert calls("circuit_open") - refused_before == 1  # refused once: a refusal is not retried
    health = circuit_health(partner_settings)
    assert (health["state"], health["failures"]) == ("open", 3)
    assert before <= health["openedAt"] <= after


def test_an_open_circuit_knows_when_it_opened_to_the_fraction_of_a_second(partner_sandbox, partner_settings):
    # So a 1-second reset timeout is not up to a second short.
    partner = replace(partner_settings, failure_threshold=1, max_attempts=1)
    partner_sandbox.set_mode("fail")
    before = datetime.now(UTC)
    with pytest.raises(PartnerUnavailable):
        partner_adapter(partner, GIFT_CARD).fulfil(order())
    after = datetime.now(UTC)

    assert before <= circuit_health(partner)["openedAt"] <= after


def test_after_the_reset_timeout_a_successful_call_closes_the_circuit(partner_sandbox, partner_settings):
    partner_settings = replace(partner_settings, reset_timeout_seconds=1)
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    trip(adapter, partner_sandbox)
    partner_sandbox.set_mode("ok")
    time.sleep(1.1)  # reset_timeout_seconds=1

    request = order()
    adapter.fulfil(request)

    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 1
    assert circuit_health(partner_settings) == {"state": "closed", "failures": 0, "openedAt": None}


def test_a_failed_trial_call_opens_the_circuit_again(partner_sandbox, partner_settings):
    # a reset timeout longer than the retries' backoff (up to ~2.3 s in all), so the retry after
    # the failed trial finds the circuit open again rather than half-open once more
    partner_settings = replace(partner_settings, reset_timeout_seconds=3)
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    trip(adapter, partner_sandbox)
    time.sleep(3.1)  # still failing
    request = order()

    with pytest.raises(CircuitOpen):
        adapter.fulfil(request)

    assert partner_sandbox.orders()[request.redemption_id]["requests"] == 1  # the trial, then refused
    assert circuit_health(partner_settings)["state"] == "open"


def test_an_operator_closes_the_circuit(partner_sandbox, partner_settings):
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    trip(adapter, partner_sandbox)
    partner_sandbox.set_mode("ok")

    circuit_reset(partner_settings)

    assert circuit_health(partner_settings) == {"state": "closed", "failures": 0, "openedAt": None}
    request = order()
    adapter.fulfil(request)
    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 1


def test_a_timeout_that_trips_the_circuit_still_says_the_order_may_be_placed(partner_sandbox, partner_settings):
    partner = replace(partner_settings, failure_threshold=1)
    partner_sandbox.set_mode("timeout", delay=1.5)
    request = order()

    # Attempt 1 times out (placed) and opens the circuit; attempt 2 is refused by it.
    with pytest.raises(PartnerTimeout) as timed_out:
        partner_adapter(partner, GIFT_CARD).fulfil(request)

    assert timed_out.value.maybe_placed is True
    assert not isinstance(timed_out.value, CircuitOpen)
    assert partner_sandbox.orders()[request.redemption_id]["requests"] == 1
    assert partner_sandbox.orders()[request.redemption_id]["placed"] == 1
    assert circuit_health(partner)["state"] == "open"


def test_every_adapter_for_a_tenants_partner_sees_one_circuit(partner_sandbox, partner_settings):
    trip(partner_adapter(partner_settings, GIFT_CARD), partner_sandbox)
    partner_sandbox.set_mode("ok")
    request = order("DIGITAL")

    with pytest.raises(CircuitOpen):
        partner_adapter(replace(partner_settings), "DIGITAL").fulfil(request)

    assert request.redemption_id not in partner_sandbox.orders()


def test_each_tenant_has_its_own_circuit(partner_sandbox, partner_settings):
    trip(partner_adapter(partner_settings, GIFT_CARD), partner_sandbox)
    partner_sandbox.set_mode("ok")
    other_tenant = replace(partner_settings, tenant_id=str(uuid.uuid4()))

    result = partner_adapter(other_tenant, GIFT_CARD).fulfil(order())

    assert result.reference
    assert circuit_health(other_tenant)["state"] == "closed"
    assert circuit_health(partner_settings)["state"] == "open"


SEPARATE_WORKER = """
import json, sys
from decimal import Decimal
from django.conf import settings
settings.configure(REDIS_URL=sys.argv[1])
from redemptions.partners import FulfilmentRequest, PartnerSettings, circuit_health, partner_adapter
partner = PartnerSettings(**json.loads(sys.argv[2]))
request = FulfilmentRequest(**json.loads(sys.argv[3]), cash_value=Decimal("1.00"))
try:
    partner_adapter(partner, request.kind).fulfil(request)
    error = None
except Exception as exc:
    error = type(exc).__name__
print(json.dumps({"error": error, "state": circuit_health(partner)["state"]}))
"""


def test_the_circuit_is_shared_with_another_worker_process_through_redis(partner_sandbox, partner_settings, settings):
    assert settings.REDIS_URL, "this test needs the real Redis"
    trip(partner_adapter(partner_settings, GIFT_CARD), partner_sandbox)
    partner_sandbox.set_mode("ok")
    request = {k: v for k, v in asdict(order()).items() if k != "cash_value"}

    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            SEPARATE_WORKER,
            settings.REDIS_URL,
            json.dumps(asdict(partner_settings)),
            json.dumps(request),
        ],
        cwd=PROJECT_ROOT,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert json.loads(worker.stdout) == {"error": "CircuitOpen", "state": "open"}
    assert request["redemption_id"] not in partner_sandbox.orders()


@pytest.mark.parametrize("redis_url", ["", "redis://127.0.0.1:1/0"], ids=["no-redis", "redis-unreachable"])
def test_without_redis_the_circuit_lives_in_the_process(partner_sandbox, partner_settings, settings, redis_url):
    settings.REDIS_URL = redis_url
    adapter = partner_adapter(partner_settings, GIFT_CARD)
    trip(adapter, partner_sandbox)
    partner_sandbox.set_mode("ok")
    request = order()

    with pytest.raises(CircuitOpen):
        adapter.fulfil(request)

    assert request.redemption_id not in partner_sandbox.orders()
    assert circuit_health(partner_settings)["state"] == "open"


def test_the_partners_credentials_are_sent_as_a_bearer_token(partner_settings):
    sandbox = PartnerSandbox(token="s3cret").start()
    try:
        partner = replace(partner_settings, base_url=sandbox.url, credentials="s3cret")
        assert partner_adapter(partner, GIFT_CARD).fulfil(order()).reference

        request = order()
        with pytest.raises(PartnerRejected):
            partner_adapter(replace(partner, credentials="stale"), GIFT_CARD).fulfil(request)
        assert sandbox.orders()[request.redemption_id]["requests"] == 1
        assert sandbox.orders()[request.redemption_id]["placed"] == 0
    finally:
        sandbox.stop()


class BookingDesk:
    """A partner's own adapter, as REDEMPTION_PARTNER_ADAPTERS would name it."""

    def __init__(self, settings):
        self.settings = settings

    def fulfil(self, request):
        raise NotImplementedError

    def void(self, *, redemption_id):
        raise NotImplementedError

    def lookup(self, *, redemption_id):
        raise NotImplementedError


def test_a_setting_replaces_the_adapter_for_one_kind(settings, partner_settings):
    settings.REDEMPTION_PARTNER_ADAPTERS = {"TRAVEL": f"{__name__}.BookingDesk"}

    travel = partner_adapter(partner_settings, "TRAVEL")

    assert isinstance(travel, BookingDesk)
    assert isinstance(travel, PartnerAdapter)
    assert travel.settings is partner_settings
    assert isinstance(partner_adapter(partner_settings, GIFT_CARD), HttpPartnerAdapter)
    with pytest.raises(ValueError, match="PONY"):
        partner_adapter(partner_settings, "PONY")


def test_calls_to_one_slow_partner_run_side_by_side(partner_sandbox, partner_settings):
    adapter = partner_adapter(replace(partner_settings, timeout_seconds=10), GIFT_CARD)
    partner_sandbox.set_mode("slow", delay=3)
    first, second = order(), order()
    results = {}

    def fulfil(request):
        results[request.redemption_id] = adapter.fulfil(request)

    threads = [threading.Thread(target=fulfil, args=(request,)) for request in (first, second)]
    threads[0].start()
    wait_until(lambda: first.redemption_id in partner_sandbox.orders())
    threads[1].start()
    wait_until(lambda: second.redemption_id in partner_sandbox.orders())

    # The second request reached the partner while the first was still waiting for its answer.
    assert partner_sandbox.orders()[first.redemption_id]["placed"] == 0
    for thread in threads:
        thread.join(timeout=30)
    assert set(results) == {first.redemption_id, second.redemption_id}


def test_the_sandbox_is_driven_over_http(partner_sandbox):
    key = {"Idempotency-Key": "k-1", "Content-Type": "application/json"}
    flaky = {"mode": "flaky", "delay": 0.0, "every": 3}

    assert sandbox_http(partner_sandbox, "POST", "/_sandbox/mode", {"mode": "flaky", "every": 3}) == (200, flaky)
    assert sandbox_http(partner_sandbox, "GET", "/_sandbox/mode") == (200, flaky)
    assert sandbox_http(partner_sandbox, "POST", "/_sandbox/mode", {"mode": "sideways"})[0] == 400
    assert sandbox_http(partner_sandbox, "POST", "/gift-cards", b"{not json", key) == (400, {"error": "invalid_json"})
    assert sandbox_http(partner_sandbox, "POST", "/gift-cards", {"sku": "S"}, key) == (
        400,
        {"error": "invalid_itemName"},
    )
    assert sandbox_http(partner_sandbox, "POST", "/gift-cards", {}, {}) == (400, {"error": "idempotency_key_required"})
    assert sandbox_http(partner_sandbox, "POST", "/_sandbox/reset") == (200, {"status": "reset"})
    assert sandbox_http(partner_sandbox, "GET", "/_sandbox/mode")[1]["mode"] == "ok"
    assert sandbox_http(partner_sandbox, "GET", "/_sandbox/orders") == (200, {})
