"""Writes for members and points. Other apps call these, never the ledger internals."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from rewards import contributions
from rewards.exceptions import IdempotencyKeyConflict, InvalidAmount, MemberAlreadyExists, MemberInactive
from rewards.ledger import TransferResult, points_transfer, system_account_get
from rewards.lots import lot_open, lots_restore, lots_take
from rewards.models import Account, Member, Transfer
from rewards.outbox import points_announce
from rewards.privacy import member_is_erased
from rewards.tokens import member_token_encode
from tenants.models import Tenant

__all__ = [
    "TransferResult",
    "member_create",
    "member_token_issue",
    "member_update",
    "points_adjust",
    "points_redeem",
    "points_redeem_refund",
]


@transaction.atomic
def member_create(
    *, tenant: Tenant, external_ref: str, locale: str = "", attributes: dict | None = None, status: str = ""
) -> Member:
    """Create a member and its points account."""
    member = Member(
        tenant=tenant,
        external_ref=external_ref,
        locale=locale,
        attributes=attributes or {},
        status=status or Member.Status.ACTIVE,
    )
    member.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            member.save(force_insert=True)
    except IntegrityError as exc:
        raise MemberAlreadyExists(field="memberRef") from exc
    Account.objects.create(tenant=tenant, member=member, kind=Account.Kind.MEMBER, balance=0)
    contributions.member_created(member)
    return member


def member_update(*, member: Member, **fields) -> Member:
    """Change a member's locale, status or attributes. An erased member stays as erasure left
    it (reopening it would hand its anonymized account back to whoever asks)."""
    if member_is_erased(member):
        raise MemberInactive("An erased member cannot be changed.", field="memberRef")
    for name in ("locale", "status", "attributes"):
        if name in fields:
            setattr(member, name, fields[name])
    member.full_clean(validate_unique=False, validate_constraints=False)
    member.save(update_fields=[*[n for n in ("locale", "status", "attributes") if n in fields], "updated_at"])
    return member


def member_account(*, member: Member) -> Account:
    return Account.objects.get(member=member, kind=Account.Kind.MEMBER)


def points_adjust(
    *, tenant: Tenant, member: Member, points: int, reason: str, actor: str, idempotency_key: str | None = None
) -> TransferResult:
    """An operator's correction: positive points credit the member, negative debit."""
    if isinstance(points, bool) or not isinstance(points, int) or points == 0:
        raise InvalidAmount("Points must be a non-zero whole number.", field="points")
    if member.status == Member.Status.CLOSED:
        raise MemberInactive(field="memberRef")
    account = member_account(member=member)
    system = system_account_get(tenant=tenant, kind=Account.Kind.ADJUSTMENT)
    debit, credit = (system, account) if points > 0 else (account, system)
    with transaction.atomic():
        result = points_transfer(
            tenant=tenant,
            debit=debit,
            credit=credit,
            amount=abs(points),
            kind=Transfer.Kind.ADJUSTMENT,
            idempotency_key=f"adjustment:{idempotency_key or uuid.uuid4()}",
            reason=reason,
            reference_type="adjustment",
            reference_id=actor,
            explanation={"type": "adjustment", "points": points, "reason": reason, "actor": actor},
        )
        if result.created:
            # Credits open a lot that never expires; debits spend the points closest to expiry.
            if points > 0:
                lot_open(transfer=result.transfer, member=member)
            else:
                lots_take(member=member, points=-points)
            points_announce(
                tenant=tenant,
                member=member,
                credited=points > 0,
                points=abs(points),
                reason="adjustment",
                transfer=result.transfer,
                balance_after=result.transfer.credit_balance_after
                if points > 0
                else result.transfer.debit_balance_after,
            )
    return result


@dataclass(frozen=True)
class RedeemResult:
    transfer: Transfer
    lots: list[dict]  # the lots the points were taken from (or, for a refund, went back to)
    balance_after: int


def points_redeem(
    *, tenant: Tenant, member: Member, points: int, redemption_id: str, explanation: dict
) -> RedeemResult:
    """Debit a member's points for a redemption (to the tenant's REDEMPTION account), taking
    them from the lots closest to expiry; InsufficientPoints if the balance is short.
    Call it inside the transaction that records the redemption."""
    if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
        raise InvalidAmount("Points must be a positive whole number.", field="points")
    if not member.is_active:
        raise MemberInactive("Only active members can redeem points.", field="memberRef")
    with transaction.atomic():
        result = points_transfer(
            tenant=tenant,
            debit=member_account(member=member),
            credit=system_account_get(tenant=tenant, kind=Account.Kind.REDEMPTION),
            amount=points,
            kind=Transfer.Kind.REDEMPTION,
            idempotency_key=f"redemption:{redemption_id}",
            reason="redemption",
            reference_type="redemption",
            reference_id=redemption_id,
            explanation=explanation,
        )
        if not result.created:
            raise IdempotencyKeyConflict("This redemption was already debited.", field="redemptionId")
        lots = lots_take(member=member, points=points)
        balance = result.transfer.debit_balance_after
        points_announce(
            tenant=tenant,
            member=member,
            credited=False,
            points=points,
            reason="redemption",
            transfer=result.transfer,
            balance_after=balance,
            redemptionId=redemption_id,
        )
    return RedeemResult(transfer=result.transfer, lots=lots, balance_after=balance)


def points_redeem_refund(
    *, tenant: Tenant, member: Member, points: int, redemption_id: str, lots: list[dict], reason: str
) -> RedeemResult:
    """Give back the points of a redemption that failed or was cancelled, to the lots they
    came from where those have not expired (else to a new lot). At most once per redemption:
    a repeat returns the first refund. Works for closed members too (their points are theirs)."""
    with transaction.atomic():
        result = points_transfer(
            tenant=tenant,
            debit=system_account_get(tenant=tenant, kind=Account.Kind.REDEMPTION),
            credit=member_account(member=member),
            amount=points,
            kind=Transfer.Kind.REDEMPTION_REFUND,
            idempotency_key=f"redemption-refund:{redemption_id}",
            reason=reason,
            reference_type="redemption",
            reference_id=redemption_id,
            explanation={"type": "redemption_refund", "redemptionId": redemption_id, "reason": reason},
        )
        balance = result.transfer.credit_balance_after
        if not result.created:
            return RedeemResult(transfer=result.transfer, lots=[], balance_after=balance)
        restored = lots_restore(member=member, taken=lots, transfer=result.transfer, now=timezone.now())
        points_announce(
            tenant=tenant,
            member=member,
            credited=True,
            points=points,
            reason="redemption_refund",
            transfer=result.transfer,
            balance_after=balance,
            redemptionId=redemption_id,
        )
    return RedeemResult(transfer=result.transfer, lots=restored, balance_after=balance)


def member_token_issue(*, member: Member) -> tuple[str, datetime]:
    """A short-lived token for the member's app; refused for members who are not active."""
    if not member.is_active:
        raise MemberInactive("Only active members can get a token.", field="memberRef")
    return member_token_encode(tenant_id=member.tenant_id, member_id=member.pk)
