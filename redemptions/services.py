"""Redemption requests and operator actions. The request does everything that must be exact
(eligibility, price, stock, points) in one short transaction; fulfilment happens after it
commits, in `redemptions.workflow`, with no row lock held across a partner call."""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from catalog.models import Item
from catalog.pricing import member_point_cost
from catalog.selectors import item_get, viewer_for
from catalog.services import stock_reserve
from redemptions import workflow
from redemptions.exceptions import NoFulfilmentPartner, NotCancellable
from redemptions.models import PartnerConfig, Redemption, RedemptionTransition
from redemptions.states import S, transition
from redemptions.tasks import redemption_fulfil_soon
from redemptions.workflow import partner_settings
from rewards import services as rewards_services
from rewards.exceptions import MemberInactive
from rewards.models import Member
from tenants.models import Tenant

__all__ = [
    "partner_for",
    "partner_settings",
    "redemption_cancel",
    "redemption_operator_cancel",
    "redemption_request",
    "redemption_retry",
]


def partner_for(*, tenant: Tenant, item: Item) -> PartnerConfig:
    """Who fulfils `item`: its own partner when that partner is set up for the item's kind,
    else the tenant's enabled partner for the kind with the lowest priority number."""
    configs = PartnerConfig.objects.filter(tenant=tenant, is_enabled=True, partner__is_active=True).select_related(
        "partner"
    )
    if item.partner_id is not None:
        own = configs.filter(partner_id=item.partner_id).first()
        if own is not None and item.kind in own.enabled_kinds:
            return own
        raise NoFulfilmentPartner(f"The item's partner does not fulfil {item.kind} items now.", field="itemId")
    for config in configs.order_by("priority", "pk"):
        if item.kind in config.enabled_kinds:
            return config
    raise NoFulfilmentPartner(field="itemId")


def _quantity_check(quantity) -> int:
    limit = settings.REDEMPTION_MAX_QUANTITY
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= limit:
        raise ValidationError({"quantity": [f"Must be a whole number from 1 to {limit}."]})
    return quantity


def redemption_request(
    *, tenant: Tenant, member: Member, item_id, quantity: int = 1, idempotency_key: str = "", actor: str = ""
) -> tuple[Redemption, bool]:
    """Spend `member`'s points on `quantity` of an item: the redemption, PENDING, and whether
    this call created it (False: the same idempotency key already did).

    One transaction checks that the member may redeem it (active, the item visible at their
    tier), prices it at their tier's discount, debits the points (lots closest to expiry
    first), takes the stock (the hot row last, so it is held for the shortest time) and
    records the redemption and its `redemption.requested` event; fulfilment is queued once it
    commits. Refusals (InsufficientPoints, OutOfStock, ...) change nothing."""
    quantity = _quantity_check(quantity)
    if idempotency_key:
        existing = Redemption.objects.filter(tenant=tenant, member=member, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    if not member.is_active:
        raise MemberInactive("Only active members can redeem points.", field="memberRef")
    viewer = viewer_for(tenant=tenant, member=member)
    item = item_get(tenant=tenant, item_id=item_id, viewer=viewer)
    config = partner_for(tenant=tenant, item=item)
    unit_points = member_point_cost(item.point_cost, viewer.discount_percentage)
    points = unit_points * quantity
    redemption_id = uuid.uuid4()
    calculation = {
        "type": "redemption",
        "itemId": str(item.pk),
        "quantity": quantity,
        "unitPointCost": item.point_cost,
        "discountPercentage": str(viewer.discount_percentage),
        "unitPoints": unit_points,
        "points": points,
    }
    try:
        with transaction.atomic():
            debit = rewards_services.points_redeem(
                tenant=tenant, member=member, points=points, redemption_id=str(redemption_id), explanation=calculation
            )
            stock = stock_reserve(
                tenant=tenant,
                item_id=item.pk,
                quantity=quantity,
                reference_type="redemption",
                reference_id=str(redemption_id),
                actor=actor,
            )
            redemption = Redemption.objects.create(
                id=redemption_id,
                tenant=tenant,
                member=member,
                item=item,
                item_kind=item.kind,
                partner_config=config,
                quantity=quantity,
                status=S.PENDING,
                unit_point_cost=item.point_cost,
                discount_percentage=viewer.discount_percentage,
                unit_points=unit_points,
                points=points,
                cash_value=(item.cash_value * quantity).quantize(Decimal("0.01")),
                currency=tenant.currency,
                point_value=tenant.point_value,
                tier_code=viewer.tier_code,  # the tier the price was made for
                lots=debit.lots,
                debit_transfer=debit.transfer,
                stock_reserved=stock.movement is not None,
                idempotency_key=idempotency_key,
                requested_by=actor,
            )
            RedemptionTransition.objects.create(
                redemption=redemption, from_status="", to_status=S.PENDING, actor=actor, reason="requested"
            )
            workflow.announce(redemption, "redemption.requested", balanceAfter=debit.balance_after)
            redemption_fulfil_soon(redemption)
    except IntegrityError:
        # The same key raced us and won: both transactions tried; only its redemption exists.
        existing = Redemption.objects.filter(tenant=tenant, member=member, idempotency_key=idempotency_key).first()
        if idempotency_key and existing is not None:
            return existing, False
        raise
    return redemption, True


def redemption_cancel(*, redemption: Redemption, actor: str, reason: str = "") -> Redemption:
    """Cancel a redemption that has not started fulfilment: points back to their lots, stock
    back on the shelf, `redemption.cancelled` announced. Once a worker has taken it to the
    partner it can no longer be cancelled (NotCancellable, 409)."""
    with transaction.atomic():
        if not transition(redemption, S.CANCELLED, actor=actor, reason=reason or "cancelled", expected=S.PENDING):
            raise NotCancellable(field="redemptionId")
        workflow.give_back(redemption, reason="redemption cancelled")
        workflow.announce(redemption, "redemption.cancelled", pointsRefunded=redemption.points)
    return redemption


def redemption_operator_cancel(*, redemption: Redemption, actor: str, reason: str) -> Redemption:
    """An operator's "cancel and refund": a PENDING redemption is cancelled; one FULFILLING
    or FAILED is failed (if it is not already) and refunded, its partner order voided first
    when one may exist. A final redemption is left as it is (NotCancellable)."""
    redemption.refresh_from_db()
    if redemption.status == S.PENDING:
        try:
            return redemption_cancel(redemption=redemption, actor=actor, reason=reason)
        except NotCancellable:
            redemption.refresh_from_db()
    if redemption.status == S.FULFILLING:
        # Whatever a worker is doing with it, its order may exist: void it before the refund.
        Redemption.objects.filter(pk=redemption.pk).update(maybe_placed=True)
        redemption.maybe_placed = True
        why = reason or "cancelled by an operator"
        workflow.fail(redemption, code="cancelled_by_operator", reason=why, actor=actor)
        redemption.refresh_from_db()
    if redemption.status == S.FAILED:
        workflow.compensate(redemption, actor=actor)
        redemption.refresh_from_db()
        return redemption
    raise NotCancellable("This redemption has already reached a final status.", field="redemptionId")


def redemption_retry(*, redemption: Redemption) -> bool:
    """An operator's "retry now": queue the workflow step the redemption is waiting for
    (fulfilment, or the refund of a failed one). False for a final redemption."""
    redemption.refresh_from_db()
    if redemption.is_final:
        return False
    redemption_fulfil_soon(redemption, force=True)
    return True
