"""Credit packages and credit purchases (seed 003 CREDIT_PACKAGES, CREDIT_PURCHASES): members
buy points with money, charged through the payment gateway.

A purchase is committed PENDING before the gateway is called, and no transaction or lock is
held across the call. Its id is the gateway's idempotency key, so the charge happens at most
once however often it is sent. Whoever first moves the row out of PENDING (a conditional
UPDATE) settles it: the request when the gateway answers, or reconciliation, which looks up
purchases the gateway did not answer in time. An approval posts one PURCHASE transfer (its
idempotency key is `purchase:{id}`), opens a lot and writes the outbox events in the same
transaction; a decline records the decline; nothing else ever credits points.
"""

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from prometheus_client import Counter as MetricCounter

from core.ids import uuid_or_none
from rewards.exceptions import (
    CreditPackageAlreadyExists,
    CreditPackageInactive,
    CreditPackageNotFound,
    CreditPurchaseNotFound,
    MemberInactive,
    PaymentDeclined,
    PaymentGatewayUnavailable,
)
from rewards.ledger import MAX_POINTS, points_transfer, system_account_get
from rewards.lots import lot_open
from rewards.models import Account, CreditPackage, CreditPurchase, Member, Transfer
from rewards.outbox import outbox_write, points_announce
from rewards.payments import ChargeResult, GatewayError, GatewayTimeout, GatewayUnavailable, PaymentGateway
from rewards.payments import payment_gateway as default_gateway
from tenants.models import Tenant

logger = logging.getLogger(__name__)

PURCHASES = MetricCounter("loyalty_credit_purchases_total", "Credit purchases settled, by outcome", ["status"])

PACKAGE_FIELDS = ("name", "description", "price", "currency", "reward_points", "is_active", "sort_order")
MAX_PRICE = Decimal("9999999999.99")
Status = CreditPurchase.Status


# Reads --------------------------------------------------------------------------------


def credit_package_list(*, tenant: Tenant, active_only: bool = False) -> QuerySet[CreditPackage]:
    packages = CreditPackage.objects.filter(tenant=tenant)
    if active_only:
        packages = packages.filter(is_active=True)
    return packages.order_by("sort_order", "name", "id")


def credit_package_get(*, tenant: Tenant, package_id, active_only: bool = False, field: str = "packageId"):
    """The tenant's package; another tenant's (or, for members, an inactive one) is not found."""
    pk = uuid_or_none(package_id)
    package = credit_package_list(tenant=tenant, active_only=active_only).filter(pk=pk).first() if pk else None
    if package is None:
        raise CreditPackageNotFound(field=field)
    return package


def credit_purchase_list(
    *, tenant: Tenant, member: Member | None = None, status: str | None = None
) -> QuerySet[CreditPurchase]:
    purchases = CreditPurchase.objects.filter(tenant=tenant).select_related("member", "package")
    if member is not None:
        purchases = purchases.filter(member=member)
    if status:
        purchases = purchases.filter(status=status)
    return purchases.order_by("-created_at", "-id")


def credit_purchase_get(*, tenant: Tenant, purchase_id, member: Member | None = None) -> CreditPurchase:
    """The tenant's purchase (the member's own, when a member asks); anything else is not found."""
    pk = uuid_or_none(purchase_id)
    purchase = credit_purchase_list(tenant=tenant, member=member).filter(pk=pk).first() if pk else None
    if purchase is None:
        raise CreditPurchaseNotFound(field="purchaseId")
    return purchase


# Packages -----------------------------------------------------------------------------


def _package_check(package: CreditPackage) -> None:
    errors = {}
    if package.price is None or not Decimal(0) < package.price <= MAX_PRICE:
        errors["price"] = ["Must be more than 0, with at most two decimals."]
    if isinstance(package.reward_points, bool) or not isinstance(package.reward_points, int):
        errors["reward_points"] = ["Must be a whole number."]
    elif not 0 < package.reward_points <= MAX_POINTS:
        errors["reward_points"] = [f"Must be between 1 and {MAX_POINTS}."]
    if errors:
        raise ValidationError(errors)
    package.full_clean(validate_unique=False, validate_constraints=False)


@transaction.atomic
def credit_package_create(
    *,
    tenant: Tenant,
    code: str,
    name: str,
    price: Decimal,
    reward_points: int,
    currency: str = "",
    description: str = "",
    is_active: bool = True,
    sort_order: int = 0,
) -> CreditPackage:
    """A package of points for sale; its currency is the tenant's unless given."""
    package = CreditPackage(
        tenant=tenant,
        code=code,
        name=name,
        description=description,
        price=price,
        currency=currency or tenant.currency,
        reward_points=reward_points,
        is_active=is_active,
        sort_order=sort_order,
    )
    _package_check(package)
    try:
        with transaction.atomic():
            package.save(force_insert=True)
    except IntegrityError as exc:
        raise CreditPackageAlreadyExists(field="code") from exc
    return package


