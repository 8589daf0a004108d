"""Tenant webhooks against a real HTTP receiver on 127.0.0.1: signatures, ordering, retries,
dead letters and replay, the SSRF guard, the API and tenant isolation. The clock is passed in
(`now=`), so hours of backoff take no time."""

import json
import socket
import time
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tenants.models import WebhookDelivery, WebhookEndpoint
from tenants.tasks import webhooks_due_sweep
from tenants.webhooks import (
    WebhookTargetRefused,
    webhook_body,
    webhook_deliveries_enqueue,
    webhook_endpoint_create,
    webhook_endpoint_drain,
    webhook_signature_header,
    webhook_signature_verify,
    webhook_target_check,
)
from tests.core.shapes import assert_error
from tests.factories import OperatorFactory
from tests.tenants.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db

DELIVERED = WebhookDelivery.Status.DELIVERED
PENDING = WebhookDelivery.Status.PENDING
DEAD = WebhookDelivery.Status.DEAD_LETTERED


@pytest.fixture
def webhook_settings(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the receiver is on 127.0.0.1
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.5
    return settings


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def endpoint(tenant, receiver, webhook_settings) -> WebhookEndpoint:
    endpoint = webhook_endpoint_create(tenant=tenant, url=receiver.url, description="test receiver")
    receiver.secret = endpoint.secret
    return endpoint


def envelope(tenant, position: int, *, type: str = "incentive.generated") -> dict:
    return {
        "eventId": str(uuid.uuid4()),
        "type": type,
        "tenantId": str(tenant.pk),
        "occurredAt": "2030-01-01T12:00:00+00:00",
        "schemaVersion": 1,
        "correlationId": "req-42",
        "memberRef": "alice",
        "position": position,
        "data": {"incentiveId": str(uuid.uuid4()), "reward": {"currency": "POINTS", "amount": position}, "note": "Zoë"},
    }


def enqueue(tenant, *positions: int) -> list[dict]:
    events = [envelope(tenant, position) for position in positions]
    for event in events:
        webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=event)
    return events


def delivery_of(endpoint, event) -> WebhookDelivery:
    return WebhookDelivery.objects.get(endpoint=endpoint, event_id=event["eventId"])


# Signing ---------------------------------------------------------------------------------


def test_the_receiver_gets_the_signed_envelope_and_verifies_it(tenant, endpoint, receiver):
    [event] = enqueue(tenant, 7)

    result = webhook_endpoint_drain(endpoint_id=endpoint.pk)

    assert result.delivered == [event["eventId"]]
    [got] = receiver.requests
    assert got.verified is True
    assert got.event_id == event["eventId"]
    assert got.envelope == event
    assert got.body == json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    assert got.signature.startswith(f"t={got.timestamp},v1=")
    assert abs(int(got.timestamp) - time.time()) < 60
    assert delivery_of(endpoint, event).status == DELIVERED


def test_a_tampered_body_an_old_timestamp_or_another_secret_fails_verification(tenant, endpoint, receiver):
    enqueue(tenant, 1)
    webhook_endpoint_drain(endpoint_id=endpoint.pk)
    [got] = receiver.requests
    sent_at = int(got.timestamp)
    tampered = got.body.replace(b'"amount":1', b'"amount":1000')
    assert tampered != got.body

    assert webhook_signature_verify(secret=endpoint.secret, header=got.signature, body=got.body) is True
    assert webhook_signature_verify(secret=endpoint.secret, header=got.signature, body=tampered) is False
    assert webhook_signature_verify(secret="whsec_other", header=got.signature, body=got.body) is False
    # A replay of the same request six minutes later is turned away.
    later = sent_at + 301
    assert webhook_signature_verify(secret=endpoint.secret, header=got.signature, body=got.body, now=later) is False
    assert webhook_signature_verify(secret=endpoint.secret, header="", body=got.body) is False
    assert webhook_signature_verify(secret=endpoint.secret, header=f"t={sent_at}", body=got.body) is False


