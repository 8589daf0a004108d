"""Celery tasks for tiers: take ids, call a service, safe to run twice."""

from celery import shared_task
from django.utils import timezone

from tiers import qualification


@shared_task(acks_late=True)
def tiers_reevaluate() -> int:
    """Downgrade members whose grace period is over, and move rolling windows on (beat)."""
    return qualification.tiers_reevaluate(now=timezone.now())
