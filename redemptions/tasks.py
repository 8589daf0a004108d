"""Celery tasks of the redemption workflow. Tasks are acknowledged only when they finish
(`acks_late`) and given back to the broker if the worker dies (`reject_on_worker_lost`);
the reconciliation sweep resumes whatever a lost task left behind."""

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task(
    name="redemptions.tasks.redemption_fulfil",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
    tenant_of="redemptions.Redemption",
)
def redemption_fulfil(self, redemption_id: str) -> str:
    """Move a redemption one step on (fulfil it, or refund it); retried with backoff while
    the partner is unavailable."""
    from redemptions import workflow

    step = workflow.fulfil(redemption_id)
    if step.retry_in is not None and not self.request.is_eager:
        raise self.retry(countdown=step.retry_in)
    if step.retry_in is not None:
        # No broker (embedded defaults): run the next attempt now rather than never.
        return redemption_fulfil.apply(args=[redemption_id]).get()
    return step.outcome


def _send(redemption_id: str) -> None:
    try:
        redemption_fulfil.delay(redemption_id)
    except Exception as exc:  # noqa: BLE001 - the reconciliation sweep picks it up instead
        logger.warning("redemption fulfilment not queued", extra={"redemption": redemption_id, "error": str(exc)})


def redemption_fulfil_soon(redemption, *, force: bool = False) -> None:
    """Queue the redemption's next step once the current transaction commits."""
    if not force and not settings.REDEMPTION_FULFIL_ON_COMMIT:
        return
    redemption_id = str(redemption.pk)
    transaction.on_commit(lambda: _send(redemption_id))


@shared_task(name="redemptions.tasks.redemptions_reconcile", acks_late=True, platform=True)
def redemptions_reconcile() -> int:
    """Queue the next step of every redemption that sat still too long (after a crash, a
    lost message, a partner outage): fulfilment resumes, failures get their refund."""
    from redemptions import workflow

    ids = [str(pk) for pk in workflow.stuck(timezone.now()).values_list("pk", flat=True)[:1000]]
    for redemption_id in ids:
        _send(redemption_id)
    if ids:
        logger.info("redemptions resumed", extra={"count": len(ids)})
    return len(ids)
