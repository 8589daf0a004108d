"""Program analytics for operators: points issued, redeemed and expired over a window, the
points liability (what members hold) and its money value, breakage and redemption rates,
active members, top items and categories, campaign cost and lift.

Every figure comes from a set-based query; the number of queries is the same whatever the
size of the data, the window or the number of buckets (seven in all).

The ledger figures come from one SQL statement, so they are one snapshot of the ledger:
the member accounts' balance columns now (the liability today) and the transfers posted
since the window opened, per kind and per bucket. The liability at any moment is today's
less what transfers posted after it moved, which makes

    outstanding(to) = outstanding(from) + issued - redeemed - expired

exact, and `outstanding` equal to the ledger's own sum of member balances when `to` is
in the future. A transfer counts at its `created_at`; one whose transaction commits after a
report was read lands in the window it was posted in, and the next read counts it there.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import (
    Case,
    CharField,
    Count,
    DateField,
    DecimalField,
    Exists,
    F,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, Trunc
from django.utils import timezone

from campaigns.models import Incentive
from redemptions.models import Redemption
from rewards.models import Account, InboundEvent, Transfer
from tenants.models import Tenant

INTERVALS = ("day", "week", "month")
MAX_BUCKETS = 400
DEFAULT_DAYS = 30
EARLIEST = date(1970, 1, 1)
LATEST = date(2999, 12, 31)
TOP = 10
RATE = Decimal("0.0001")
MONEY = Decimal("0.01")

PURCHASE = "transaction.created"
REFUND = "transaction.refunded"
Kind = Transfer.Kind
REDEEMING = (Kind.REDEMPTION, Kind.REDEMPTION_REFUND)
EXPIRING = (Kind.EXPIRY,)
# The platform's own housekeeping, which says nothing about what a member did.
HOUSEKEEPING = (Kind.EXPIRY, Kind.MATURED)
# Redemptions whose points went back to the member (or are about to): not redeemed.
GIVEN_BACK = (Redemption.Status.CANCELLED, Redemption.Status.REFUNDED, Redemption.Status.FAILED)
BALANCES = "BALANCES"


# The window --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Local dates `[date_from, date_to)` in the tenant's time zone, cut into `interval` buckets."""

    date_from: date
    date_to: date
    interval: str
    tz: ZoneInfo

    @property
    def start(self) -> datetime:
        return datetime.combine(self.date_from, time(0), tzinfo=self.tz)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.date_to, time(0), tzinfo=self.tz)

    def bucket_of(self, day: date) -> date:
        if self.interval == "week":
            return day - timedelta(days=day.weekday())  # ISO weeks start on Monday, as date_trunc's do
        if self.interval == "month":
            return day.replace(day=1)
        return day

    def next_bucket(self, start: date) -> date:
        if self.interval == "week":
            return start + timedelta(days=7)
        if self.interval == "month":
            return (start.replace(day=28) + timedelta(days=4)).replace(day=1)
        return start + timedelta(days=1)

    def bucket_count(self) -> int:
        first, last = self.bucket_of(self.date_from), self.bucket_of(self.date_to - timedelta(days=1))
        if self.interval == "month":
            return (last.year - first.year) * 12 + last.month - first.month + 1
        return (last - first).days // (7 if self.interval == "week" else 1) + 1

    def buckets(self) -> list[tuple[date, date]]:
        """(start, end) of each bucket, clipped to the window."""
        result, start = [], self.bucket_of(self.date_from)
        while start < self.date_to:
            following = self.next_bucket(start)
            result.append((max(start, self.date_from), min(following, self.date_to)))
            start = following
        return result

    def trunc(self, field: str) -> Cast:
        """The local bucket a timestamp falls in, computed by the database (date_trunc), as
        a date (cast in SQL: inside a union or a CASE no converter makes it one)."""
        return Cast(Trunc(field, self.interval, output_field=DateField(), tzinfo=self.tz), DateField())


