"""Insights tasks: bring the spending rollups up to date (beat, every few seconds)."""

from celery import shared_task

from insights.rollups import rollups_update


@shared_task(name="insights.tasks.rollups_update", acks_late=True, ignore_result=True)
def rollups_update_task() -> int:
    """Safe to run twice at once: the second finds the cursor locked and returns."""
    return rollups_update()
