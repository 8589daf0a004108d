"""The outbox relay: publishes outbound events at least once, in position order (so in order
per member), to the member's WebSocket group and to the tenant's webhooks.

An event is published in the transaction that marks it published: its frame goes to the
member's channel-layer group and its webhook deliveries are recorded, then `published_at` is
set and the transaction commits. A process that dies anywhere before that commit leaves the
event unpublished, and the next run (triggered after every commit that writes events, and
swept every few seconds by beat) publishes it again: nothing is lost, and what was already
sent may be sent twice, which consumers de-duplicate by event id. One relay runs at a time
(a PostgreSQL advisory lock), which keeps the order.
"""

import logging
from contextlib import contextmanager

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from prometheus_client import Counter

from rewards.models import OutboxEvent
from rewards.notifications import GROUP_MESSAGE_TYPE, frame, member_group
from tenants.tasks import webhook_endpoint_drain_task
from tenants.webhooks import webhook_deliveries_enqueue, webhook_endpoints_active

logger = logging.getLogger(__name__)

BATCH = 200
RELAY_LOCK = 7_801_123_000_001  # pg advisory lock key of the relay
PUBLISHED = Counter("loyalty_outbox_published_total", "Outbound events published by the relay", ["type"])
FRAMES_SENT = Counter("loyalty_member_frames_sent_total", "Frames sent to member WebSocket groups", ["type"])


def envelope(event: OutboxEvent) -> dict:
    """An outbound event as webhooks and the event log carry it."""
    return {
        "eventId": str(event.event_id),
        "type": event.type,
        "tenantId": str(event.tenant_id),
        "occurredAt": event.occurred_at.isoformat(),
        "schemaVersion": event.schema_version,
        "correlationId": event.correlation_id,
        "memberRef": event.member_ref,
        "position": event.position,
        "data": event.data,
    }


@contextmanager
def _relay_lock():
    """True while this process is the only relay (always, off PostgreSQL)."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [RELAY_LOCK])
        held = cursor.fetchone()[0]
    try:
        yield held
    finally:
        if held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [RELAY_LOCK])


def _publish_batch() -> int:
    layer = get_channel_layer()
    with transaction.atomic():
        events = list(
            OutboxEvent.objects.filter(published_at__isnull=True, position__isnull=False).order_by("position")[:BATCH]
        )
        # The batch's webhook endpoints in one query, and its frames sent in one event loop, in
        # position order (a loop per event costs a thread and a Redis connection each time).
        active = webhook_endpoints_active({event.tenant_id for event in events})
        sends = []
        endpoints = set()
        for event in events:
            member_frame = frame(event)
            if member_frame is not None and layer is not None:
                message = {"type": GROUP_MESSAGE_TYPE, "frame": member_frame, "position": event.position}
                sends.append((member_group(event.tenant_id, event.member_ref), message))
            endpoints.update(
                webhook_deliveries_enqueue(
                    tenant_id=event.tenant_id, envelope=envelope(event), active=active[event.tenant_id]
                )
            )
        if sends:
            async_to_sync(_frames_send)(layer, sends)
        for event in events:
            PUBLISHED.labels(type=event.type).inc()
        for _, message in sends:
            FRAMES_SENT.labels(type=message["frame"]["type"]).inc()
        if events:
            OutboxEvent.objects.filter(pk__in=[event.pk for event in events]).update(published_at=timezone.now())
        for endpoint_id in sorted(endpoints, key=str):
            transaction.on_commit(lambda endpoint_id=endpoint_id: _drain_soon(endpoint_id))
    return len(events)


async def _frames_send(layer, sends: list[tuple[str, dict]]) -> None:
    """Each (group, message) to the channel layer, one after another (a member's frames keep
    their order)."""
    for group, message in sends:
        await layer.group_send(group, message)


def _drain_soon(endpoint_id) -> None:
    try:
        webhook_endpoint_drain_task.delay(str(endpoint_id))
    except Exception as exc:  # noqa: BLE001 - the webhook sweep drains it instead
        logger.warning("webhook drain not queued", extra={"endpoint": str(endpoint_id), "error": str(exc)})


def outbox_relay_run() -> int:
    """Publish every unpublished event, oldest position first; how many were published
    (0 when another relay is at work: it publishes them)."""
    published = 0
    while True:
        with _relay_lock() as held:
            if not held:
                break
            while True:
                count = _publish_batch()
                published += count
                if count < BATCH:
                    break
        # A transaction that committed while this relay was finishing had its own relay find
        # the lock held and give up: look once more after letting go, or its events would
        # wait for the beat sweep.
        if not OutboxEvent.objects.filter(published_at__isnull=True, position__isnull=False).exists():
            break
    if published:
        logger.info("outbox published", extra={"events": published})
    return published


@shared_task(name="rewards.tasks.outbox_relay", acks_late=True)
def outbox_relay() -> int:
    """Publish outbound events (after each commit that writes some, and swept by beat)."""
    return outbox_relay_run()


class _RelaySoon:
    """The on-commit callback of a transaction that wrote outbound events (one per transaction)."""

    def __call__(self) -> None:
        try:
            outbox_relay.delay()
        except Exception as exc:  # noqa: BLE001 - a commit must not fail for it; beat sweeps
            logger.warning("outbox relay not queued", extra={"error": str(exc)})


def relay_after_commit() -> None:
    """Have the relay publish what the current transaction wrote once it commits."""
    if not settings.OUTBOX_RELAY_ON_COMMIT:
        return
    queued = transaction.get_connection().run_on_commit
    if not any(isinstance(callback, _RelaySoon) for _, callback, _ in queued):
        transaction.on_commit(_RelaySoon())