def program_window(*, tenant: Tenant, date_from: date | None, date_to: date | None, interval: str = "day") -> Window:
    """The window a report covers; ValidationError (by field) when it makes no sense.

    `to` defaults to tomorrow in the tenant's time zone (so today is in), `from` to 30 days
    before `to`."""
    if interval not in INTERVALS:
        raise ValidationError({"interval": [f"Use one of {', '.join(INTERVALS)}."]})
    tz = ZoneInfo(tenant.timezone)
    if date_to is None:
        date_to = timezone.now().astimezone(tz).date() + timedelta(days=1)
    if date_from is None:
        date_from = max(date_to - timedelta(days=DEFAULT_DAYS), EARLIEST)
    for field, value in (("from", date_from), ("to", date_to)):
        if not EARLIEST <= value <= LATEST:
            raise ValidationError({field: [f"Use a date from {EARLIEST} to {LATEST}."]})
    if date_to <= date_from:
        raise ValidationError({"to": ["Must be after `from` (`to` is exclusive)."]})
    window = Window(date_from=date_from, date_to=date_to, interval=interval, tz=tz)
    buckets = window.bucket_count()
    if buckets > MAX_BUCKETS:
        raise ValidationError(
            {"interval": [f"The window holds {buckets} {interval}s; at most {MAX_BUCKETS}: use a longer interval."]}
        )
    return window


# Helpers -------------------------------------------------------------------------------------


def rate(part: int, whole: int) -> Decimal | None:
    """part / whole to 4 places; None when there is nothing issued to compare with."""
    if whole <= 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(RATE, rounding=ROUND_HALF_UP)


def money_of(points: int, point_value: Decimal) -> Decimal:
    """Points in money at the tenant's point value: exact (as many places as the point value)."""
    return Decimal(points) * point_value


# The ledger ------------------------------------------------------------------------------------

_MEMBER_CREDITED = Q(credit_account__member__isnull=False, debit_account__member__isnull=True)
_MEMBER_DEBITED = Q(debit_account__member__isnull=False, credit_account__member__isnull=True)


def _ledger_rows(*, tenant: Tenant, window: Window) -> list[dict]:
    """One statement: the member accounts' balances now, and what transfers posted since the
    window opened moved into (credited) and out of (debited) members' hands, per kind and per
    bucket (no bucket: after the window). A transfer between two of a member's own accounts
    (pending points released) moves nothing in or out and is in neither sum."""
    transfers = (
        Transfer.objects.filter(tenant=tenant, created_at__gte=window.start)
        .values(
            row=F("kind"),
            bucket=Case(When(created_at__lt=window.end, then=window.trunc("created_at")), output_field=DateField()),
        )
        .annotate(
            credited=Coalesce(Sum("amount", filter=_MEMBER_CREDITED), 0),
            debited=Coalesce(Sum("amount", filter=_MEMBER_DEBITED), 0),
        )
        .order_by()
    )
    balances = (
        Account.objects.filter(tenant=tenant, member__isnull=False)
        .values(row=Value(BALANCES, output_field=CharField()), bucket=Value(None, output_field=DateField()))
        .annotate(credited=Coalesce(Sum("balance"), 0), debited=Value(0))
        .order_by()
    )
    return list(transfers.union(balances, all=True))


@dataclass
class _Flows:
    """Points moved in and out of members' hands, by transfer kind."""

    credited: dict[str, int]
    debited: dict[str, int]

    def net(self, *kinds: str) -> int:
        return sum(self.credited.get(k, 0) - self.debited.get(k, 0) for k in kinds)

    def all_net(self) -> int:
        return self.net(*set(self.credited) | set(self.debited))

    def issued(self) -> int:
        """Everything that is not a redemption or an expiry: earnings (with the campaign
        points they carry), purchases, adjustments both ways, less reversals."""
        return self.all_net() - self.net(*REDEEMING) - self.net(*EXPIRING)

    def redeemed(self) -> int:
        return -self.net(*REDEEMING)

    def expired(self) -> int:
        return -self.net(*EXPIRING)

    def add(self, row: dict) -> None:
        self.credited[row["row"]] = self.credited.get(row["row"], 0) + int(row["credited"])
        self.debited[row["row"]] = self.debited.get(row["row"], 0) + int(row["debited"])


def _new_flows() -> _Flows:
    return _Flows(credited={}, debited={})


