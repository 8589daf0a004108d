"""Celery tasks: take ids, call a service, safe to run twice."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from rewards.credit import credit_purchases_reconcile
from rewards.expiry import (
    member_expiry_notice,
    member_pending_release,
    member_points_expire,
    members_with_due_lots,
    members_with_expiring_lots,
)
from rewards.models import Member
from rewards.relay import outbox_relay  # noqa: F401 - the relay's task lives with it (imported by outbox writers)

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, platform=True)
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


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5, tenant_of="rewards.Member")
def member_pending_release_task(member_id: str) -> int:
    member = Member.objects.select_related("tenant").get(pk=member_id)
    return member_pending_release(member=member, now=timezone.now())


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5, tenant_of="rewards.Member")
def member_points_expire_task(member_id: str) -> int:
    member = Member.objects.select_related("tenant").get(pk=member_id)
    return member_points_expire(member=member, now=timezone.now())


@shared_task(acks_late=True, platform=True)
def credit_purchases_reconcile_task(purchase_ids: list[str] | None = None) -> dict:
    """Settle credit purchases the gateway did not answer in time (beat: every minute)."""
    return credit_purchases_reconcile(purchase_ids=purchase_ids)


@shared_task(acks_late=True, platform=True)
def points_expiring_notify() -> int:
    """Tell members about points that expire soon (beat: hourly); each lot once."""
    now, within = timezone.now(), timedelta(days=settings.POINTS_EXPIRING_NOTICE_DAYS)
    members = members_with_expiring_lots(now=now, within=within)
    for member_id in members:
        member_expiry_notice_task.delay(str(member_id))
    return len(members)


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5, tenant_of="rewards.Member")
def member_expiry_notice_task(member_id: str) -> int:
    member = Member.objects.select_related("tenant").get(pk=member_id)
    return member_expiry_notice(
        member=member, now=timezone.now(), within=timedelta(days=settings.POINTS_EXPIRING_NOTICE_DAYS)
    )