def test_the_receiver_refuses_a_delivery_signed_with_a_rotated_away_secret(tenant, endpoint, receiver, api_client):
    old_secret = endpoint.secret

    response = api_client.post(f"/api/v1/webhooks/{endpoint.pk}:rotate-secret")

    assert response.status_code == 200, response.content
    new_secret = response.json()["secret"]
    assert new_secret != old_secret
    receiver.secret = old_secret  # a receiver that was not told
    enqueue(tenant, 1)
    assert webhook_endpoint_drain(endpoint_id=endpoint.pk).failed
    assert [r.verified for r in receiver.requests] == [False]
    assert delivery_of(endpoint, receiver.requests[0].envelope).last_status_code == 401
    receiver.secret = new_secret
    signed = webhook_signature_header(secret=new_secret, timestamp=int(time.time()), body=b"{}")
    assert webhook_signature_verify(secret=new_secret, header=signed, body=b"{}") is True


# Enqueue -----------------------------------------------------------------------------------


def test_enqueue_twice_for_one_event_creates_one_delivery(tenant, endpoint):
    event = envelope(tenant, 1)

    first = webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=event)
    again = webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=event)

    assert first == [endpoint.pk]
    assert again == []
    [delivery] = WebhookDelivery.objects.filter(endpoint=endpoint)
    assert (delivery.event_id, delivery.status, delivery.position, delivery.payload) == (
        event["eventId"],
        PENDING,
        1,
        event,
    )


def test_enqueue_goes_to_active_subscribed_endpoints_of_the_tenant_only(tenant, other_tenant, webhook_settings):
    url = "http://127.0.0.1:9/hooks"
    every = webhook_endpoint_create(tenant=tenant, url=url, event_types=[])
    star = webhook_endpoint_create(tenant=tenant, url=url, event_types=["*"])
    points = webhook_endpoint_create(tenant=tenant, url=url, event_types=["points.credited"])
    incentives = webhook_endpoint_create(tenant=tenant, url=url, event_types=["incentive.generated", "x"])
    webhook_endpoint_create(tenant=tenant, url=url, is_active=False)
    webhook_endpoint_create(tenant=other_tenant, url=url)

    got = webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=envelope(tenant, 1))

    assert set(got) == {every.pk, star.pk, incentives.pk}
    assert points.pk not in got
    assert WebhookDelivery.objects.count() == 3
    assert set(WebhookDelivery.objects.values_list("tenant_id", flat=True)) == {tenant.pk}


# Order, retries, dead letters ---------------------------------------------------------------


def test_receiver_down_then_up_gets_every_event_in_order_once_after_deduplication(tenant, endpoint, receiver):
    # Enqueued out of position order: the position decides.
    events = enqueue(tenant, 30, 10, 20, 50, 40)
    in_order = [e["eventId"] for e in sorted(events, key=lambda e: e["position"])]
    t0 = timezone.now()

    # Down: 503s ...
    receiver.mode = 503
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0)
    assert result.failed == [in_order[0]] and not result.delivered
    assert len(receiver.requests) == 1  # the later events wait behind the first
    first = WebhookDelivery.objects.get(event_id=in_order[0])
    assert first.attempts == 1 and first.last_status_code == 503
    assert t0 + timedelta(seconds=7) <= first.next_attempt_at <= t0 + timedelta(seconds=10)
    # ... not due yet: nothing is sent ...
    assert webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(seconds=5)).failed == []
    assert len(receiver.requests) == 1
    # ... connection refused ...
    receiver.stop()
    assert webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(minutes=10)).failed == [in_order[0]]
    # ... processed but answered too late (the receiver will see it twice) ...
    receiver.start()
    receiver.mode = "hang"
    receiver.hang_seconds = 1.5
    assert webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(hours=1)).failed == [in_order[0]]

    # Up again.
    receiver.mode = "ok"
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(hours=2))

    assert result.delivered == in_order
    assert [r.event_id for r in receiver.accepted].count(in_order[0]) == 2  # once late, once again
    assert receiver.delivered_once() == in_order
    assert all(r.verified for r in receiver.accepted)
    assert [r.envelope["position"] for r in receiver.accepted[1:]] == [10, 20, 30, 40, 50]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {DELIVERED}
    log = list(first.attempt_log.order_by("at"))
    assert [a.status_code for a in log] == [503, None, None, 200]
    assert "refused" in log[1].error.lower() or "ConnectionRefused" in log[1].error
    assert log[2].error.startswith("timeout")
    assert log[0].response_body.startswith("receiver is having a bad day")
    assert len(log[0].response_body) == 1024
    assert [WebhookDelivery.objects.get(event_id=e).attempts for e in in_order[1:]] == [1, 1, 1, 1]


