"""The fulfilment workflow, step by step. Celery runs it (`redemptions.tasks`); every step is
idempotent, so a step run twice (a redelivered task, a reconciliation sweep, an operator's
retry) does no harm.

fulfil: a PENDING redemption is claimed (FULFILLING, with a lease); the partner is called
    with no transaction open and the redemption id as its idempotency key; the answer is
    applied with a conditional UPDATE. A transient failure lets go of the claim and asks to
    be tried again later (exponential backoff with jitter); after the last attempt, or on a
    refusal, the redemption FAILS and is compensated.
compensate: a FAILED redemption whose order may exist at the partner (an attempt without an
    answer, a worker that died mid-call) has that order voided first; then, in one
    transaction, it becomes REFUNDED, its points go back to the lots they came from and its
    stock back on the shelf.
"""

import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from prometheus_client import Counter

from catalog.services import stock_release
from redemptions.exceptions import PartnerTargetRefused
from redemptions.models import FulfilmentAttempt, PartnerConfig, Redemption
from redemptions.partners import (
    CircuitOpen,
    FulfilmentRequest,
    FulfilmentResult,
    HttpPartnerAdapter,
    PartnerError,
    PartnerRejected,
    PartnerSettings,
    PartnerTimeout,
    partner_adapter,
)
from redemptions.states import S, takeover, transition
from redemptions.targets import partner_target_check
from rewards import services as rewards_services
from rewards.outbox import outbox_write

logger = logging.getLogger(__name__)

OUTCOMES = Counter("loyalty_redemptions_total", "Redemptions reaching a final status", ["status"])
WORKER = "worker"


@dataclass(frozen=True)
class Step:
    """What a workflow step did, and when to run it again (None: not needed)."""

    outcome: str
    retry_in: float | None = None


def partner_settings(config: PartnerConfig) -> PartnerSettings:
    """The adapter's view of a partner configuration, its credential read from the environment."""
    return PartnerSettings(
        tenant_id=str(config.tenant_id),
        code=config.partner.code,
        base_url=config.base_url,
        credentials=os.environ.get(config.credentials_ref, "") if config.credentials_ref else "",
        timeout_seconds=float(config.timeout_seconds),
        max_attempts=config.max_attempts,
        failure_threshold=config.failure_threshold,
        reset_timeout_seconds=config.reset_timeout_seconds,
    )


def lease_for(config: PartnerConfig | None) -> timedelta:
    """How long one attempt may hold a redemption: the partner's worst case (every try timing
    out, the backoff between tries) plus a margin."""
    margin = settings.REDEMPTION_LEASE_MARGIN_SECONDS
    if config is None:
        return timedelta(seconds=margin)
    worst = float(config.timeout_seconds) * 2 * config.max_attempts + 2.0 * (config.max_attempts - 1)
    return timedelta(seconds=worst + margin)


