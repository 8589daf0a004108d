"""Insights tasks: bring the spending rollups up to date (beat, every few seconds)."""

from celery import shared_task

from insights.rollups import rollups_update


@shared_task(name="insights.tasks.rollups_update", acks_late=True, ignore_result=True)
def rollups_update_task() -> int:
    """Safe to run twice at once: the second finds the cursor locked and returns."""
    return rollups_update()


@shared_task(name="insights.tasks.reconcile", acks_late=True, ignore_result=True)
def reconcile_task() -> int:
    """Hourly (beat): one reconciliation run per tenant. Safe to run twice: it only reads and
    records what it found. Returns how many drifts the runs found."""
    from insights.reconciliation import reconcile_all

    return sum(run.drift_count for run in reconcile_all())
