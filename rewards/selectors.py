"""Reads for members and points, always scoped by tenant."""

import functools
from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.db.models import Case, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from core.db import values_from_db
from rewards.exceptions import MemberNotFound, OutboundEventNotFound
from rewards.lots import lots_expiring
from rewards.models import Account, Member, OutboxEvent, Transfer
from tenants.models import Tenant

EXPIRING_SOON = timedelta(days=30)


def _with_balance(queryset: QuerySet[Member]) -> QuerySet[Member]:
    """Annotate `balance` (spendable) and `pending` (held in the returns window)."""

    def of(kind: str):
        return Subquery(Account.objects.filter(member=OuterRef("pk"), kind=kind).values("balance")[:1])

    return queryset.annotate(
        balance=Coalesce(of(Account.Kind.MEMBER), Value(0)),
        pending=Coalesce(of(Account.Kind.PENDING), Value(0)),
    )


def member_get(*, tenant: Tenant, external_ref: str) -> Member:
    """The tenant's member with its balance; another tenant's member is not found."""
    if "\x00" in external_ref:
        # No memberRef holds NUL, and PostgreSQL refuses it in a query (it would be a 500).
        raise MemberNotFound(field="memberRef")
    member = _with_balance(Member.objects.filter(tenant=tenant, external_ref=external_ref)).first()
    if member is None:
        raise MemberNotFound(field="memberRef")
    member.tenant = tenant  # what reads member.tenant next (its tier, its locale) needs no query
    return member


@functools.cache
def _member_for_token_sql() -> tuple[str, list[str], list[str]]:
    quote = connection.ops.quote_name
    member_fields = [field.attname for field in Member._meta.concrete_fields]
    tenant_fields = [field.attname for field in Tenant._meta.concrete_fields]
    member_columns = [f"m.{quote(Member._meta.get_field(name).column)}" for name in member_fields]
    tenant_columns = [f"t.{quote(Tenant._meta.get_field(name).column)}" for name in tenant_fields]
    # Names from the models' metadata, values as parameters.
    account = f"SELECT a.balance FROM {quote(Account._meta.db_table)} a WHERE a.member_id = m.id AND a.kind = %s"  # noqa: S608
    sql = (
        f"SELECT {', '.join(member_columns + tenant_columns)}, "  # noqa: S608
        f"COALESCE(({account} LIMIT 1), 0), COALESCE(({account} LIMIT 1), 0) "
        f"FROM {quote(Member._meta.db_table)} m JOIN {quote(Tenant._meta.db_table)} t ON t.id = m.tenant_id "
        "WHERE m.id = %s AND m.tenant_id = %s"
    )
    return sql, member_fields, tenant_fields


def member_for_token(*, member_id, tenant_id) -> Member | None:
    """The member a verified token names, with its tenant and its balance (and pending
    points): one query serves the authentication and what /me shows. Every member request
    reads it, and building it through the ORM cost more CPU than the query itself (2 of the
    ~5 ms of a /me in the profile), so it is one fixed SQL statement."""
    sql, member_fields, tenant_fields = _member_for_token_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [Account.Kind.MEMBER, Account.Kind.PENDING, member_id, tenant_id])
        row = cursor.fetchone()
    if row is None:
        return None
    db = connection.alias
    count = len(member_fields)
    member = Member.from_db(db, member_fields, values_from_db(Member, member_fields, row[:count]))
    member.tenant = Tenant.from_db(db, tenant_fields, values_from_db(Tenant, tenant_fields, row[count:-2]))
    member.balance, member.pending = row[-2], row[-1]
    return member


def member_list(*, tenant: Tenant) -> QuerySet[Member]:
    return _with_balance(Member.objects.filter(tenant=tenant)).order_by("-created_at", "-pk")


def member_balance(*, member: Member) -> int:
    return Account.objects.filter(member=member, kind=Account.Kind.MEMBER).values_list("balance", flat=True).get()


def points_expiring(*, member: Member, within: timedelta = EXPIRING_SOON) -> dict:
    """Spendable points that expire within `within`, and the first date they do."""
    points, earliest = lots_expiring(member=member, before=timezone.now() + within)
    return {"points": points, "within_days": within.days, "first_expiry": earliest}


def transfer_list(*, tenant: Tenant, member: Member) -> QuerySet[Transfer]:
    """The member's spendable-points transfers, newest first, each with `points` signed from
    the member's side and `balance_after` the member's balance once it was posted."""
    account_id = Account.objects.filter(member=member, kind=Account.Kind.MEMBER).values_list("pk", flat=True).get()
    credited = Q(credit_account_id=account_id)
    return (
        Transfer.objects.filter(tenant=tenant)
        .filter(credited | Q(debit_account_id=account_id))
        .annotate(
            points=Case(When(credited, then=F("amount")), default=-F("amount"), output_field=IntegerField()),
            balance_after=Case(
                When(credited, then=F("credit_balance_after")),
                default=F("debit_balance_after"),
                output_field=IntegerField(),
            ),
        )
        .order_by("-created_at", "-id")
    )


def account_balance(*, account: Account) -> int:
    """A member account's balance column, or a system account's balance derived from transfers."""
    if not account.is_system:
        return account.balance
    credits = Transfer.objects.filter(credit_account=account).aggregate(s=Coalesce(Sum("amount"), 0))["s"]
    debits = Transfer.objects.filter(debit_account=account).aggregate(s=Coalesce(Sum("amount"), 0))["s"]
    return credits - debits


@dataclass(frozen=True)
class LedgerReport:
    """The ledger's invariants for one tenant. `ok` when all of them hold."""

    balances_sum: int
    member_mismatches: list[tuple[str, int, int]]  # (memberRef, balance column, sum of transfers)
    negative_balances: list[str]

    @property
    def ok(self) -> bool:
        return self.balances_sum == 0 and not self.member_mismatches and not self.negative_balances


def ledger_verify(*, tenant: Tenant) -> LedgerReport:
    """Check: all balances sum to zero; each member's balance equals the sum of its transfers."""
    credits = dict(Transfer.objects.filter(tenant=tenant).values_list("credit_account").annotate(s=Sum("amount")))
    debits = dict(Transfer.objects.filter(tenant=tenant).values_list("debit_account").annotate(s=Sum("amount")))
    total = 0
    mismatches, negative = [], []
    for account in Account.objects.filter(tenant=tenant).select_related("member"):
        derived = credits.get(account.pk, 0) - debits.get(account.pk, 0)
        if account.is_system:
            total += derived
            continue
        total += account.balance
        if account.balance != derived:
            mismatches.append((account.member.external_ref, account.balance, derived))
        if account.balance < 0:
            negative.append(account.member.external_ref)
    return LedgerReport(balances_sum=total, member_mismatches=mismatches, negative_balances=negative)


def outbound_event_list(
    *, tenant: Tenant, type: str | None = None, member_ref: str | None = None, after=None, limit: int = 100
) -> list[OutboxEvent]:
    """The tenant's outbound events in emission order, after the event `after` (its id; one
    of another tenant is not found)."""
    events = OutboxEvent.objects.filter(tenant=tenant, position__isnull=False).order_by("position")
    if after is not None:
        position = events.filter(event_id=after).values_list("position", flat=True).first()
        if position is None:
            raise OutboundEventNotFound(field="after")
        events = events.filter(position__gt=position)
    if type:
        events = events.filter(type=type)
    if member_ref:
        events = events.filter(member_ref=member_ref)
    return list(events[:limit])