def _points_summary(window_flows: _Flows, *, opening: int) -> dict:
    f = window_flows
    issued, redeemed, expired = f.issued(), f.redeemed(), f.expired()
    earned = f.net(Kind.EARN, Kind.INCENTIVE)
    reversed_ = -f.net(Kind.REVERSAL)
    purchased = f.net(Kind.PURCHASE)
    adjusted_in, adjusted_out = f.credited.get(Kind.ADJUSTMENT, 0), f.debited.get(Kind.ADJUSTMENT, 0)
    return {
        "opening_outstanding": opening,
        "issued": issued,
        "redeemed": redeemed,
        "expired": expired,
        "outstanding": opening + issued - redeemed - expired,
        "issued_breakdown": {
            "earned": earned,
            "purchased": purchased,
            "adjusted_in": adjusted_in,
            "adjusted_out": adjusted_out,
            "reversed": reversed_,
            "other": issued - (earned + purchased + adjusted_in - adjusted_out - reversed_),
        },
        "redeemed_breakdown": {
            "debited": f.debited.get(Kind.REDEMPTION, 0) - f.credited.get(Kind.REDEMPTION, 0),
            "refunded": f.credited.get(Kind.REDEMPTION_REFUND, 0) - f.debited.get(Kind.REDEMPTION_REFUND, 0),
        },
    }


# Active members ----------------------------------------------------------------------------------


