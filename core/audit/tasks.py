"""Audit log retention: entries older than AUDIT_LOG_RETENTION_DAYS are deleted once a day
(celery beat), so the log does not grow without end. 0 keeps every entry."""

from datetime import timedelta

from auditlog import get_logentry_model
from celery import shared_task
from django.conf import settings
from django.utils import timezone

# Rows per DELETE: each statement stays short, so it never holds locks long enough to slow
# the writes that add entries.
PURGE_BATCH_SIZE = 5000


def audit_log_purge(*, retention_days: int, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete the entries older than `retention_days`, `batch_size` at a time; how many went."""
    if retention_days <= 0:
        return 0
    entries = get_logentry_model().objects
    old = entries.filter(timestamp__lt=timezone.now() - timedelta(days=retention_days))
    deleted = 0
    while True:
        batch = list(old.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not batch:
            return deleted
        count, _ = entries.filter(pk__in=batch).delete()
        deleted += count


@shared_task(acks_late=True, platform=True)
def audit_log_retention_apply() -> int:
    """Safe to run twice: a second run finds nothing older than the cutoff left."""
    return audit_log_purge(retention_days=settings.AUDIT_LOG_RETENTION_DAYS)
