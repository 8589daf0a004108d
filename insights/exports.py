"""The analytics export (seed 001's change data capture to an analytics bay): a tenant's
transfers and incentives as wire rows, read page by page after a cursor through
`core.changefeed`, so a row whose transaction commits late is still exported once, in order.

Each feed is a tenant-scoped queryset (joined to what its rows name, so a page costs the
same number of queries whatever its size) and a mapping from a row to its camelCase dict.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db.models import Model, QuerySet

from campaigns.models import Incentive
from core.changefeed import Cursor, InvalidCursor, page_after
from rewards.models import Account, Transfer
from tenants.models import Tenant

# tx_id is a PostgreSQL bigint: anything outside it is not a position a feed gave out.
TX_ID_MAX = 2**63 - 1


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _decimal(value: Decimal) -> str:
    return str(value)


def _account(account: Account) -> dict:
    return {"kind": account.kind, "memberRef": account.member.external_ref if account.member_id else None}


def transfer_export_queryset(*, tenant: Tenant) -> QuerySet[Transfer]:
    return Transfer.objects.filter(tenant=tenant).select_related("debit_account__member", "credit_account__member")


def transfer_export_row(transfer: Transfer) -> dict:
    debit, credit = transfer.debit_account, transfer.credit_account
    member = credit.member if credit.member_id else debit.member
    return {
        "id": str(transfer.pk),
        "kind": transfer.kind,
        "amount": transfer.amount,
        "debitAccount": _account(debit),
        "creditAccount": _account(credit),
        "memberRef": member.external_ref if member is not None else None,
        "reason": transfer.reason,
        "referenceType": transfer.reference_type,
        "referenceId": transfer.reference_id,
        "idempotencyKey": transfer.idempotency_key,
        "explanation": transfer.explanation,
        "createdAt": _timestamp(transfer.created_at),
        "debitBalanceAfter": transfer.debit_balance_after,
        "creditBalanceAfter": transfer.credit_balance_after,
    }


def incentive_export_queryset(*, tenant: Tenant) -> QuerySet[Incentive]:
    return Incentive.objects.filter(tenant=tenant).select_related("member", "coupon")


def incentive_export_row(incentive: Incentive) -> dict:
    return {
        "id": str(incentive.pk),
        "campaignId": str(incentive.campaign_id),
        "memberRef": incentive.member.external_ref,
        "type": incentive.type,
        "rewardCurrency": incentive.reward_currency,
        "rewardAmount": _decimal(incentive.reward_amount),
        "reversedAmount": _decimal(incentive.reversed_amount),
        "status": incentive.status,
        "eventId": incentive.event_id,
        "couponCode": incentive.coupon.code if incentive.coupon_id else None,
        "explanation": incentive.explanation,
        "issuedAt": _timestamp(incentive.issued_at),
        "reversedAt": _timestamp(incentive.reversed_at),
    }


@dataclass(frozen=True)
class Feed:
    name: str
    model: type[Model]
    queryset: Callable[..., QuerySet]
    row: Callable[[Model], dict]


TRANSFERS = Feed("transfers", Transfer, transfer_export_queryset, transfer_export_row)
INCENTIVES = Feed("incentives", Incentive, incentive_export_queryset, incentive_export_row)


@dataclass(frozen=True)
class ExportPage:
    rows: list[dict]
    cursor: Cursor | None  # where the next page starts: the given cursor when nothing was ready
    has_more: bool  # more rows were ready beyond this page when it was read


def export_cursor_read(*, feed: Feed, value: str) -> Cursor | None:
    """The cursor a client sent (an empty one reads from the start); InvalidCursor if the feed
    could not have given it out."""
    if not value:
        return None
    cursor = Cursor.decode(value)
    if not 0 <= cursor.tx_id <= TX_ID_MAX:
        raise InvalidCursor("Not a cursor this feed gave out.")
    try:
        feed.model._meta.pk.to_python(cursor.pk)
    except ValidationError as error:
        raise InvalidCursor("Not a cursor this feed gave out.") from error
    return cursor


def export_page(*, feed: Feed, tenant: Tenant, cursor: Cursor | None, limit: int) -> ExportPage:
    """The tenant's next `limit` rows of the feed after `cursor`, in (tx_id, pk) order."""
    # One row past the page, read by the same statement, says whether more are ready now.
    rows, _ = page_after(feed.queryset(tenant=tenant), cursor=cursor, limit=limit + 1)
    page = rows[:limit]
    next_cursor = Cursor(page[-1].tx_id, str(page[-1].pk)) if page else cursor
    return ExportPage(rows=[feed.row(row) for row in page], cursor=next_cursor, has_more=len(rows) > limit)