def _active_rows(*, tenant: Tenant, window: Window) -> list[tuple]:
    """(bucket, members) per bucket, and (None, members) for the whole window: distinct
    members with an applied inbound event that occurred in it, a transfer posted in it (not
    expiry or pending points released: those the platform does on its own) or a campaign
    incentive issued in it. Members are told apart by memberRef (unique in a tenant)."""
    events = (
        InboundEvent.objects.filter(
            tenant=tenant,
            status=InboundEvent.Status.APPLIED,
            occurred_at__gte=window.start,
            occurred_at__lt=window.end,
        )
        .exclude(member_ref="")
        .values(bucket=window.trunc("occurred_at"), ref=F("member_ref"))
    )
    transfers = (
        Transfer.objects.filter(tenant=tenant, created_at__gte=window.start, created_at__lt=window.end)
        .exclude(kind__in=HOUSEKEEPING)
        .values(
            bucket=window.trunc("created_at"),
            ref=Coalesce("credit_account__member__external_ref", "debit_account__member__external_ref"),
        )
    )
    incentives = Incentive.objects.filter(tenant=tenant, issued_at__gte=window.start, issued_at__lt=window.end).values(
        bucket=window.trunc("issued_at"), ref=F("member__external_ref")
    )
    union = events.order_by().union(transfers.order_by(), incentives.order_by(), all=True)
    inner, params = union.query.sql_with_params()
    # Counting distinct members per bucket and over the whole window needs a GROUP BY over
    # the union, which the ORM does not express; the union itself is the ORM's SQL.
    sql = (
        f"WITH active AS ({inner}) "  # noqa: S608 (the ORM's SQL; every value is a parameter)
        "SELECT bucket, COUNT(DISTINCT ref) FROM active GROUP BY bucket "
        "UNION ALL SELECT NULL, COUNT(DISTINCT ref) FROM active"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# Spend, redemptions, campaigns -----------------------------------------------------------------------

_SIGNED_AMOUNT = Case(
    When(type=PURCHASE, then=F("amount")),
    When(type=REFUND, then=-F("amount")),
    output_field=DecimalField(max_digits=18, decimal_places=2),
)


def _spend_events(*, tenant: Tenant, window: Window):
    return InboundEvent.objects.filter(
        tenant=tenant,
        status=InboundEvent.Status.APPLIED,
        type__in=(PURCHASE, REFUND),
        occurred_at__gte=window.start,
        occurred_at__lt=window.end,
    )


def _spend(*, tenant: Tenant, window: Window) -> dict:
    zero = Value(Decimal(0), output_field=DecimalField(max_digits=18, decimal_places=2))
    totals = _spend_events(tenant=tenant, window=window).aggregate(
        purchases=Count("pk", filter=Q(type=PURCHASE)),
        purchased=Coalesce(Sum("amount", filter=Q(type=PURCHASE)), zero),
        refunds=Count("pk", filter=Q(type=REFUND)),
        refunded=Coalesce(Sum("amount", filter=Q(type=REFUND)), zero),
    )
    return {
        "purchases": totals["purchases"],
        "amount": totals["purchased"],
        "refunds": totals["refunds"],
        "refunded": totals["refunded"],
        "net": totals["purchased"] - totals["refunded"],
    }


def _redemption_figures(*, tenant: Tenant, window: Window) -> dict:
    requested = Redemption.objects.filter(tenant=tenant, created_at__gte=window.start, created_at__lt=window.end)
    kept = requested.exclude(status__in=GIVEN_BACK)
    figures = {"redemptions": Count("pk"), "quantity": Sum("quantity"), "points": Sum("points")}
    by_status = {
        row["status"]: row
        for row in requested.values("status").annotate(count=Count("pk"), points=Sum("points")).order_by()
    }
    items = (
        kept.values("item_id", "item__name", "item__kind", "item__category__code")
        .annotate(**figures)
        .order_by("-redemptions", "-points", "item__name", "item_id")[:TOP]
    )
    categories = (
        kept.values("item__category__code", "item__category__name")
        .annotate(**figures)
        .order_by("-redemptions", "-points", "item__category__code")[:TOP]
    )
    return {
        "by_status": [
            {
                "status": status,
                "count": by_status.get(status, {}).get("count", 0),
                "points": by_status.get(status, {}).get("points") or 0,
            }
            for status in Redemption.Status.values
        ],
        "top_items": [
            {
                "item_id": row["item_id"],
                "name": row["item__name"],
                "kind": row["item__kind"],
                "category_code": row["item__category__code"],
                "redemptions": row["redemptions"],
                "quantity": row["quantity"],
                "points": row["points"],
            }
            for row in items
        ],
        "top_categories": [
            {
                "category_code": row["item__category__code"],
                "name": row["item__category__name"] or "",
                "redemptions": row["redemptions"],
                "quantity": row["quantity"],
                "points": row["points"],
            }
            for row in categories
        ],
    }


def _campaign_rows(*, tenant: Tenant, window: Window) -> list[dict]:
    """Per campaign with incentives issued in the window: what they cost, net of what has
    been reversed of them, and how many members kept one and what those members spent."""
    incentives = Incentive.objects.filter(tenant=tenant, issued_at__gte=window.start, issued_at__lt=window.end)
    kept = Q(status=Incentive.Status.ISSUED)
    # Each recipient's spend is summed once per campaign, on one of their incentives.
    first_of_member = ~Exists(
        incentives.filter(
            kept, campaign_id=OuterRef("campaign_id"), member_id=OuterRef("member_id"), pk__lt=OuterRef("pk")
        )
    )
    member_spend = Subquery(
        _spend_events(tenant=tenant, window=window)
        .filter(member_ref=OuterRef("member__external_ref"))
        .order_by()
        .values("member_ref")
        .annotate(total=Sum(_SIGNED_AMOUNT))
        .values("total")
    )
    net = F("reward_amount") - F("reversed_amount")
    amount = DecimalField(max_digits=18, decimal_places=4)
    zero = Value(Decimal(0), output_field=amount)
    return list(
        incentives.values("campaign_id", "campaign__name", "campaign__status")
        .annotate(
            incentives=Count("pk"),
            reversed=Count("pk", filter=Q(status=Incentive.Status.REVERSED)),
            points=Coalesce(Sum(net, filter=Q(type=Incentive.Type.POINTS), output_field=amount), zero),
            cashback=Coalesce(Sum(net, filter=Q(type=Incentive.Type.CASHBACK), output_field=amount), zero),
            coupons=Count("pk", filter=kept & Q(type=Incentive.Type.COUPON)),
            recipients=Count("member_id", distinct=True, filter=kept),
            recipient_spend=Coalesce(Sum(member_spend, filter=kept & Q(first_of_member), output_field=amount), zero),
        )
        .order_by("campaign__name", "campaign_id")
    )


def _average(total: Decimal, count: int) -> Decimal | None:
    return (total / count).quantize(MONEY, rounding=ROUND_HALF_UP) if count > 0 else None


def _campaigns(rows: list[dict], *, tenant: Tenant, active: int, spend_net: Decimal) -> list[dict]:
    """Cost and lift per campaign. Lift compares the average spend of the campaign's
    recipients with that of the window's other active members (everyone who spent in the
    window is active, so the others' spend is the window's spend less the recipients')."""
    campaigns = []
    for row in rows:
        points = int(row["points"])
        cashback = Decimal(row["cashback"]).quantize(MONEY)
        recipients, spend = row["recipients"], Decimal(row["recipient_spend"])
        others = active - recipients
        mine, theirs = _average(spend, recipients), _average(spend_net - spend, others)
        lift = None
        if mine is not None and theirs is not None and theirs > 0:
            lift = (mine / theirs).quantize(RATE, rounding=ROUND_HALF_UP)
        campaigns.append(
            {
                "campaign_id": row["campaign_id"],
                "name": row["campaign__name"],
                "status": row["campaign__status"],
                "incentives": row["incentives"],
                "reversed": row["reversed"],
                "points": points,
                "points_money": money_of(points, tenant.point_value),
                "cashback": cashback,
                "coupons": row["coupons"],
                "cost": money_of(points, tenant.point_value) + cashback,
                "recipients": recipients,
                "others": max(others, 0),
                "avg_spend_recipients": mine,
                "avg_spend_others": theirs,
                "lift": lift,
            }
        )
    campaigns.sort(key=lambda c: (-c["cost"], c["name"], str(c["campaign_id"])))
    return campaigns


# The report ---------------------------------------------------------------------------------------


def program_report(*, tenant: Tenant, window: Window) -> dict:
    """Every figure of the program analytics for `tenant` over `window` (see the module)."""
    balance_now = 0
    in_window = _new_flows()
    after = _new_flows()
    per_bucket: dict[date, _Flows] = {}
    for row in _ledger_rows(tenant=tenant, window=window):
        if row["row"] == BALANCES:
            balance_now = int(row["credited"])
        elif row["bucket"] is None:
            after.add(row)
        else:
            in_window.add(row)
            per_bucket.setdefault(row["bucket"], _new_flows()).add(row)
    closing = balance_now - after.all_net()
    opening = closing - in_window.all_net()
    points = _points_summary(in_window, opening=opening)  # its outstanding is `closing`

    active_rows = _active_rows(tenant=tenant, window=window)
    active_by_bucket = {bucket: count for bucket, count in active_rows if bucket is not None}
    active_total = next((count for bucket, count in active_rows if bucket is None), 0)

    series, outstanding = [], opening
    for start, end in window.buckets():
        flows = per_bucket.get(window.bucket_of(start), _new_flows())
        issued, redeemed, expired = flows.issued(), flows.redeemed(), flows.expired()
        outstanding += issued - redeemed - expired
        series.append(
            {
                "start": start,
                "end": end,
                "issued": issued,
                "redeemed": redeemed,
                "expired": expired,
                "outstanding": outstanding,
                "active_members": active_by_bucket.get(window.bucket_of(start), 0),
            }
        )

    spend = _spend(tenant=tenant, window=window)
    redemptions = _redemption_figures(tenant=tenant, window=window)
    campaigns = _campaigns(
        _campaign_rows(tenant=tenant, window=window), tenant=tenant, active=active_total, spend_net=spend["net"]
    )
    return {
        "tenant_id": tenant.pk,
        "currency": tenant.currency,
        "point_value": tenant.point_value,
        "timezone": tenant.timezone,
        "from": window.date_from,
        "to": window.date_to,
        "interval": window.interval,
        "points": points,
        "liability": {
            "points": closing,
            "money": money_of(closing, tenant.point_value),
            "opening_points": opening,
            "opening_money": money_of(opening, tenant.point_value),
            "currency": tenant.currency,
            "point_value": tenant.point_value,
        },
        "rates": {
            "breakage": rate(points["expired"], points["issued"]),
            "redemption": rate(points["redeemed"], points["issued"]),
        },
        "active_members": active_total,
        "spend": spend,
        "redemptions": {"by_status": redemptions["by_status"]},
        "top_items": redemptions["top_items"],
        "top_categories": redemptions["top_categories"],
        "campaigns": campaigns,
        "series": series,
    }
