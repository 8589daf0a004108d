"""Outbound events, written in the caller's transaction (delivery is the relay's job)."""

from django.utils import timezone
from django_guid import get_guid

from rewards.models import OutboxEvent
from rewards.relay import relay_after_commit
from tenants.models import Tenant


def outbox_write(*, tenant: Tenant, type: str, data: dict, member_ref: str = "", occurred_at=None) -> OutboxEvent:
    """Record an outbound event carrying the current request id as its correlation id; the
    relay publishes it once the transaction commits."""
    event = OutboxEvent.objects.create(
        tenant=tenant,
        type=type,
        data=data,
        member_ref=member_ref,
        occurred_at=occurred_at or timezone.now(),
        correlation_id=get_guid() or "",
    )
    # After the row exists: outside a transaction the callback runs at once.
    relay_after_commit()
    return event


def points_announce(
    *, tenant: Tenant, member, credited: bool, points: int, reason: str, transfer, balance_after, **extra
) -> OutboxEvent:
    """`points.credited` or `points.debited` for a change of the member's balance by `transfer`."""
    return outbox_write(
        tenant=tenant,
        type="points.credited" if credited else "points.debited",
        member_ref=member.external_ref,
        data={
            "memberRef": member.external_ref,
            "points": points,
            "reason": reason,
            "transferId": str(transfer.pk),
            "balanceAfter": balance_after,
            **extra,
        },
    )
