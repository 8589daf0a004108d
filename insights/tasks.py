"""Insights tasks: bring the spending rollups up to date (beat, every few seconds)."""

from celery import shared_task

from core.rls import tenant_scope
from insights.rollups import rollups_update
from tenants.models import Tenant


@shared_task(name="insights.tasks.rollups_update", acks_late=True, ignore_result=True, platform=True)
def rollups_update_task() -> int:
    """Safe to run twice at once: the second finds the cursor locked and returns."""
    return rollups_update()


@shared_task(name="insights.tasks.reconcile", acks_late=True, ignore_result=True, platform=True)
def reconcile_task() -> int:
    """Hourly (beat): one reconciliation run per tenant, narrowed to that tenant. Safe to run
    twice: it only reads and records what it found. Returns how many drifts the runs found."""
    from insights.reconciliation import reconcile_all

    drifts = 0
    for tenant in Tenant.objects.order_by("pk"):
        with tenant_scope(tenant.pk):
            drifts += sum(run.drift_count for run in reconcile_all(tenants=[tenant]))
    return drifts
