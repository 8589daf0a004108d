"""Earned lots: which credited points are left, when they become spendable, when they expire.

Every credit to a member's account opens a lot and every debit takes from lots, so a
member's open available lots always add up to the spendable balance and the pending ones
to the pending balance. Callers hold the member's account row (the ledger's UPDATE locks
it) before touching lots, so one member's lots are never taken twice at once.
"""

import calendar
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import F, Sum

from core.db import values_from_db
from rewards.models import EarnedLot, Member, Transfer
from tenants.models import ExpiryPolicy, Tenant


def expiry_for(*, tenant: Tenant, earned_at: datetime) -> datetime | None:
    """When points earned at `earned_at` expire under the tenant's policy (None: never)."""
    policy, n = tenant.expiry_policy, tenant.expiry_days or 0
    if policy == ExpiryPolicy.DAYS:
        return earned_at + timedelta(days=n)
    local = earned_at.astimezone(ZoneInfo(tenant.timezone))
    if policy == ExpiryPolicy.END_OF_MONTH:
        month_index = local.year * 12 + (local.month - 1) + n
        year, month = divmod(month_index, 12)
        last_day = calendar.monthrange(year, month + 1)[1]
        end = local.replace(year=year, month=month + 1, day=last_day, hour=0, minute=0, second=0, microsecond=0)
        return end + timedelta(days=1)
    if policy == ExpiryPolicy.END_OF_YEAR:
        return local.replace(year=local.year + n + 1, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


def lot_open(
    *, transfer: Transfer, member: Member, pending_until: datetime | None = None, expires_at: datetime | None = None
) -> EarnedLot:
    return EarnedLot.objects.create(
        tenant_id=member.tenant_id,
        member=member,
        transfer=transfer,
        points=transfer.amount,
        remaining=transfer.amount,
        pending_until=pending_until,
        expires_at=expires_at,
    )


def lots_take(*, member: Member, points: int, pending: bool = False, first: EarnedLot | None = None) -> list[dict]:
    """Take `points` from the member's open lots: `first` (if given), then those closest to
    expiry (never-expiring last), oldest first. Returns what was taken from which lot."""
    lots = (
        EarnedLot.objects.select_for_update()
        .filter(member=member, remaining__gt=0, pending_until__isnull=not pending)
        .order_by(F("expires_at").asc(nulls_last=True), "created_at", "id")
    )
    ordered = list(lots)
    if first is not None:
        ordered.sort(key=lambda lot: lot.pk != first.pk)
    taken, left = [], points
    for lot in ordered:
        if left == 0:
            break
        take = min(lot.remaining, left)
        EarnedLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
        taken.append({"lotId": lot.pk, "points": take})
        left -= take
    if left:
        # The balance allowed the debit, so the lots must cover it; if not, they have drifted.
        raise RuntimeError(f"lots of member {member.pk} cover {points - left} of {points} points")
    return taken


def lots_open_total(*, member: Member, pending: bool = False) -> int:
    return (
        EarnedLot.objects.filter(member=member, remaining__gt=0, pending_until__isnull=not pending).aggregate(
            s=Sum("remaining")
        )["s"]
        or 0
    )


def lots_expiring(*, member: Member, before: datetime) -> tuple[int, datetime | None]:
    """Points that expire before `before`, and the earliest expiry among them."""
    # Written out: /me asks on every call, and building the ORM's filter and aggregate cost
    # several times the query (one row, however many lots the member has).
    meta = EarnedLot._meta
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT SUM(remaining), MIN(expires_at) FROM {connection.ops.quote_name(meta.db_table)} "  # noqa: S608
            "WHERE member_id = %s AND remaining > 0 AND pending_until IS NULL "
            "AND expires_at IS NOT NULL AND expires_at < %s",
            [
                meta.get_field("member").get_db_prep_value(member.pk, connection),
                meta.get_field("expires_at").get_db_prep_value(before, connection),
            ],
        )
        total, earliest = cursor.fetchone()
    (earliest,) = values_from_db(EarnedLot, ["expires_at"], [earliest])  # SQLite's is text
    return int(total or 0), earliest


def lots_restore(*, member: Member, taken: list[dict], transfer: Transfer, now: datetime) -> list[dict]:
    """Give points back to the lots they were taken from (`taken` as `lots_take` returned it),
    as long as those lots have not expired meanwhile; what cannot go back opens a new lot on
    `transfer`, expiring under the tenant's policy from now. Returns where the points went."""
    restored, leftover = [], 0
    by_id = {
        lot.pk: lot
        for lot in EarnedLot.objects.select_for_update().filter(
            member=member, pk__in=[entry["lotId"] for entry in taken]
        )
    }
    for entry in taken:
        lot, points = by_id.get(entry["lotId"]), int(entry["points"])
        live = lot is not None and (lot.expires_at is None or lot.expires_at > now)
        if live and lot.remaining + points <= lot.points:
            EarnedLot.objects.filter(pk=lot.pk).update(remaining=F("remaining") + points)
            lot.remaining += points
            restored.append({"lotId": lot.pk, "points": points})
        else:
            leftover += points
    missing = transfer.amount - sum(entry["points"] for entry in restored) - leftover
    leftover += max(missing, 0)
    if leftover:
        tenant = member.tenant
        lot = EarnedLot.objects.create(
            tenant_id=member.tenant_id,
            member=member,
            transfer=transfer,
            points=leftover,
            remaining=leftover,
            expires_at=expiry_for(tenant=tenant, earned_at=now),
        )
        restored.append({"lotId": lot.pk, "points": leftover, "new": True})
    return restored
