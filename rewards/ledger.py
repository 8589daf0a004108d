"""The double-entry ledger's internals. Other apps go through `rewards.services`.

Every movement of points is one immutable Transfer from a debit account to a credit
account. A member account's balance column moves in the same transaction, through a
conditional UPDATE that can never take it below zero; system accounts have no balance
column, so earnings for different members never contend for a shared row.
"""

import logging
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from prometheus_client import Counter

from rewards.exceptions import IdempotencyKeyConflict, InsufficientPoints, InvalidAmount
from rewards.models import Account, Transfer
from tenants.models import Tenant

logger = logging.getLogger(__name__)

POINTS_MOVED = Counter("loyalty_points_transferred_total", "Points moved by ledger transfers", ["kind"])
TRANSFERS = Counter("loyalty_transfers_total", "Ledger transfers posted", ["kind"])

MAX_POINTS = 10**12


@dataclass(frozen=True)
class TransferResult:
    transfer: Transfer
    created: bool  # False when the idempotency key had already been used for this transfer


# (tenant pk, kind) -> the system account. Those rows are never changed or deleted, so a
# process keeps each one it has seen committed: every earning needs one, and this saves the
# query. Only committed rows go in (a transaction that created one may still roll back).
_system_accounts: dict[tuple, Account] = {}


def system_account_get(*, tenant: Tenant, kind: str) -> Account:
    """The tenant's system account of a kind, created on first use (race-safe)."""
    key = (tenant.pk, kind)
    account = _system_accounts.get(key)
    if account is not None:
        return account
    account = Account.objects.filter(tenant=tenant, kind=kind, member__isnull=True).first()
    if account is None:
        try:
            with transaction.atomic():
                account = Account.objects.create(tenant=tenant, kind=kind, member=None, balance=None)
        except IntegrityError:
            account = Account.objects.get(tenant=tenant, kind=kind, member__isnull=True)
    transaction.on_commit(lambda: _system_accounts.setdefault(key, account))
    return account


def _move(account_id: int, delta: int) -> int | None:
    """Add delta to a member account's balance; None if that would make it negative."""
    # The table name comes from the model; every value is a parameter.
    table = connection.ops.quote_name(Account._meta.db_table)
    sql = f"UPDATE {table} SET balance = balance + %s WHERE id = %s AND balance + %s >= 0 RETURNING balance"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [delta, account_id, delta])
        row = cursor.fetchone()
    return row[0] if row else None


def _existing(tenant: Tenant, key: str, **expected) -> TransferResult | None:
    transfer = Transfer.objects.filter(tenant=tenant, idempotency_key=key).first()
    if transfer is None:
        return None
    for field, value in expected.items():
        if getattr(transfer, field) != value:
            raise IdempotencyKeyConflict(field="idempotencyKey")
    return TransferResult(transfer=transfer, created=False)


def points_transfer(
    *,
    tenant: Tenant,
    debit: Account,
    credit: Account,
    amount: int,
    kind: str,
    idempotency_key: str,
    reason: str = "",
    reference_type: str = "",
    reference_id: str = "",
    explanation: dict | None = None,
    known_new: bool = False,
) -> TransferResult:
    """Move `amount` points from `debit` to `credit`, at most once per idempotency key.

    The writes are one atomic block (a savepoint inside the caller's transaction), so a
    refusal leaves the caller's transaction usable. `known_new` skips the look-up of an
    earlier transfer when the caller's own unique row (the earning engine's inbox event)
    already says there is none, and the savepoint: such a caller applies the transfer inside
    a savepoint of its own, which a refusal or a clash of keys (still caught by the key's
    constraint) rolls back whole."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_POINTS:
        raise InvalidAmount(field="amount")
    if debit.pk == credit.pk or debit.tenant_id != tenant.pk or credit.tenant_id != tenant.pk:
        raise ValueError("A transfer moves points between two different accounts of one tenant.")
    expected = {"debit_account_id": debit.pk, "credit_account_id": credit.pk, "amount": amount, "kind": kind}
    already = None if known_new else _existing(tenant, idempotency_key, **expected)
    if already is not None:
        return already
    try:
        with transaction.atomic(savepoint=not known_new):
            balances: dict[int, int] = {}
            # Touch member rows in primary-key order so two opposite transfers cannot deadlock.
            for account in sorted((debit, credit), key=lambda a: a.pk):
                if account.is_system:
                    continue
                new_balance = _move(account.pk, -amount if account.pk == debit.pk else amount)
                if new_balance is None:
                    raise InsufficientPoints(field="points")
                balances[account.pk] = new_balance
            transfer = Transfer.objects.create(
                tenant=tenant,
                debit_account=debit,
                credit_account=credit,
                amount=amount,
                kind=kind,
                reason=reason,
                reference_type=reference_type,
                reference_id=reference_id,
                idempotency_key=idempotency_key,
                explanation=explanation or {},
                debit_balance_after=balances.get(debit.pk),
                credit_balance_after=balances.get(credit.pk),
            )
    except (IntegrityError, InsufficientPoints):
        if known_new:
            raise  # no savepoint to go back to: the caller's rolls back
        # A concurrent request with the same key may have won the race: that is "already done".
        already = _existing(tenant, idempotency_key, **expected)
        if already is not None:
            return already
        raise

    def _count() -> None:
        TRANSFERS.labels(kind=kind).inc()
        POINTS_MOVED.labels(kind=kind).inc(amount)

    transaction.on_commit(_count)
    return TransferResult(transfer=transfer, created=True)
