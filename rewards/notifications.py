"""What members are told, live over the WebSocket and on request (seed 001 §1.5): each
outbound event about a member becomes one frame, in the member's order of events.

Frames: INCENTIVE_NOTIFICATION exactly as the seed has it (`type`, `incentiveId`,
`campaignId`, `reward {currency, amount}`, `issuedAt`), and in the same style POINTS_UPDATED,
POINTS_EXPIRING, REDEMPTION_STATUS and TIER_CHANGED. Every frame carries the event's id
(`eventId`), by which clients de-duplicate (delivery is at least once) and resume.
"""

import hashlib

from django.db.models import QuerySet

from core.ids import uuid_or_none
from rewards.exceptions import NotificationNotFound
from rewards.models import Member, OutboxEvent

FRAMES = {
    "incentive.generated": "INCENTIVE_NOTIFICATION",
    "points.credited": "POINTS_UPDATED",
    "points.debited": "POINTS_UPDATED",
    "points.expired": "POINTS_UPDATED",
    "points.expiring": "POINTS_EXPIRING",
    "redemption.requested": "REDEMPTION_STATUS",
    "redemption.completed": "REDEMPTION_STATUS",
    "redemption.failed": "REDEMPTION_STATUS",
    "redemption.cancelled": "REDEMPTION_STATUS",
    "redemption.refunded": "REDEMPTION_STATUS",
    "vip_tier.assigned": "TIER_CHANGED",
}
# The handler a consumer runs for a frame sent to its group (`member_notify`).
GROUP_MESSAGE_TYPE = "member.notify"


def member_group(tenant_id, member_ref: str) -> str:
    """The channel-layer group of one member's sockets. A memberRef may hold characters
    group names may not, so it is hashed (names are at most 100 ASCII characters)."""
    digest = hashlib.sha256(member_ref.encode()).hexdigest()[:32]
    return f"member.{tenant_id}.{digest}"


def frame(event: OutboxEvent) -> dict | None:
    """The frame a member is sent for `event`, or None if members are not told of it."""
    kind = FRAMES.get(event.type)
    if kind is None or not event.member_ref:
        return None
    data = event.data or {}
    base = {"type": kind, "eventId": str(event.event_id)}
    if kind == "INCENTIVE_NOTIFICATION":
        # The seed's payload as the campaign wrote it, unchanged.
        return {**data, "type": kind, "eventId": base["eventId"]}
    if kind == "POINTS_UPDATED":
        sign = 1 if event.type == "points.credited" else -1
        reason = "expiry" if event.type == "points.expired" else data.get("reason", "")
        return {
            **base,
            "points": sign * int(data.get("points", 0)),
            "balance": data.get("balanceAfter"),
            "reason": reason,
            "occurredAt": event.occurred_at.isoformat(),
        }
    if kind == "POINTS_EXPIRING":
        return {**base, "points": data.get("points"), "expiresAt": data.get("expiresAt")}
    if kind == "REDEMPTION_STATUS":
        status = data.get("status") or event.type.split(".", 1)[1].upper()
        return {**base, **{k: v for k, v in data.items() if k != "memberRef"}, "status": status}
    # TIER_CHANGED
    return {
        **base,
        "tierId": data.get("tierId"),
        "previousTierId": data.get("previousTierId"),
        "reason": data.get("reason", ""),
        "assignedAt": data.get("assignedAt") or event.occurred_at.isoformat(),
    }


def member_events(*, member: Member) -> QuerySet[OutboxEvent]:
    """The member's events that become frames, in the member's order."""
    return OutboxEvent.objects.filter(
        tenant_id=member.tenant_id, member_ref=member.external_ref, type__in=list(FRAMES), position__isnull=False
    ).order_by("position")


def member_notification_page(
    *, member: Member, after: str | None = None, limit: int = 500
) -> tuple[list[dict], int | None]:
    """The member's frames after the event `after` (all of them without it), oldest first,
    at most `limit`, and the position the page ends at (that of `after` when it is empty).
    An `after` that is not one of the member's events is not found."""
    events = member_events(member=member)
    position = None
    if after:
        position = events.filter(event_id=uuid_or_none(after)).values_list("position", flat=True).first()
        if position is None:
            raise NotificationNotFound(field="after")
        events = events.filter(position__gt=position)
    rows = list(events[:limit])
    frames = [f for f in (frame(event) for event in rows) if f is not None]
    return frames, rows[-1].position if rows else position


def member_notifications(*, member: Member, after: str | None = None, limit: int = 500) -> list[dict]:
    """The member's frames after the event `after`, oldest first, at most `limit`."""
    return member_notification_page(member=member, after=after, limit=limit)[0]
