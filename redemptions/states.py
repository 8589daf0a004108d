"""The redemption state machine: the only place a redemption's status changes.

    PENDING ──> FULFILLING ──> COMPLETED
       │             │
       │             └──> FAILED ──> REFUNDED
       └──> CANCELLED

Each move is a conditional UPDATE on the status it leaves, so of two workers (or a worker
and an operator) racing to move the same redemption only one succeeds; the loser learns it
(False) and leaves things alone. Every move is recorded as a transition in the same
transaction. A FULFILLING redemption may also be taken over by another worker once its lease
has run out (a worker that died mid-call); that is recorded too but is not a status change.
"""

from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from core.exceptions import Conflict
from redemptions.models import Redemption, RedemptionTransition

S = Redemption.Status

ALLOWED: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.FULFILLING, S.CANCELLED}),
    S.FULFILLING: frozenset({S.COMPLETED, S.FAILED}),
    S.FAILED: frozenset({S.REFUNDED}),
    S.COMPLETED: frozenset(),
    S.REFUNDED: frozenset(),
    S.CANCELLED: frozenset(),
}
FINAL = frozenset(status for status, targets in ALLOWED.items() if not targets)


class IllegalTransition(Conflict):
    default_code = "illegal_transition"
    default_message = "The redemption cannot move to that status from the one it is in."


def transition_check(from_status: str, to_status: str) -> None:
    if to_status not in ALLOWED.get(from_status, ()):
        raise IllegalTransition(f"A redemption cannot go from {from_status} to {to_status}.", field="status")


def transition(
    redemption: Redemption,
    to_status: str,
    *,
    actor: str,
    reason: str = "",
    detail: dict | None = None,
    expected: str | None = None,
    **fields,
) -> bool:
    """Move `redemption` from `expected` (default: the status it was read with) to
    `to_status`, setting `fields` too. False when it was no longer in that status (someone
    else moved it first); IllegalTransition when the move is never allowed."""
    from_status = expected or redemption.status
    transition_check(from_status, to_status)
    now = timezone.now()
    if to_status in FINAL:
        fields.setdefault("completed_at", now)
    with transaction.atomic():
        moved = Redemption.objects.filter(pk=redemption.pk, status=from_status).update(
            status=to_status, updated_at=now, **fields
        )
        if not moved:
            return False
        RedemptionTransition.objects.create(
            redemption=redemption,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            reason=reason[:500],
            detail=detail or {},
        )
    redemption.status = to_status
    redemption.updated_at = now
    for name, value in fields.items():
        setattr(redemption, name, value)
    return True


def takeover(redemption: Redemption, *, lease_expires_at, actor: str, now=None) -> bool:
    """Take over a FULFILLING redemption nobody holds: one whose last attempt ended and let
    go of it (lease None), or one whose holder's lease ran out (it died or hung mid-call; its
    call may have reached the partner, so a refund must void the order first). True if this
    caller now holds it until `lease_expires_at`."""
    now = now or timezone.now()
    with transaction.atomic():
        taken = (
            Redemption.objects.filter(pk=redemption.pk, status=S.FULFILLING, attempts=redemption.attempts)
            .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
            .update(
                maybe_placed=Case(When(lease_expires_at__isnull=False, then=Value(True)), default=F("maybe_placed")),
                lease_expires_at=lease_expires_at,
                attempts=redemption.attempts + 1,
                updated_at=now,
            )
        )
        if not taken:
            return False
        RedemptionTransition.objects.create(
            redemption=redemption,
            from_status=S.FULFILLING,
            to_status=S.FULFILLING,
            actor=actor,
            reason="resumed",
            detail={"attempt": redemption.attempts + 1},
        )
    redemption.refresh_from_db(fields=["maybe_placed", "lease_expires_at", "attempts", "updated_at"])
    return True
