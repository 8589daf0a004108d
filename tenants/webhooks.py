"""Tenant webhooks: outbound events POSTed to each tenant's endpoints, signed, retried, in order.

The outbox relay calls `webhook_deliveries_enqueue` inside its transaction for every outbound
event and queues `tenants.tasks.webhook_endpoint_drain_task` after commit; celery beat sweeps
endpoints whose retries are due (`webhooks_due_sweep`).

    POST <endpoint url>
    Content-Type: application/json
    X-Webhook-Id: <eventId>                 receivers de-duplicate on it
    X-Webhook-Timestamp: <unix seconds>
    X-Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

    <the event envelope as compact JSON: exactly the bytes signed>

Per endpoint, deliveries go out strictly in `position` order: a failing one is retried with
exponential backoff and holds back the ones behind it, so a receiver never sees event n+1
before event n; past the retry budget it is dead-lettered and the next one goes. Targets are
checked against SSRF before every connection (private, loopback, link-local, ... addresses are
refused after DNS resolution and on every redirect) and the connection goes to the address
that was checked, so a second DNS answer cannot swap it.
"""

import hashlib
import hmac
import http.client
import json
import logging
import random
import secrets
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from core.exceptions import Conflict, DomainError
from core.net import address_is_public as _address_is_public
from tenants.models import Tenant, WebhookAttempt, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Webhook-Signature"
ID_HEADER = "X-Webhook-Id"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
USER_AGENT = "loyalty-platform-webhooks/1"
MAX_REDIRECTS = 3
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
RESPONSE_EXCERPT_BYTES = 1024
ENDPOINT_FIELDS = ("url", "description", "event_types", "is_active")
# One drain sends at most this many, so a task stays short; the beat sweep picks up the rest.
MAX_PER_DRAIN = 500

Status = WebhookDelivery.Status


class WebhookTargetRefused(DomainError):
    """The URL may not be called: wrong scheme, unresolvable, or a non-public address."""

    default_code = "webhook_target_refused"
    default_message = "This URL cannot receive webhooks."


# Signing ---------------------------------------------------------------------------------


def webhook_body(envelope: dict) -> bytes:
    """The request body: the envelope as compact JSON with sorted keys (the same bytes however
    the database stored it). These bytes are what is signed."""
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True, ensure_ascii=False, default=str).encode()


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under the endpoint's secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_signature_header(*, secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={webhook_signature(secret=secret, timestamp=timestamp, body=body)}"


def webhook_signature_verify(
    *, secret: str, header: str, body: bytes, tolerance_seconds: int = 300, now: float | None = None
) -> bool:
    """The receiver's check (the reference for tenants): the header's `v1` is the HMAC of
    `<t>.<body>` and `t` is within `tolerance_seconds` of now, which turns away replays."""
    timestamp, signatures = None, []
    for part in (header or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)


# SSRF guard --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookTarget:
    """A URL that passed the check, with the addresses it resolved to (connect to these)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def webhook_target_check(url: str) -> WebhookTarget:
    """Refuse (WebhookTargetRefused, field `url`) anything but an http(s) URL whose host
    resolves only to public addresses, unless settings.WEBHOOK_ALLOW_PRIVATE_TARGETS."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetRefused(f"Not a valid URL: {exc}.", field="url") from exc
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise WebhookTargetRefused("Only http and https URLs can receive webhooks.", field="url")
    host = parts.hostname
    if not host:
        raise WebhookTargetRefused("The URL has no host.", field="url")
    port = port or (443 if scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise WebhookTargetRefused(f"The host {host} cannot be resolved.", field="url") from exc
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise WebhookTargetRefused(f"The host {host} cannot be resolved.", field="url")
    if not settings.WEBHOOK_ALLOW_PRIVATE_TARGETS:
        refused = [address for address in addresses if not _address_is_public(address)]
        if refused:
            raise WebhookTargetRefused(
                f"The host {host} resolves to a private, loopback, link-local or reserved address "
                f"({refused[0]}); webhooks go to public addresses only.",
                field="url",
                code="webhook_target_private",
            )
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return WebhookTarget(scheme=scheme, host=host, port=port, path=path, addresses=addresses)


# Sending -----------------------------------------------------------------------------------


@dataclass
class AttemptOutcome:
    status_code: int | None = None
    error: str = ""
    response_body: str = ""
    duration_ms: int = 0

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _connection(target: WebhookTarget, timeout: float) -> http.client.HTTPConnection:
    if target.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)

    def pinned_connect(address, timeout=None, source_address=None):
        # Connect to the addresses that were checked, never to a fresh DNS answer (the TLS
        # handshake still names and verifies the host).
        last_error: OSError | None = None
        for ip in target.addresses:
            try:
                return socket.create_connection((ip, address[1]), timeout, source_address)
            except OSError as exc:
                last_error = exc
        raise last_error or OSError("no address to connect to")

    conn._create_connection = pinned_connect  # type: ignore[attr-defined]
    return conn


