"""Celery tasks: take ids, call a service, safe to run twice."""

import logging

from celery import shared_task
from django.utils import timezone

from rewards.credit import credit_purchases_reconcile
from rewards.expiry import member_pending_release, member_points_expire, members_with_due_lots
from rewards.models import Member

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def lots_due_process() -> dict:
    """Find members with pending points to release or lapsed points to expire, fan out."""
    now = timezone.now()
    release, expire = members_with_due_lots(now=now)
    for member_id in release:
        member_pending_release_task.delay(str(member_id))
    for member_id in expire:
        member_points_expire_task.delay(str(member_id))
    logger.info("lots due", extra={"release": len(release), "expire": len(expire)})
    return {"release": len(release), "expire": len(expire)}


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def member_pending_release_task(member_id: str) -> int:
    member = Member.objects.select_related("tenant").get(pk=member_id)
    return member_pending_release(member=member, now=timezone.now())


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def member_points_expire_task(member_id: str) -> int:
    member = Member.objects.select_related("tenant").get(pk=member_id)
    return member_points_expire(member=member, now=timezone.now())


@shared_task(acks_late=True)
def credit_purchases_reconcile_task(purchase_ids: list[str] | None = None) -> dict:
    """Settle credit purchases the gateway did not answer in time (beat: every minute)."""
    return credit_purchases_reconcile(purchase_ids=purchase_ids)