def test_backoff_doubles_and_is_capped(tenant, endpoint, receiver):
    [event] = enqueue(tenant, 1)
    receiver.mode = 500
    now = timezone.now()
    delays = []
    for _ in range(12):
        webhook_endpoint_drain(endpoint_id=endpoint.pk, now=now)
        delivery = delivery_of(endpoint, event)
        delays.append((delivery.next_attempt_at - now).total_seconds())
        now = delivery.next_attempt_at

    # 10 s x 2^n less up to a quarter of jitter, capped at an hour.
    for n, delay in enumerate(delays):
        nominal = min(3600, 10 * 2**n)
        assert 0.75 * nominal - 0.01 <= delay <= nominal + 0.01, (n, delays)
    assert delivery.status == PENDING and delivery.attempts == 12


def test_past_the_retry_budget_a_delivery_is_dead_lettered_and_later_ones_go_on(
    tenant, endpoint, receiver, settings, api_client, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_RETRY_BUDGET_SECONDS = 120
    first, second, third = enqueue(tenant, 1, 2, 3)
    receiver.mode = 500
    t0 = timezone.now()

    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0)
    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(seconds=60))
    assert delivery_of(endpoint, first).next_attempt_at <= t0 + timedelta(seconds=120)  # the last try at the end
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(seconds=121))

    assert result.dead_lettered == [first["eventId"]]
    assert result.failed == [second["eventId"]]  # the next one is tried at once
    dead = delivery_of(endpoint, first)
    assert (dead.status, dead.attempts, dead.last_status_code) == (DEAD, 3, 500)
    assert dead.dead_lettered_at == t0 + timedelta(seconds=121)

    receiver.mode = "ok"
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(seconds=200))
    assert result.delivered == [second["eventId"], third["eventId"]]
    assert receiver.delivered_once() == [second["eventId"], third["eventId"]]
    assert delivery_of(endpoint, first).status == DEAD

    # Replayed from the API: back in the queue, delivered by the drain queued after commit.
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api_client.post(f"/api/v1/webhooks/{endpoint.pk}/deliveries/{dead.pk}:replay")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == PENDING
    assert response.json()["replays"] == 1
    assert len(callbacks) == 1
    replayed = delivery_of(endpoint, first)
    assert (replayed.status, replayed.attempts, replayed.replays) == (DELIVERED, 4, 1)
    assert receiver.delivered_once() == [second["eventId"], third["eventId"], first["eventId"]]

    # A delivered one is not a dead letter: 409, nothing changes.
    response = api_client.post(f"/api/v1/webhooks/{endpoint.pk}/deliveries/{dead.pk}:replay")
    assert_error(response, 409, code="not_dead_lettered")


def test_replay_all_dead_letters_of_an_endpoint(tenant, endpoint, receiver, settings, api_client):
    settings.WEBHOOK_RETRY_BUDGET_SECONDS = 1
    events = enqueue(tenant, 1, 2)
    receiver.mode = 503
    t0 = timezone.now()
    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0)
    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(seconds=1))
    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(seconds=2))
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == [DEAD, DEAD]

    response = api_client.post(f"/api/v1/webhooks/{endpoint.pk}:replay-dead-letters")

    assert response.status_code == 200, response.content
    assert response.json() == {"replayed": 2}
    receiver.mode = "ok"
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk)
    assert result.delivered == [e["eventId"] for e in events]
    assert api_client.post(f"/api/v1/webhooks/{endpoint.pk}:replay-dead-letters").json() == {"replayed": 0}


