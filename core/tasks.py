from celery import shared_task
from django.conf import settings
from django.utils import timezone

from core.models import IdempotencyRecord


@shared_task(acks_late=True, platform=True)
def idempotency_records_purge() -> int:
    """Forget Idempotency-Keys older than IDEMPOTENCY_KEY_TTL (at least 24 h)."""
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
