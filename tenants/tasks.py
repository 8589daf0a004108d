"""Celery tasks: take ids, call a service, safe to run twice."""

import logging
from dataclasses import asdict

from celery import shared_task
from django.utils import timezone

from tenants.selectors import webhook_endpoints_due
from tenants.webhooks import webhook_endpoint_drain

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def webhook_endpoint_drain_task(endpoint_id: str) -> dict:
    """Send an endpoint's due deliveries in order (the outbox relay queues it after commit)."""
    return asdict(webhook_endpoint_drain(endpoint_id=endpoint_id))


@shared_task(acks_late=True)
def webhooks_due_sweep() -> int:
    """Beat, every 30 s: drain the endpoints whose retries are due."""
    endpoint_ids = webhook_endpoints_due(now=timezone.now())
    for endpoint_id in endpoint_ids:
        webhook_endpoint_drain_task.delay(str(endpoint_id))
    if endpoint_ids:
        logger.info("webhook endpoints due", extra={"endpoints": len(endpoint_ids)})
    return len(endpoint_ids)