def test_an_inactive_endpoint_is_not_drained(tenant, endpoint, receiver, api_client):
    enqueue(tenant, 1)

    assert api_client.delete(f"/api/v1/webhooks/{endpoint.pk}").status_code == 204
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk)

    assert result.skipped == "inactive"
    assert receiver.requests == []
    assert WebhookDelivery.objects.get().status == PENDING
    assert webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=envelope(tenant, 2)) == []


def test_the_beat_sweep_drains_endpoints_with_due_deliveries(tenant, endpoint, receiver, webhook_settings):
    webhook_settings.CELERY_TASK_ALWAYS_EAGER = True
    events = enqueue(tenant, 1, 2)

    assert webhooks_due_sweep() == 1

    assert receiver.delivered_once() == [e["eventId"] for e in events]
    assert webhooks_due_sweep() == 0


def test_a_drain_holds_off_while_another_drains_the_same_endpoint(tenant, endpoint, receiver, is_postgres):
    if not is_postgres:
        pytest.skip("advisory locks are PostgreSQL's")
    enqueue(tenant, 1)
    from django.db import connections

    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [f"webhook-endpoint:{endpoint.pk}"])
        assert webhook_endpoint_drain(endpoint_id=endpoint.pk).skipped == "locked"
        assert receiver.requests == []
    finally:
        other.close()
    assert webhook_endpoint_drain(endpoint_id=endpoint.pk).delivered


@pytest.mark.django_db(transaction=True)
def test_no_transaction_is_open_during_the_http_call(tenant, endpoint, receiver, monkeypatch):
    import tenants.webhooks as webhooks

    in_transaction = []
    real_post = webhooks._post

    def spying_post(*args, **kwargs):
        in_transaction.append(connection.in_atomic_block)
        return real_post(*args, **kwargs)

    monkeypatch.setattr(webhooks, "_post", spying_post)
    enqueue(tenant, 1, 2)

    assert len(webhook_endpoint_drain(endpoint_id=endpoint.pk).delivered) == 2
    assert in_transaction == [False, False]


# SSRF ---------------------------------------------------------------------------------------

