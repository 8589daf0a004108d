"""Releasing pending points and expiring lapsed ones, member by member."""

import logging
from datetime import datetime, timedelta

from django.db import transaction

from rewards.contributions import PointsChange, points_changed
from rewards.ledger import points_transfer, system_account_get
from rewards.models import Account, EarnedLot, Member, Transfer
from rewards.outbox import outbox_write

logger = logging.getLogger(__name__)


def _lock(member: Member, kind: str) -> Account:
    return Account.objects.select_for_update().get(member=member, kind=kind)


@transaction.atomic
def member_pending_release(*, member: Member, now: datetime) -> int:
    """Move the member's pending points whose returns window has passed into the balance."""
    # The pending account opens with the first pending earning; before that nothing is held.
    pending = Account.objects.select_for_update().filter(member=member, kind=Account.Kind.PENDING).first()
    if pending is None:
        return 0
    lots = list(
        EarnedLot.objects.select_for_update()
        .filter(member=member, pending_until__isnull=False, pending_until__lte=now)
        .order_by("id")
    )
    points = sum(lot.remaining for lot in lots)
    if points > 0:
        available = _lock(member, Account.Kind.MEMBER)
        key = f"release:{member.pk}:{min(lot.pk for lot in lots)}:{max(lot.pk for lot in lots)}:{points}"
        points_transfer(
            tenant=member.tenant,
            debit=pending,
            credit=available,
            amount=points,
            kind=Transfer.Kind.MATURED,
            idempotency_key=key,
            reason="returns window over",
            reference_type="lots",
            reference_id=",".join(str(lot.pk) for lot in lots)[:128],
            explanation={"lots": [{"lotId": lot.pk, "points": lot.remaining} for lot in lots]},
        )
    EarnedLot.objects.filter(pk__in=[lot.pk for lot in lots]).update(pending_until=None)
    return points


@transaction.atomic
def member_points_expire(*, member: Member, now: datetime) -> int:
    """Expire what is left of the member's lots that have lapsed (points.expired)."""
    account = _lock(member, Account.Kind.MEMBER)
    lots = list(
        EarnedLot.objects.select_for_update()
        .filter(member=member, remaining__gt=0, pending_until__isnull=True, expires_at__lte=now)
        .order_by("expires_at", "id")
    )
    points = sum(lot.remaining for lot in lots)
    if points <= 0:
        return 0
    transfer = points_transfer(
        tenant=member.tenant,
        debit=account,
        credit=system_account_get(tenant=member.tenant, kind=Account.Kind.EXPIRY),
        amount=points,
        kind=Transfer.Kind.EXPIRY,
        idempotency_key=f"expiry:{member.pk}:{lots[0].pk}:{lots[-1].pk}:{points}",
        reason="points expired",
        reference_type="lots",
        reference_id=",".join(str(lot.pk) for lot in lots)[:128],
        explanation={
            "lots": [
                {"lotId": lot.pk, "points": lot.remaining, "expiresAt": lot.expires_at.isoformat()} for lot in lots
            ]
        },
    ).transfer
    EarnedLot.objects.filter(pk__in=[lot.pk for lot in lots]).update(remaining=0)
    outbox_write(
        tenant=member.tenant,
        type="points.expired",
        member_ref=member.external_ref,
        data={
            "memberRef": member.external_ref,
            "points": points,
            "transferId": str(transfer.pk),
            "balanceAfter": transfer.debit_balance_after,
        },
    )
    # Listeners (tier qualification) take expired points back from the month they were earned in.
    by_month: dict = {}
    for lot in lots:
        month = lot.created_at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        by_month[month] = by_month.get(month, 0) + lot.remaining
    for month, lapsed in by_month.items():
        change = PointsChange(member.tenant, member, -lapsed, "expiry", f"expiry:{transfer.pk}", earned_at=month)
        points_changed(change)
    return points


@transaction.atomic
def member_expiry_notice(*, member: Member, now: datetime, within: timedelta) -> int:
    """Tell the member (points.expiring) about spendable points that expire within `within`
    and that they have not been told about yet; each lot is announced once."""
    lots = list(
        EarnedLot.objects.select_for_update()
        .filter(
            member=member,
            remaining__gt=0,
            pending_until__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + within,
            expiry_noticed_at__isnull=True,
        )
        .order_by("expires_at", "id")
    )
    points = sum(lot.remaining for lot in lots)
    if points <= 0:
        return 0
    EarnedLot.objects.filter(pk__in=[lot.pk for lot in lots]).update(expiry_noticed_at=now)
    outbox_write(
        tenant=member.tenant,
        type="points.expiring",
        member_ref=member.external_ref,
        occurred_at=now,
        data={
            "memberRef": member.external_ref,
            "points": points,
            "expiresAt": lots[0].expires_at.isoformat(),
            "lots": [
                {"lotId": lot.pk, "points": lot.remaining, "expiresAt": lot.expires_at.isoformat()} for lot in lots
            ],
        },
    )
    return points


def members_with_expiring_lots(*, now: datetime, within: timedelta, limit: int = 10_000) -> list:
    """Ids of members with points expiring within `within` they have not been told about."""
    return list(
        EarnedLot.objects.filter(
            remaining__gt=0,
            pending_until__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + within,
            expiry_noticed_at__isnull=True,
        )
        .values_list("member_id", flat=True)
        .distinct()[:limit]
    )


def members_with_due_lots(*, now: datetime, limit: int = 10_000) -> tuple[list, list]:
    """Ids of members with pending lots to release and with lapsed lots to expire."""
    release = (
        EarnedLot.objects.filter(pending_until__isnull=False, pending_until__lte=now)
        .values_list("member_id", flat=True)
        .distinct()[:limit]
    )
    expire = (
        EarnedLot.objects.filter(remaining__gt=0, pending_until__isnull=True, expires_at__lte=now)
        .values_list("member_id", flat=True)
        .distinct()[:limit]
    )
    return list(release), list(expire)