def _post(url: str, *, body: bytes, headers: dict[str, str], timeout: float) -> AttemptOutcome:
    """POST, following at most MAX_REDIRECTS redirects by hand (each target checked again).
    Never raises: refusals, timeouts and connection errors come back as the outcome's error."""
    started = time.monotonic()
    outcome = AttemptOutcome()
    try:
        for hop in range(MAX_REDIRECTS + 1):
            target = webhook_target_check(url)
            conn = _connection(target, timeout)
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                response = conn.getresponse()
                excerpt = response.read(RESPONSE_EXCERPT_BYTES)
                location = response.getheader("Location")
            finally:
                conn.close()
            outcome.status_code = response.status
            outcome.response_body = excerpt.decode("utf-8", errors="replace")
            if response.status not in REDIRECT_STATUSES or not location:
                break
            if hop == MAX_REDIRECTS:
                outcome.error = f"more than {MAX_REDIRECTS} redirects"
                break
            # The same signed POST goes to the new location, which is checked like the first.
            url = urllib.parse.urljoin(url, location)
    except WebhookTargetRefused as exc:
        outcome.status_code = None
        outcome.error = f"refused: {exc.message}"
    except TimeoutError:
        outcome.status_code = None
        outcome.error = f"timeout after {timeout:g} s"
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        outcome.status_code = None
        outcome.error = f"{type(exc).__name__}: {exc}"[:500]
    outcome.duration_ms = int((time.monotonic() - started) * 1000)
    return outcome


def _attempt(endpoint: WebhookEndpoint, delivery: WebhookDelivery) -> AttemptOutcome:
    body = webhook_body(delivery.payload)
    # Signed with the wall clock, not the drain's `now`: receivers compare it with theirs.
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: delivery.event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_signature_header(secret=endpoint.secret, timestamp=timestamp, body=body),
    }
    return _post(endpoint.url, body=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS)


# Endpoints ---------------------------------------------------------------------------------


def webhook_secret_generate() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _clean_event_types(event_types) -> list[str]:
    if event_types is None:
        return []
    if not isinstance(event_types, list) or not all(isinstance(t, str) and t.strip() for t in event_types):
        raise DomainError("A list of non-empty event type names.", field="event_types")
    return list(dict.fromkeys(t.strip() for t in event_types))


@transaction.atomic
def webhook_endpoint_create(
    *, tenant: Tenant, url: str, description: str = "", event_types: list[str] | None = None, is_active: bool = True
) -> WebhookEndpoint:
    """Create an endpoint with a new secret (the caller shows it once)."""
    webhook_target_check(url)
    return WebhookEndpoint.objects.create(
        tenant=tenant,
        url=url,
        secret=webhook_secret_generate(),
        description=description,
        event_types=_clean_event_types(event_types),
        is_active=is_active,
    )


@transaction.atomic
def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    """Change url, description, event types or the active flag; a new url is checked again."""
    unknown = set(fields) - set(ENDPOINT_FIELDS)
    if unknown:
        raise TypeError(f"unknown endpoint fields: {sorted(unknown)}")
    if "url" in fields and fields["url"] != endpoint.url:
        webhook_target_check(fields["url"])
    if "event_types" in fields:
        fields["event_types"] = _clean_event_types(fields["event_types"])
    for name, value in fields.items():
        setattr(endpoint, name, value)
    endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


@transaction.atomic
def webhook_endpoint_secret_rotate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Replace the secret at once: the next attempt is signed with the new one."""
    endpoint.secret = webhook_secret_generate()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


def webhook_endpoint_deactivate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending (deliveries still pending wait; reactivating resumes them). The endpoint
    and its delivery log are kept."""
    return webhook_endpoint_update(endpoint=endpoint, is_active=False)