@transaction.atomic
def credit_package_update(*, package: CreditPackage, **fields) -> CreditPackage:
    """Change a package. Purchases keep the price and points they were made at."""
    unknown = set(fields) - set(PACKAGE_FIELDS)
    if unknown:
        raise TypeError(f"credit_package_update() got unexpected fields {sorted(unknown)}")
    package = CreditPackage.objects.select_for_update().get(pk=package.pk)
    for name, value in fields.items():
        setattr(package, name, value)
    _package_check(package)
    package.save(update_fields=[*fields, "updated_at"])
    return package


# Purchases ----------------------------------------------------------------------------


def payment_token_fingerprint(token: str) -> str:
    """Enough to tell two tokens apart in support, never enough to use one."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def credit_purchase_start(
    *,
    tenant: Tenant,
    member: Member,
    package: CreditPackage,
    payment_token: str,
    idempotency_key: str = "",
    gateway: PaymentGateway | None = None,
) -> CreditPurchase:
    """Buy `package` for `member`, charging `payment_token`.

    Returns the purchase COMPLETED (points credited) or, when the gateway did not answer in
    time, PENDING (reconciliation settles it). Raises PaymentDeclined (recorded DECLINED) or
    PaymentGatewayUnavailable (recorded FAILED); neither credits anything.
    """
    if package.tenant_id != tenant.pk or member.tenant_id != tenant.pk:
        raise ValueError("The member, the package and the tenant must match.")
    if not package.is_active:
        raise CreditPackageInactive(field="packageId")
    if not member.is_active:
        raise MemberInactive("Only active members can buy points.", field="memberRef")
    if not payment_token:
        raise ValidationError({"payment_token": ["This field is required."]})
    with transaction.atomic():
        purchase = CreditPurchase.objects.create(
            tenant=tenant,
            member=member,
            package=package,
            amount_paid=package.price,
            currency=package.currency,
            points_awarded=package.reward_points,
            payment_token_fingerprint=payment_token_fingerprint(payment_token),
            idempotency_key=idempotency_key,
        )
    # Committed (unless a caller holds a transaction): a charge whose answer is lost is on record.
    return _charge(purchase=purchase, payment_token=payment_token, gateway=gateway or default_gateway())


def _charge(*, purchase: CreditPurchase, payment_token: str, gateway: PaymentGateway) -> CreditPurchase:
    CreditPurchase.objects.filter(pk=purchase.pk).update(attempts=F("attempts") + 1)
    try:
        result = gateway.charge(
            reference=str(purchase.pk),
            amount=purchase.amount_paid,
            currency=purchase.currency,
            payment_token=payment_token,
            description=f"{purchase.package.name}: {purchase.points_awarded} points",
        )
    except GatewayTimeout as exc:
        logger.warning(
            "credit purchase pending: gateway timeout", extra={"purchase": str(purchase.pk), "error": str(exc)}
        )
        return CreditPurchase.objects.select_related("member", "package").get(pk=purchase.pk)
    except GatewayUnavailable as exc:
        logger.warning("credit purchase failed: gateway unavailable", extra={"purchase": str(purchase.pk)})
        credit_purchase_fail(purchase=purchase, code="gateway_unavailable", reason=str(exc)[:500])
        raise PaymentGatewayUnavailable() from exc
    settled = credit_purchase_settle(purchase=purchase, result=result).purchase
    if settled.status == Status.DECLINED:
        detail = settled.decline_reason or "The payment was declined."
        raise PaymentDeclined(f"{detail} ({settled.decline_code or 'declined'})", field="paymentToken")
    return settled


@dataclass(frozen=True)
class Settlement:
    purchase: CreditPurchase  # as it is now, whoever settled it
    settled: bool  # True for the one caller that moved it out of PENDING


def credit_purchase_settle(*, purchase: CreditPurchase, result: ChargeResult) -> Settlement:
    """Record the gateway's decision, once: the first caller to move the purchase out of
    PENDING settles it (an approval credits the points); any later caller changes nothing."""
    with transaction.atomic():
        now = timezone.now()
        pending = CreditPurchase.objects.filter(pk=purchase.pk, status=Status.PENDING)
        if result.approved:
            won = pending.update(status=Status.COMPLETED, gateway_reference=result.gateway_reference, resolved_at=now)
            if won:
                _credit(purchase_id=purchase.pk, now=now)
        else:
            won = pending.update(
                status=Status.DECLINED,
                gateway_reference=result.gateway_reference,
                decline_code=result.decline_code[:64],
                decline_reason=result.decline_message[:500],
                resolved_at=now,
            )
    current = CreditPurchase.objects.select_related("member", "package", "transfer").get(pk=purchase.pk)
    if won:
        PURCHASES.labels(status=current.status).inc()
    elif current.status != (Status.COMPLETED if result.approved else Status.DECLINED):
        logger.error(
            "credit purchase settled otherwise than the gateway says",
            extra={"purchase": str(purchase.pk), "status": current.status, "gateway": result.status},
        )
    return Settlement(purchase=current, settled=bool(won))


def _credit(*, purchase_id, now) -> Transfer:
    """Post the PURCHASE transfer of a purchase this transaction has just marked COMPLETED."""
    purchase = CreditPurchase.objects.select_related("tenant", "member", "package").get(pk=purchase_id)
    tenant, member = purchase.tenant, purchase.member
    account = Account.objects.get(member=member, kind=Account.Kind.MEMBER)
    result = points_transfer(
        tenant=tenant,
        debit=system_account_get(tenant=tenant, kind=Account.Kind.PURCHASE),
        credit=account,
        amount=purchase.points_awarded,
        kind=Transfer.Kind.PURCHASE,
        idempotency_key=f"purchase:{purchase.pk}",
        reason=f"Bought {purchase.package.name}",
        reference_type="credit_purchase",
        reference_id=str(purchase.pk),
        explanation={
            "type": "purchase",
            "purchaseId": str(purchase.pk),
            "packageId": str(purchase.package_id),
            "packageCode": purchase.package.code,
            "amountPaid": str(purchase.amount_paid),
            "currency": purchase.currency,
            "points": purchase.points_awarded,
            "gatewayReference": purchase.gateway_reference,
        },
    )
    transfer = result.transfer
    if result.created:
        # Bought points were paid for: they never expire under the earning policy.
        lot_open(transfer=transfer, member=member)
    CreditPurchase.objects.filter(pk=purchase.pk).update(transfer=transfer)
    points_announce(
        tenant=tenant,
        member=member,
        credited=True,
        points=purchase.points_awarded,
        reason="purchase",
        transfer=transfer,
        balance_after=transfer.credit_balance_after,
        purchaseId=str(purchase.pk),
    )
    outbox_write(
        tenant=tenant,
        type="credit_purchase.completed",
        member_ref=member.external_ref,
        data={
            "purchaseId": str(purchase.pk),
            "memberRef": member.external_ref,
            "packageId": str(purchase.package_id),
            "packageCode": purchase.package.code,
            "amountPaid": str(purchase.amount_paid),
            "currency": purchase.currency,
            "pointsAwarded": purchase.points_awarded,
            "transferId": str(transfer.pk),
            "gatewayReference": purchase.gateway_reference,
            "completedAt": now.isoformat(),
        },
    )
    return transfer


def credit_purchase_fail(*, purchase: CreditPurchase, code: str, reason: str) -> Settlement:
    """Mark a purchase that was never charged FAILED, unless it was settled already."""
    won = CreditPurchase.objects.filter(pk=purchase.pk, status=Status.PENDING).update(
        status=Status.FAILED, decline_code=code[:64], decline_reason=reason[:500], resolved_at=timezone.now()
    )
    if won:
        PURCHASES.labels(status=Status.FAILED).inc()
    return Settlement(purchase=CreditPurchase.objects.get(pk=purchase.pk), settled=bool(won))


def credit_purchases_reconcile(
    *,
    older_than: timedelta | None = None,
    fail_after: timedelta | None = None,
    purchase_ids: list | None = None,
    gateway: PaymentGateway | None = None,
    limit: int = 500,
) -> dict[str, int]:
    """Ask the gateway about purchases still PENDING `older_than` after they started: settle
    what it decided; fail what it never saw once `fail_after` has passed; leave the rest (and
    everything while the gateway does not answer) for the next run. Safe to run concurrently,
    with itself and with the original request finishing late. Returns counts by outcome."""
    older_than = settings.CREDIT_PURCHASE_RECONCILE_AFTER if older_than is None else older_than
    fail_after = settings.CREDIT_PURCHASE_FAIL_AFTER if fail_after is None else fail_after
    gateway = gateway or default_gateway()
    now = timezone.now()
    pending = CreditPurchase.objects.filter(status=Status.PENDING, created_at__lte=now - older_than)
    if purchase_ids is not None:
        pending = pending.filter(pk__in=purchase_ids)
    outcomes: Counter = Counter()
    for purchase in pending.select_related("package").order_by("created_at")[:limit]:
        outcomes[_reconcile_one(purchase=purchase, gateway=gateway, fail_before=now - fail_after)] += 1
    if outcomes:
        logger.info("credit purchases reconciled", extra={"outcomes": dict(outcomes)})
    return dict(outcomes)


def _reconcile_one(*, purchase: CreditPurchase, gateway: PaymentGateway, fail_before) -> str:
    touched = CreditPurchase.objects.filter(pk=purchase.pk, status=Status.PENDING).update(attempts=F("attempts") + 1)
    if not touched:
        return "already_settled"
    try:
        result = gateway.charge_lookup(reference=str(purchase.pk))
    except GatewayError as exc:
        logger.warning("credit purchase lookup failed", extra={"purchase": str(purchase.pk), "error": str(exc)})
        return "gateway_unavailable"
    if result is None:
        if purchase.created_at > fail_before:
            return "waiting"
        settlement = credit_purchase_fail(
            purchase=purchase, code="not_charged", reason="The gateway has no record of this charge."
        )
        return "failed" if settlement.settled else "already_settled"
    settlement = credit_purchase_settle(purchase=purchase, result=result)
    if not settlement.settled:
        return "already_settled"
    return settlement.purchase.status.lower()
