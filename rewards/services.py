"""Writes for members and points. Other apps call these, never the ledger internals."""

import uuid
from datetime import datetime

from django.db import IntegrityError, transaction

from rewards import contributions
from rewards.exceptions import InvalidAmount, MemberAlreadyExists, MemberInactive
from rewards.ledger import TransferResult, points_transfer, system_account_get
from rewards.lots import lot_open, lots_take
from rewards.models import Account, Member, Transfer
from rewards.outbox import outbox_write
from rewards.tokens import member_token_encode
from tenants.models import Tenant

__all__ = [
    "TransferResult",
    "member_create",
    "member_token_issue",
    "member_update",
    "points_adjust",
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
    """Change a member's locale, status or attributes."""
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
            outbox_write(
                tenant=tenant,
                type="points.credited" if points > 0 else "points.debited",
                member_ref=member.external_ref,
                data={
                    "memberRef": member.external_ref,
                    "points": abs(points),
                    "reason": "adjustment",
                    "transferId": str(result.transfer.pk),
                    "balanceAfter": result.transfer.credit_balance_after
                    if points > 0
                    else result.transfer.debit_balance_after,
                },
            )
    return result


def member_token_issue(*, member: Member) -> tuple[str, datetime]:
    """A short-lived token for the member's app; refused for members who are not active."""
    if not member.is_active:
        raise MemberInactive("Only active members can get a token.", field="memberRef")
    return member_token_encode(tenant_id=member.tenant_id, member_id=member.pk)
