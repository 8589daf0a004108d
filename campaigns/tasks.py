"""Celery tasks for campaigns and cohorts: take ids, call a service, safe to run twice."""

import logging

from celery import shared_task
from django.utils import timezone

from campaigns import cohorts, services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, platform=True)
def campaigns_schedule_run() -> int:
    """End the campaigns whose endAt has passed (every minute, from beat)."""
    return len(services.campaigns_schedule_run(now=timezone.now()).ended)


@shared_task(acks_late=True, tenant_of="campaigns.CohortRun")
def cohort_recompute_run(run_id: str) -> dict | None:
    """Carry out one queued cohort recompute (a failure is recorded on the run, not retried)."""
    run = cohorts.cohort_recompute(run_id=run_id)
    if run is None:
        return None
    return {"run": str(run.pk), "status": run.status, "membersAfter": run.members_after}


@shared_task(acks_late=True, platform=True)
def cohorts_recompute_due() -> int:
    """Queue a recompute of every dynamic cohort not computed in the last 24 hours."""
    runs = cohorts.cohorts_recompute_due(now=timezone.now())
    logger.info("cohorts due", extra={"requested": len(runs)})
    return len(runs)
