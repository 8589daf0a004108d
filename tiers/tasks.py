"""Celery tasks for tiers: take ids, call a service, safe to run twice."""

from celery import shared_task
from django.utils import timezone

from core.rls import tenant_scope
from tenants.models import Tenant
from tiers import qualification


@shared_task(acks_late=True, platform=True)
def tiers_reevaluate() -> int:
    """Downgrade members whose grace period is over, and move rolling windows on (beat); each
    tenant's members narrowed to that tenant."""
    now, count = timezone.now(), 0
    for tenant in Tenant.objects.order_by("pk"):
        with tenant_scope(tenant.pk):
            count += qualification.tiers_reevaluate(now=now, tenant=tenant)
    return count