# Deliveries --------------------------------------------------------------------------------


def webhook_endpoints_active(tenant_ids) -> dict:
    """The active endpoints of each of `tenant_ids` (one query), for a relay batch to hand to
    `webhook_deliveries_enqueue` instead of a query per event."""
    found: dict = {tenant_id: [] for tenant_id in tenant_ids}
    for endpoint in WebhookEndpoint.objects.filter(tenant_id__in=list(found), is_active=True).order_by("pk"):
        found[endpoint.tenant_id].append(endpoint)
    return found


def webhook_deliveries_enqueue(*, tenant_id, envelope: dict, active=None) -> list:
    """Called inside the outbox relay's transaction: one PENDING delivery of the envelope per
    active endpoint of the tenant that subscribes to its type (`active`: the tenant's active
    endpoints, already read). Returns the ids of the endpoints that got a new delivery; a repeat
    of the same eventId creates nothing."""
    event_type = str(envelope.get("type") or "")
    event_id = str(envelope["eventId"])
    if active is None:
        active = WebhookEndpoint.objects.filter(tenant_id=tenant_id, is_active=True)
    endpoints = [endpoint for endpoint in active if endpoint.subscribes_to(event_type)]
    if not endpoints:
        return []
    now = timezone.now()
    rows = [
        WebhookDelivery(
            tenant_id=tenant_id,
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            position=envelope.get("position"),
            payload=envelope,
            next_attempt_at=now,
        )
        for endpoint in endpoints
    ]
    # The unique (endpoint, event_id) turns a repeat into nothing; the ids chosen here tell
    # which rows were really inserted.
    WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    inserted = WebhookDelivery.objects.filter(pk__in=[row.pk for row in rows]).values_list("endpoint_id", flat=True)
    return list(inserted)


def _replay(deliveries: QuerySet[WebhookDelivery], *, now: datetime) -> int:
    """Put the dead letters among `deliveries` back in the queue, due now, as a new series of
    attempts with the full retry budget; how many."""
    return deliveries.filter(status=Status.DEAD_LETTERED).update(
        status=Status.PENDING,
        next_attempt_at=now,
        first_attempt_at=None,
        series_attempts=0,
        dead_lettered_at=None,
        replays=F("replays") + 1,
    )


@transaction.atomic
def webhook_delivery_replay(*, delivery: WebhookDelivery, now: datetime | None = None) -> WebhookDelivery:
    """Send a dead letter again: back to PENDING, due now, as a new series of attempts with
    the full retry budget. Anything but a dead letter is a 409."""
    now = now or timezone.now()
    updated = _replay(WebhookDelivery.objects.filter(pk=delivery.pk), now=now)
    if not updated:
        raise Conflict("Only a dead-lettered delivery can be replayed.", code="not_dead_lettered")
    delivery.refresh_from_db()
    _drain_after_commit(delivery.endpoint_id)
    return delivery


@transaction.atomic
def webhook_dead_letters_replay(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> int:
    """Replay every dead letter of the endpoint; they go out again in position order."""
    now = now or timezone.now()
    replayed = _replay(WebhookDelivery.objects.filter(endpoint=endpoint), now=now)
    if replayed:
        _drain_after_commit(endpoint.pk)
    return replayed


def webhook_deliveries_replay(*, deliveries: QuerySet[WebhookDelivery], now: datetime | None = None) -> int:
    """Replay the dead letters among `deliveries` (the admin's action); others are skipped."""
    replayed = 0
    for delivery in deliveries.filter(status=Status.DEAD_LETTERED).order_by("position", "created_at"):
        try:
            webhook_delivery_replay(delivery=delivery, now=now)
        except Conflict:
            continue  # replayed or changed meanwhile
        replayed += 1
    return replayed


def _drain_after_commit(endpoint_id) -> None:
    from tenants.tasks import webhook_endpoint_drain_task

    transaction.on_commit(lambda: webhook_endpoint_drain_task.delay(str(endpoint_id)))


# Draining ----------------------------------------------------------------------------------


@dataclass
class DrainResult:
    delivered: list[str] = field(default_factory=list)  # event ids, in the order sent
    failed: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    skipped: str = ""  # why nothing was tried: "inactive", "locked", "missing"


def webhook_retry_delay(series_attempts: int) -> timedelta:
    """Backoff after the n-th failed attempt of a series: base * 2^(n-1) capped, less up to a
    quarter at random so that endpoints failing together do not retry together."""
    base = settings.WEBHOOK_RETRY_BASE_SECONDS
    cap = settings.WEBHOOK_RETRY_MAX_DELAY_SECONDS
    delay = min(cap, base * 2 ** min(max(series_attempts - 1, 0), 30))
    return timedelta(seconds=delay * random.uniform(0.75, 1.0))  # noqa: S311 - jitter, not a secret


@contextmanager
def _drain_lock(endpoint_id) -> Iterator[bool]:
    """One drain per endpoint at a time: a session advisory lock on PostgreSQL (held across
    the HTTP calls without holding a transaction); elsewhere, no lock."""
    if connection.vendor != "postgresql":
        yield True
        return
    key = f"webhook-endpoint:{endpoint_id}"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key])
        acquired = cursor.fetchone()[0]
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