REFUSED_URLS = [
    "http://127.0.0.1:8000/hooks",
    "http://10.1.2.3/hooks",
    "http://172.16.0.1/hooks",
    "http://192.168.1.1/hooks",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hooks",
    "http://[::ffff:10.0.0.1]/hooks",
    "http://[fe80::1]/hooks",
    "http://0.0.0.0/hooks",
    "http://100.64.0.1/hooks",
    "http://224.0.0.1/hooks",
    "http://localhost/hooks",
    "ftp://93.184.216.34/hooks",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_private_loopback_link_local_and_odd_targets_are_refused(url, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    with pytest.raises(WebhookTargetRefused) as refused:
        webhook_target_check(url)

    assert refused.value.field == "url"


def test_a_public_address_passes_and_is_what_gets_connected_to(settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    target = webhook_target_check("https://93.184.216.34:8443/in?x=1")

    assert (target.scheme, target.host, target.port, target.path) == ("https", "93.184.216.34", 8443, "/in?x=1")
    assert target.addresses == ("93.184.216.34",)


def test_a_host_with_any_private_address_is_refused_after_resolution(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.example.com":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", 443)),
            ]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    with pytest.raises(WebhookTargetRefused, match=r"10\.0\.0\.7"):
        webhook_target_check("https://hooks.example.com/in")


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/hooks", "http://10.0.0.1/", "http://169.254.169.254/", "http://[::1]/", "http://localhost/"],
)
def test_the_api_refuses_a_private_target_naming_url(url, api_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    response = api_client.post("/api/v1/webhooks", {"url": url})

    assert_error(response, 400, attr="url")
    assert not WebhookEndpoint.objects.exists()


def test_a_target_refused_at_delivery_time_is_a_failed_attempt(tenant, endpoint, receiver, settings):
    enqueue(tenant, 1)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    result = webhook_endpoint_drain(endpoint_id=endpoint.pk)

    assert result.failed and not result.delivered
    assert receiver.requests == []
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (PENDING, 1, None)
    assert delivery.last_error.startswith("refused:")
    assert "127.0.0.1" in delivery.attempt_log.get().error


def test_a_redirect_to_a_private_address_is_not_followed(tenant, endpoint, receiver, settings, monkeypatch):
    import tenants.webhooks as webhooks

    # The receiver counts as public here; everything else is judged as in production.
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    real = webhooks._address_is_public
    monkeypatch.setattr(webhooks, "_address_is_public", lambda address: address == "127.0.0.1" or real(address))
    receiver.mode = "redirect"
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data/"
    enqueue(tenant, 1)

    result = webhook_endpoint_drain(endpoint_id=endpoint.pk)

    assert result.failed
    assert len(receiver.requests) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == PENDING
    assert "169.254.169.254" in delivery.last_error and delivery.last_error.startswith("refused:")


def test_a_redirect_to_an_allowed_target_is_followed_with_the_same_signed_post(tenant, endpoint, receiver):
    receiver.mode = "redirect"
    receiver.redirect_to = f"http://127.0.0.1:{receiver.port}{receiver.redirect_final_path}"
    [event] = enqueue(tenant, 1)

    assert webhook_endpoint_drain(endpoint_id=endpoint.pk).delivered == [event["eventId"]]

    assert [r.path for r in receiver.requests] == ["/hooks", "/final"]
    assert receiver.requests[0].body == receiver.requests[1].body == webhook_body(event)
    assert receiver.accepted[0].verified


def test_redirects_stop_after_three(tenant, endpoint, receiver):
    receiver.mode = "redirect"
    receiver.redirect_to = receiver.url  # a loop
    enqueue(tenant, 1)

    assert webhook_endpoint_drain(endpoint_id=endpoint.pk).failed

    assert len(receiver.requests) == 4
    assert "redirects" in WebhookDelivery.objects.get().last_error


# API ----------------------------------------------------------------------------------------


def test_create_shows_the_secret_once(api_client, receiver, webhook_settings, tenant):
    response = api_client.post(
        "/api/v1/webhooks",
        {"url": receiver.url, "description": "CRM", "eventTypes": ["incentive.generated", "points.credited"]},
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert body["eventTypes"] == ["incentive.generated", "points.credited"]
    assert body["isActive"] is True
    endpoint = WebhookEndpoint.objects.get(pk=body["webhookId"])
    assert (endpoint.tenant, endpoint.secret) == (tenant, body["secret"])
    shown = api_client.get(f"/api/v1/webhooks/{endpoint.pk}").json()
    assert "secret" not in shown and shown["url"] == receiver.url
    listed = api_client.get("/api/v1/webhooks").json()
    assert [e["webhookId"] for e in listed["results"]] == [str(endpoint.pk)]
    assert "secret" not in listed["results"][0]


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://93.184.216.34/x"}, "url"),
        ({}, "url"),
        ({"url": "http://127.0.0.1:9/x", "eventTypes": [""]}, "eventTypes.0"),
        ({"url": "http://127.0.0.1:9/x", "eventTypes": "incentive.generated"}, "eventTypes"),
        ({"url": "http://127.0.0.1:9/x", "eventTypes": [5]}, "eventTypes.0"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_client, webhook_settings, body, attr):
    response = api_client.post("/api/v1/webhooks", body, format="json")

    assert_error(response, 400, attr=attr)
    assert not WebhookEndpoint.objects.exists()


def test_patch_changes_only_what_is_sent_and_checks_a_new_url(api_client, endpoint, settings):
    response = api_client.patch(f"/api/v1/webhooks/{endpoint.pk}", {"eventTypes": ["points.credited"]})
    assert response.status_code == 200, response.content
    assert response.json()["eventTypes"] == ["points.credited"]
    assert response.json()["url"] == endpoint.url

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    response = api_client.patch(f"/api/v1/webhooks/{endpoint.pk}", {"url": "http://10.0.0.1/hooks"})
    assert_error(response, 400, attr="url")
    endpoint.refresh_from_db()
    assert endpoint.url.startswith("http://127.0.0.1:")


def test_the_delivery_log_lists_attempts_with_status_codes(tenant, endpoint, receiver, api_client):
    first, second = enqueue(tenant, 1, 2)
    receiver.mode = 500
    t0 = timezone.now()
    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0)
    receiver.mode = "ok"
    webhook_endpoint_drain(endpoint_id=endpoint.pk, now=t0 + timedelta(minutes=1))

    response = api_client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries")

    assert response.status_code == 200, response.content
    page = response.json()
    assert [d["eventId"] for d in page["results"]] == [second["eventId"], first["eventId"]]  # newest first
    by_event = {d["eventId"]: d for d in page["results"]}
    assert [a["statusCode"] for a in by_event[first["eventId"]]["log"]] == [500, 200]
    assert by_event[first["eventId"]]["attempts"] == 2
    assert by_event[first["eventId"]]["status"] == DELIVERED
    assert by_event[first["eventId"]]["payload"] == first
    assert by_event[first["eventId"]]["log"][0]["responseBody"].startswith("receiver is having")
    assert "next" in page and "previous" in page

    only_pending = api_client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?status=PENDING").json()
    assert only_pending["results"] == []
    assert_error(api_client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries?status=LOST"), 400, attr="status")


def test_a_viewer_operator_reads_but_cannot_create_or_replay(tenant, endpoint, webhook_settings):
    from rest_framework.test import APIClient

    viewer = OperatorFactory(tenant=tenant, role="VIEWER")
    client = APIClient()
    client.force_authenticate(viewer.user)

    assert client.get("/api/v1/webhooks").status_code == 200
    assert client.post("/api/v1/webhooks", {"url": endpoint.url}).status_code == 403
    assert client.post(f"/api/v1/webhooks/{endpoint.pk}:rotate-secret").status_code == 403
    assert client.post(f"/api/v1/webhooks/{endpoint.pk}:replay-dead-letters").status_code == 403


def test_another_tenants_webhook_and_delivery_ids_are_not_found(
    tenant, other_tenant, endpoint, other_client, webhook_settings, receiver
):
    [event] = enqueue(tenant, 1)
    a_delivery = delivery_of(endpoint, event)
    WebhookDelivery.objects.filter(pk=a_delivery.pk).update(status=DEAD)
    b_endpoint = webhook_endpoint_create(tenant=other_tenant, url=receiver.url)
    a = f"/api/v1/webhooks/{endpoint.pk}"

    calls = [
        ("get", a, None),
        ("patch", a, {"description": "mine now"}),
        ("delete", a, None),
        ("post", f"{a}:rotate-secret", None),
        ("post", f"{a}:replay-dead-letters", None),
        ("get", f"{a}/deliveries", None),
        ("post", f"{a}/deliveries/{a_delivery.pk}:replay", None),
        # B's own endpoint with A's delivery id: looked up within B.
        ("post", f"/api/v1/webhooks/{b_endpoint.pk}/deliveries/{a_delivery.pk}:replay", None),
    ]
    for method, path, body in calls:
        response = getattr(other_client, method)(path, body, format="json")
        assert_error(response, 404)

    endpoint.refresh_from_db()
    assert (endpoint.description, endpoint.is_active, endpoint.secret) == ("test receiver", True, receiver.secret)
    assert delivery_of(endpoint, event).status == DEAD
    assert [e["webhookId"] for e in other_client.get("/api/v1/webhooks").json()["results"]] == [str(b_endpoint.pk)]


# Admin --------------------------------------------------------------------------------------


def test_admin_creates_an_endpoint_through_the_service_and_shows_the_secret_once(client, tenant, webhook_settings):
    from django.contrib.messages import get_messages
    from django.urls import reverse

    operator = OperatorFactory(tenant=tenant, role="OWNER")
    client.force_login(operator.user)

    response = client.post(
        reverse("admin:tenants_webhookendpoint_add"),
        {"url": "http://127.0.0.1:9/hooks", "description": "CRM", "event_types": '["*"]', "is_active": "on"},
    )

    assert response.status_code == 302, response.content
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.tenant == tenant and endpoint.secret.startswith("whsec_")
    assert any(endpoint.secret in str(m) for m in get_messages(response.wsgi_request))


def test_admin_refuses_a_private_url(client, tenant, settings):
    from django.urls import reverse

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    client.force_login(OperatorFactory(tenant=tenant, role="OWNER").user)

    response = client.post(
        reverse("admin:tenants_webhookendpoint_add"),
        {"url": "http://169.254.169.254/", "event_types": "[]", "is_active": "on"},
    )

    assert response.status_code == 200
    assert "url" in response.context["adminform"].form.errors
    assert not WebhookEndpoint.objects.exists()


def test_admin_replays_selected_dead_letters_of_its_own_tenant_only(
    client, tenant, other_tenant, endpoint, receiver, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    mine, delivered = enqueue(tenant, 1, 2)
    theirs_endpoint = webhook_endpoint_create(tenant=other_tenant, url=receiver.url)
    theirs = envelope(other_tenant, 3)
    webhook_deliveries_enqueue(tenant_id=other_tenant.pk, envelope=theirs)
    WebhookDelivery.objects.exclude(event_id=delivered["eventId"]).update(status=DEAD)
    WebhookDelivery.objects.filter(event_id=delivered["eventId"]).update(status=DELIVERED)
    client.force_login(OperatorFactory(tenant=tenant, role="SUPPORT").user)

    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("admin:tenants_webhookdelivery_changelist"),
            {"action": "replay", "_selected_action": [str(d.pk) for d in WebhookDelivery.objects.all()]},
        )

    assert response.status_code == 302
    assert delivery_of(endpoint, mine).status == PENDING
    assert delivery_of(endpoint, delivered).status == DELIVERED
    assert WebhookDelivery.objects.get(endpoint=theirs_endpoint).status == DEAD
    detail = client.get(reverse("admin:tenants_webhookdelivery_change", args=[delivery_of(endpoint, mine).pk]))
    assert detail.status_code == 200
    other = WebhookDelivery.objects.get(endpoint=theirs_endpoint)
    assert client.get(reverse("admin:tenants_webhookdelivery_change", args=[other.pk])).status_code == 404


# Through the outbox relay -------------------------------------------------------------------


@pytest.mark.relay
def test_points_moved_reach_the_receiver_through_the_outbox_relay_in_order(
    tenant, member, endpoint, receiver, api_client, django_capture_on_commit_callbacks
):
    from rewards.models import OutboxEvent
    from rewards.services import points_adjust

    api_client.patch(f"/api/v1/webhooks/{endpoint.pk}", {"eventTypes": ["points.credited"]})
    receiver.mode = 503

    with django_capture_on_commit_callbacks(execute=True):
        for points in (10, 20, 30):
            points_adjust(tenant=tenant, member=member, points=points, reason="test", actor="test")

    credited = list(OutboxEvent.objects.filter(tenant=tenant, type="points.credited").order_by("position"))
    assert len(credited) == 3
    assert [d.status for d in WebhookDelivery.objects.order_by("position")] == [PENDING] * 3
    assert len(receiver.requests) == 1  # the first failed; the others wait behind it

    receiver.mode = "ok"
    result = webhook_endpoint_drain(endpoint_id=endpoint.pk, now=timezone.now() + timedelta(minutes=1))

    assert result.delivered == [str(e.event_id) for e in credited]
    assert receiver.delivered_once() == [str(e.event_id) for e in credited]
    assert all(r.verified for r in receiver.accepted)
    got = receiver.accepted[0].envelope
    assert (got["type"], got["tenantId"], got["memberRef"], got["position"]) == (
        "points.credited",
        str(tenant.pk),
        member.external_ref,
        credited[0].position,
    )