def backoff(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: exponential from the base, with full jitter."""
    base = settings.REDEMPTION_RETRY_BASE_SECONDS * 2 ** max(attempt - 1, 0)
    return round(min(base, 600.0) * random.uniform(0.5, 1.0), 3)  # noqa: S311 - jitter, not security


def announce(redemption: Redemption, type: str, **extra) -> None:
    """Write one of the redemption's outbound events (in the caller's transaction)."""
    member = redemption.member
    outbox_write(
        tenant=redemption.tenant,
        type=type,
        member_ref=member.external_ref,
        data={
            "redemptionId": str(redemption.pk),
            "memberRef": member.external_ref,
            "itemId": str(redemption.item_id),
            "itemName": redemption.item.name,
            "kind": redemption.item_kind,
            "quantity": redemption.quantity,
            "points": redemption.points,
            "status": redemption.status,
            **extra,
        },
    )


def give_back(redemption: Redemption, *, reason: str) -> None:
    """Refund the points to their lots and release the stock (in the caller's transaction,
    once the redemption has moved to REFUNDED or CANCELLED)."""
    refund = rewards_services.points_redeem_refund(
        tenant=redemption.tenant,
        member=redemption.member,
        points=redemption.points,
        redemption_id=str(redemption.pk),
        lots=redemption.lots,
        reason=reason,
    )
    if redemption.stock_reserved:
        stock_release(
            tenant=redemption.tenant,
            item_id=redemption.item_id,
            quantity=redemption.quantity,
            reference_type="redemption",
            reference_id=str(redemption.pk),
            reason=reason,
        )
    Redemption.objects.filter(pk=redemption.pk).update(refund_transfer=refund.transfer)
    redemption.refund_transfer = refund.transfer
    OUTCOMES.labels(status=redemption.status).inc()


def _load(redemption_id) -> Redemption | None:
    return (
        Redemption.objects.select_related("tenant", "member", "item", "partner_config__partner")
        .filter(pk=redemption_id)
        .first()
    )


def _record(redemption: Redemption, operation: str, outcome: str, started: float, error: str = "") -> None:
    if redemption.partner_config_id is None:
        return
    FulfilmentAttempt.objects.create(
        tenant_id=redemption.tenant_id,
        redemption=redemption,
        partner_config_id=redemption.partner_config_id,
        operation=operation,
        outcome=outcome,
        error=error[:500],
        duration_ms=max(int((time.monotonic() - started) * 1000), 0),
    )


def fulfilment_request(redemption: Redemption) -> FulfilmentRequest:
    """What the partner is asked for, the same on every attempt (its idempotency key is the
    redemption id, and a partner refuses a key reused with another body)."""
    return FulfilmentRequest(
        redemption_id=str(redemption.pk),
        kind=redemption.item_kind,
        item_id=str(redemption.item_id),
        sku=redemption.item.sku or str(redemption.item_id),
        item_name=redemption.item.name,
        quantity=redemption.quantity,
        member_ref=redemption.member.external_ref,
        cash_value=redemption.cash_value,
        currency=redemption.currency,
    )


def _outcome_of(exc: PartnerError) -> str:
    """How a failed partner call is recorded."""
    if isinstance(exc, CircuitOpen):
        return FulfilmentAttempt.Outcome.CIRCUIT_OPEN
    if isinstance(exc, PartnerTimeout):
        return FulfilmentAttempt.Outcome.TIMEOUT
    if isinstance(exc, PartnerRejected):
        return FulfilmentAttempt.Outcome.REJECTED
    return FulfilmentAttempt.Outcome.UNAVAILABLE


def _claim(redemption: Redemption, now: datetime, actor: str) -> bool:
    """Hold the redemption for one attempt (PENDING → FULFILLING, or a takeover of a
    FULFILLING one nobody holds)."""
    lease = now + lease_for(redemption.partner_config)
    if redemption.status == S.PENDING:
        if transition(
            redemption,
            S.FULFILLING,
            actor=actor,
            reason="fulfilment started",
            attempts=redemption.attempts + 1,
            lease_expires_at=lease,
        ):
            return True
        redemption.refresh_from_db()
    if redemption.status == S.FULFILLING:
        return takeover(redemption, lease_expires_at=lease, actor=actor, now=now)
    return False


def fulfil(redemption_id, *, actor: str = WORKER) -> Step:
    """Run the fulfilment step for a redemption, whatever state it is in."""
    redemption = _load(redemption_id)
    if redemption is None or redemption.is_final:
        return Step("final")
    if redemption.status == S.FAILED:
        return compensate(redemption, actor=actor)
    if not _claim(redemption, timezone.now(), actor):
        redemption.refresh_from_db()
        if redemption.status == S.FAILED:
            return compensate(redemption, actor=actor)
        return Step("busy")  # another worker holds it (or it just finished)
    config = redemption.partner_config
    if config is None or not config.is_enabled:
        fail(redemption, code="partner_disabled", reason="The partner for this item is not enabled.", actor=actor)
        return compensate(redemption, actor=actor)

    adapter = partner_adapter(partner_settings(config), redemption.item_kind)
    try:
        if isinstance(adapter, HttpPartnerAdapter):  # it calls the configured URL
            partner_target_check(config.base_url)
    except PartnerTargetRefused as exc:
        fail(redemption, code="partner_target_refused", reason=exc.message, actor=actor)
        return compensate(redemption, actor=actor)
    request = fulfilment_request(redemption)
    started = time.monotonic()
    try:
        result = adapter.fulfil(request)
    except PartnerRejected as exc:
        _record(redemption, "fulfil", FulfilmentAttempt.Outcome.REJECTED, started, str(exc))
        if exc.maybe_placed:
            # refused after an attempt that may have gone through: void before the refund
            Redemption.objects.filter(pk=redemption.pk).update(maybe_placed=True)
            redemption.maybe_placed = True
        fail(redemption, code="partner_rejected", reason=str(exc) or "The partner refused the order.", actor=actor)
        return compensate(redemption, actor=actor)
    except PartnerError as exc:
        _record(redemption, "fulfil", _outcome_of(exc), started, str(exc))
        return _transient(redemption, exc, maybe_placed=bool(exc.maybe_placed), actor=actor)
    _record(redemption, "fulfil", FulfilmentAttempt.Outcome.OK, started)
    return complete(redemption, result, actor=actor)


def _transient(redemption: Redemption, exc: Exception, *, maybe_placed: bool, actor: str) -> Step:
    """Let go of the claim and try again later, or give up after the last attempt."""
    fields = {"lease_expires_at": None, "failure_reason": str(exc)[:500]}
    if maybe_placed:
        fields["maybe_placed"] = True
        redemption.maybe_placed = True
    Redemption.objects.filter(pk=redemption.pk, status=S.FULFILLING, attempts=redemption.attempts).update(**fields)
    if redemption.attempts >= settings.REDEMPTION_MAX_ATTEMPTS:
        fail(
            redemption,
            code="partner_unavailable",
            reason=f"The partner did not fulfil it in {redemption.attempts} attempts: {exc}",
            actor=actor,
        )
        return compensate(redemption, actor=actor)
    logger.info(
        "redemption fulfilment deferred",
        extra={"redemption": str(redemption.pk), "attempt": redemption.attempts, "error": str(exc)},
    )
    return Step("retry", retry_in=backoff(redemption.attempts))


def complete(redemption: Redemption, result: FulfilmentResult, *, actor: str = WORKER) -> Step:
    with transaction.atomic():
        done = transition(
            redemption,
            S.COMPLETED,
            actor=actor,
            reason="fulfilled",
            detail={"partnerOrderId": result.partner_order_id, "referenceKind": result.reference_kind},
            expected=S.FULFILLING,
            partner_order_id=result.partner_order_id[:128],
            partner_reference=result.reference[:255],
            partner_reference_kind=result.reference_kind[:32],
            lease_expires_at=None,
            failure_code="",
            failure_reason="",
        )
        if done:
            announce(
                redemption,
                "redemption.completed",
                reference=result.reference,
                referenceKind=result.reference_kind,
                partnerOrderId=result.partner_order_id,
            )
    if done:
        OUTCOMES.labels(status=S.COMPLETED).inc()
        return Step("completed")
    # An operator failed it while the partner was answering: the order placed now must be
    # voided by the compensation (it is marked maybe-placed), which the next step runs.
    redemption.refresh_from_db()
    if redemption.status == S.FAILED:
        return compensate(redemption, actor=actor)
    return Step("final")


def fail(redemption: Redemption, *, code: str, reason: str, actor: str = WORKER) -> bool:
    """FULFILLING → FAILED, announcing `redemption.failed` (the refund follows)."""
    with transaction.atomic():
        failed = transition(
            redemption,
            S.FAILED,
            actor=actor,
            reason=reason,
            detail={"code": code},
            expected=S.FULFILLING,
            failure_code=code[:64],
            failure_reason=reason[:500],
            lease_expires_at=None,
        )
        if failed:
            announce(redemption, "redemption.failed", code=code, reason=reason)
    return failed


def compensate(redemption: Redemption, *, actor: str = WORKER) -> Step:
    """Refund a FAILED redemption, voiding its partner order first when one may exist."""
    redemption.refresh_from_db()
    if redemption.status != S.FAILED:
        return Step("final" if redemption.is_final else "busy")
    if redemption.maybe_placed:
        config = redemption.partner_config
        started = time.monotonic()
        try:
            voided = partner_adapter(partner_settings(config), redemption.item_kind).void(
                redemption_id=str(redemption.pk)
            )
        except PartnerError as exc:
            _record(redemption, "void", _outcome_of(exc), started, str(exc))
            logger.warning("redemption refund waits for the partner's void", extra={"redemption": str(redemption.pk)})
            return Step("void_pending", retry_in=backoff(min(redemption.attempts, 6)))
        outcome = FulfilmentAttempt.Outcome.OK if voided else FulfilmentAttempt.Outcome.REJECTED
        _record(redemption, "void", outcome, started)
        if not voided:
            logger.error("partner refused to void an order; refund held", extra={"redemption": str(redemption.pk)})
            return Step("void_refused")
    with transaction.atomic():
        if not transition(redemption, S.REFUNDED, actor=actor, reason="refunded", expected=S.FAILED):
            return Step("final")
        give_back(redemption, reason=f"redemption failed: {redemption.failure_code}")
        announce(redemption, "redemption.refunded", pointsRefunded=redemption.points, code=redemption.failure_code)
    return Step("refunded")


def stuck(now: datetime | None = None) -> QuerySet[Redemption]:
    """Redemptions that sat still too long: PENDING or FAILED past the threshold, FULFILLING
    with nobody holding them (a lease run out, or let go of and not retried)."""
    now = now or timezone.now()
    before = now - settings.REDEMPTION_STUCK_AFTER
    return Redemption.objects.filter(
        Q(status__in=[S.PENDING, S.FAILED], updated_at__lt=before)
        | Q(status=S.FULFILLING, lease_expires_at__lt=now)
        | Q(status=S.FULFILLING, lease_expires_at__isnull=True, updated_at__lt=before)
    )