def _next_pending(endpoint_id) -> WebhookDelivery | None:
    return (
        WebhookDelivery.objects.filter(endpoint_id=endpoint_id, status=Status.PENDING)
        .order_by(F("position").asc(nulls_last=True), "created_at", "id")
        .first()
    )


@transaction.atomic
def _attempt_record(*, delivery: WebhookDelivery, outcome: AttemptOutcome, at: datetime) -> str:
    """Log the attempt and move the delivery on: DELIVERED, PENDING with its next attempt
    scheduled, or DEAD_LETTERED once its series has run past the retry budget."""
    WebhookAttempt.objects.create(
        delivery=delivery,
        at=at,
        status_code=outcome.status_code,
        error=outcome.error,
        response_body=outcome.response_body,
        duration_ms=outcome.duration_ms,
    )
    first = delivery.first_attempt_at or at
    series = delivery.series_attempts + 1
    changes: dict = {
        "attempts": F("attempts") + 1,
        "series_attempts": series,
        "first_attempt_at": first,
        "last_attempt_at": at,
        "last_status_code": outcome.status_code,
        "last_error": outcome.error or ("" if outcome.ok else f"HTTP {outcome.status_code}"),
    }
    budget = timedelta(seconds=settings.WEBHOOK_RETRY_BUDGET_SECONDS)
    if outcome.ok:
        changes.update(status=Status.DELIVERED, delivered_at=at)
    elif at - first >= budget:
        changes.update(status=Status.DEAD_LETTERED, dead_lettered_at=at)
    else:
        # The last retry lands on the budget's end, so the series spans all of it.
        changes["next_attempt_at"] = min(at + webhook_retry_delay(series), first + budget)
    # Only a PENDING delivery moves: a concurrent change (none expected under the lock) wins.
    WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.PENDING).update(**changes)
    return changes.get("status", Status.PENDING)


def webhook_endpoint_drain(*, endpoint_id, now: datetime | None = None) -> DrainResult:
    """Send the endpoint's due deliveries strictly in position order until one fails or the
    next is not due yet. No transaction is open during an HTTP call. `now` fixes the clock
    (tests); otherwise each step reads the time."""
    result = DrainResult()
    endpoint = WebhookEndpoint.objects.filter(pk=endpoint_id).first()
    if endpoint is None:
        result.skipped = "missing"
        return result
    if not endpoint.is_active:
        result.skipped = "inactive"
        return result
    with _drain_lock(endpoint.pk) as acquired:
        if not acquired:
            result.skipped = "locked"
            return result
        for _ in range(MAX_PER_DRAIN):
            clock = now or timezone.now()
            delivery = _next_pending(endpoint.pk)
            if delivery is None or delivery.next_attempt_at > clock:
                break
            outcome = _attempt(endpoint, delivery)
            status = _attempt_record(delivery=delivery, outcome=outcome, at=now or timezone.now())
            log = {"endpoint": str(endpoint.pk), "event": delivery.event_id, "status_code": outcome.status_code}
            if status == Status.DELIVERED:
                result.delivered.append(delivery.event_id)
                continue
            if status == Status.DEAD_LETTERED:
                logger.warning("webhook dead-lettered", extra={**log, "error": outcome.error})
                result.dead_lettered.append(delivery.event_id)
                continue
            logger.info("webhook attempt failed", extra={**log, "error": outcome.error})
            result.failed.append(delivery.event_id)
            break
    return result
