"""Program analytics (`GET /api/v1/insights/program` and the admin dashboard): every figure
against a scenario computed by hand, the liability reconciled with the ledger to the point
after a random mix of everything that moves points, tenant isolation, validation, and a
query count that does not grow with the data or the buckets.

Activity is placed in time by standing in for `django.utils.timezone.now`, which is what
stamps transfers, redemptions and incentives, so windows and buckets can be exercised."""

import random
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.config import campaign_cache_invalidate
from catalog import services as catalog_services
from catalog.models import Item
from insights.program import program_report, program_window
from redemptions import services as redemption_services
from redemptions import workflow
from redemptions.models import Redemption
from redemptions.partners.sandbox import PartnerSandbox
from rewards import credit
from rewards.expiry import member_points_expire
from rewards.models import Account, Member, Transfer
from rewards.payments.sandbox import sandbox_start
from rewards.selectors import ledger_verify, member_balance
from rewards.services import member_token_issue, points_adjust
from rewards.tasks import lots_due_process
from tenants.models import Operator
from tests.campaigns.helpers import action, action_rule, campaign_make, ingest, purchase, refund
from tests.conftest import client_for_key
from tests.factories import MemberFactory, OperatorFactory, TenantFactory, UserFactory
from tests.redemptions.helpers import partner_config

pytestmark = pytest.mark.django_db

URL = "/api/v1/insights/program"
PARIS = ZoneInfo("Europe/Paris")
UTC = ZoneInfo("UTC")


@contextmanager
def clock(moment: datetime):
    """Everything stamped with timezone.now() inside happens at `moment`."""
    with mock.patch("django.utils.timezone.now", return_value=moment.astimezone(UTC)):
        yield


def report_of(tenant, date_from, date_to, interval="day") -> dict:
    window = program_window(tenant=tenant, date_from=date_from, date_to=date_to, interval=interval)
    return program_report(tenant=tenant, window=window)


@pytest.fixture
def partner():
    sandbox = PartnerSandbox().start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def gateway(settings):
    server, url = sandbox_start(delay=1.5)
    settings.PAYMENT_GATEWAY = "http"
    settings.PAYMENT_GATEWAY_URL = url
    settings.PAYMENT_GATEWAY_TIMEOUT_SECONDS = 3
    yield server
    server.stop()


def redeem(tenant, member, item, *, quantity=1) -> Redemption:
    redemption, _ = redemption_services.redemption_request(
        tenant=tenant, member=member, item_id=item.pk, quantity=quantity
    )
    return redemption


# The hand-computed scenario ----------------------------------------------------------------------
#
# A tenant in Paris (UTC+1 in January), 1 point per unit spent, points worth 0.05 and expiring
# two days after they are earned. The window is 11-14 January 2030 (local days, `to` exclusive).
#
#   10 Jan 12:00  m-1 buys for 100.00                          +100  (before the window: opening 100)
#   11 Jan 12:00  m-1 buys for 50.00                            +50
#                 m-2 gets 30 from an operator                  +30
#                 m-2 logs in: the campaign gives 20            +20
#                 m-2 buys for 30.00                            +30
#   12 Jan 00:30  m-3 buys for 10.00 (23:30 UTC on the 11th:    +10  counted on the 12th, a Paris day)
#   12 Jan 10:00  m-1 redeems item A for 40, fulfilled          -40  (from the lot of the 10th)
#                 m-2 redeems item B for 25, then cancels     -25 +25
#                 m-1's purchase of the 11th refunded 20.00     -20  (a reversal)
#                 m-2 loses 5 to an operator                     -5
#   13 Jan 11:00  expiry: what is left of the lot of the 10th   -60  (it lapsed on the 12th at noon)
#
# issued = 50 + 30 + 20 + 30 + 10 - 20 - 5 = 115; redeemed = 40 + 25 - 25 = 40; expired = 60;
# outstanding = 100 + 115 - 40 - 60 = 115 = m-1 30 + m-2 75 + m-3 10.


@pytest.fixture
def scenario(partner):
    tenant = TenantFactory(timezone="Europe/Paris", point_value=Decimal("0.05"), expiry_policy="DAYS", expiry_days=2)
    other = TenantFactory(timezone="Europe/Paris")
    partner_config(tenant, partner.url)
    partner_config(other, partner.url, code="other")
    catalog_services.category_create(tenant=tenant, code="gift", name="Gift cards")
    item_a = catalog_services.item_create(
        tenant=tenant, name="Item A", point_cost=40, kind=Item.Kind.GIFT_CARD, category="gift"
    )
    item_b = catalog_services.item_create(tenant=tenant, name="Item B", point_cost=25, kind=Item.Kind.GIFT_CARD)
    other_item = catalog_services.item_create(tenant=other, name="Other's item", point_cost=7, kind=Item.Kind.GIFT_CARD)

    with clock(datetime(2030, 1, 10, 12, 0, tzinfo=PARIS)):
        campaign = campaign_make(tenant, rule=action_rule(points=20), name="Login bonus")
        campaign_make(other, rule=action_rule(points=999), name="Other's bonus")
        ingest(tenant, purchase("d0-m1", "m-1", "100.00"))
        ingest(other, purchase("o-1", "m-1", "1000.00"))
    with clock(datetime(2030, 1, 11, 12, 0, tzinfo=PARIS)):
        ingest(tenant, purchase("d1-m1", "m-1", "50.00"))
        m2 = MemberFactory(tenant=tenant, external_ref="m-2")
        points_adjust(tenant=tenant, member=m2, points=30, reason="welcome", actor="test")
        ingest(tenant, action("d1-m2-login", "m-2"))
        ingest(tenant, purchase("d1-m2", "m-2", "30.00"))
        # The other tenant, busy in the same window: none of it may show.
        ingest(other, action("o-login", "m-1"))
        other_member = Member.objects.get(tenant=other, external_ref="m-1")
        points_adjust(tenant=other, member=other_member, points=-3, reason="oops", actor="test")
        redeem(other, other_member, other_item, quantity=2)
    with clock(datetime(2030, 1, 12, 0, 30, tzinfo=PARIS)):
        ingest(tenant, purchase("d2-m3", "m-3", "10.00"))
    with clock(datetime(2030, 1, 12, 10, 0, tzinfo=PARIS)):
        m1 = Member.objects.get(tenant=tenant, external_ref="m-1")
        redemption = redeem(tenant, m1, item_a)
        assert workflow.fulfil(redemption.pk).outcome == "completed"
        cancelled = redeem(tenant, m2, item_b)
        redemption_services.redemption_cancel(redemption=cancelled, actor="test")
        ingest(tenant, refund("d2-refund", "d1-m1", "20.00"))
        points_adjust(tenant=tenant, member=m2, points=-5, reason="correction", actor="test")
    with clock(datetime(2030, 1, 13, 11, 0, tzinfo=PARIS)):
        for member in Member.objects.filter(tenant=tenant):
            member_points_expire(member=member, now=datetime(2030, 1, 13, 11, 0, tzinfo=PARIS))
    return {"tenant": tenant, "other": other, "campaign": campaign, "item_a": item_a}


def test_every_figure_matches_the_hand_computed_scenario(scenario):
    tenant = scenario["tenant"]

    report = report_of(tenant, date(2030, 1, 11), date(2030, 1, 14))

    assert report["points"] == {
        "opening_outstanding": 100,
        "issued": 115,
        "redeemed": 40,
        "expired": 60,
        "outstanding": 115,
        "issued_breakdown": {
            "earned": 110,
            "purchased": 0,
            "adjusted_in": 30,
            "adjusted_out": 5,
            "reversed": 20,
            "other": 0,
        },
        "redeemed_breakdown": {"debited": 65, "refunded": 25},
    }
    balances = {m.external_ref: member_balance(member=m) for m in Member.objects.filter(tenant=tenant)}
    assert balances == {"m-1": 30, "m-2": 75, "m-3": 10}
    assert report["liability"] == {
        "points": 115,
        "money": Decimal("5.75"),
        "opening_points": 100,
        "opening_money": Decimal("5.00"),
        "currency": "USD",
        "point_value": Decimal("0.05"),
    }
    # 60 / 115 = 0.52173..., 40 / 115 = 0.34782...
    assert report["rates"] == {"breakage": Decimal("0.5217"), "redemption": Decimal("0.3478")}
    assert report["active_members"] == 3
    assert report["spend"] == {
        "purchases": 3,
        "amount": Decimal("90.00"),
        "refunds": 1,
        "refunded": Decimal("20.00"),
        "net": Decimal("70.00"),
    }
    assert [
        (s["start"], s["issued"], s["redeemed"], s["expired"], s["outstanding"], s["active_members"])
        for s in report["series"]
    ] == [
        (date(2030, 1, 11), 130, 0, 0, 230, 2),  # m-3's purchase at 23:30 UTC is a Paris 12th
        (date(2030, 1, 12), -15, 40, 0, 175, 3),
        (date(2030, 1, 13), 0, 0, 60, 115, 0),  # expiry is the platform's doing, not the member's
    ]
    statuses = {row["status"]: (row["count"], row["points"]) for row in report["redemptions"]["by_status"]}
    assert statuses == {
        "PENDING": (0, 0),
        "FULFILLING": (0, 0),
        "COMPLETED": (1, 40),
        "FAILED": (0, 0),
        "REFUNDED": (0, 0),
        "CANCELLED": (1, 25),
    }
    assert report["top_items"] == [
        {
            "item_id": scenario["item_a"].pk,
            "name": "Item A",
            "kind": "GIFT_CARD",
            "category_code": "gift",
            "redemptions": 1,
            "quantity": 1,
            "points": 40,
        }
    ]
    assert report["top_categories"] == [
        {"category_code": "gift", "name": "Gift cards", "redemptions": 1, "quantity": 1, "points": 40}
    ]
    # The login bonus: 20 points at 0.05; m-2 spent 30.00, the two others 30.00 (m-1: 50 - 20)
    # and 10.00 (m-3), 20.00 on average: a lift of 1.5.
    assert report["campaigns"] == [
        {
            "campaign_id": scenario["campaign"].pk,
            "name": "Login bonus",
            "status": "ACTIVE",
            "incentives": 1,
            "reversed": 0,
            "points": 20,
            "points_money": Decimal("1.00"),
            "cashback": Decimal("0.00"),
            "coupons": 0,
            "cost": Decimal("1.00"),
            "recipients": 1,
            "others": 2,
            "avg_spend_recipients": Decimal("30.00"),
            "avg_spend_others": Decimal("20.00"),
            "lift": Decimal("1.5000"),
        }
    ]


def test_the_api_answers_with_the_same_figures_on_the_wire(scenario):
    tenant = scenario["tenant"]
    client = client_for_key(tenant.raw_api_key)

    response = client.get(URL, {"from": "2030-01-11", "to": "2030-01-14", "interval": "day"})

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["from"], body["to"], body["interval"], body["timezone"]) == (
        "2030-01-11",
        "2030-01-14",
        "day",
        "Europe/Paris",
    )
    assert body["points"]["openingOutstanding"] == 100
    assert body["points"]["issuedBreakdown"]["adjustedOut"] == 5
    assert (body["points"]["issued"], body["points"]["redeemed"], body["points"]["expired"]) == (115, 40, 60)
    assert body["liability"] == {
        "points": 115,
        "money": "5.750000",
        "openingPoints": 100,
        "openingMoney": "5.000000",
        "currency": "USD",
        "pointValue": "0.050000",
    }
    assert body["rates"] == {"breakage": "0.5217", "redemption": "0.3478"}
    assert body["activeMembers"] == 3
    assert body["spend"]["net"] == "70.00"
    assert body["campaigns"][0]["lift"] == "1.5000"
    assert body["campaigns"][0]["cost"] == "1.000000"
    assert body["topItems"][0]["itemId"] == str(scenario["item_a"].pk)
    assert [point["start"] for point in body["series"]] == ["2030-01-11", "2030-01-12", "2030-01-13"]
    assert body["series"][1]["activeMembers"] == 3


def test_week_and_month_buckets_add_up_to_the_window(scenario):
    tenant = scenario["tenant"]

    weekly = report_of(tenant, date(2030, 1, 1), date(2030, 1, 20), interval="week")
    monthly = report_of(tenant, date(2029, 12, 15), date(2030, 2, 1), interval="month")

    # Weeks from Monday, the first and last clipped to the window.
    assert [(s["start"], s["end"]) for s in weekly["series"]] == [
        (date(2030, 1, 1), date(2030, 1, 7)),
        (date(2030, 1, 7), date(2030, 1, 14)),
        (date(2030, 1, 14), date(2030, 1, 20)),
    ]
    assert [s["issued"] for s in weekly["series"]] == [0, 215, 0]
    assert weekly["series"][1]["active_members"] == 3
    assert [(s["start"], s["issued"], s["outstanding"]) for s in monthly["series"]] == [
        (date(2029, 12, 15), 0, 0),
        (date(2030, 1, 1), 215, 115),
    ]
    for report in (weekly, monthly):
        points = report["points"]
        assert points["opening_outstanding"] == 0
        assert (points["issued"], points["redeemed"], points["expired"], points["outstanding"]) == (215, 40, 60, 115)
        assert sum(s["issued"] for s in report["series"]) == points["issued"]
        assert report["series"][-1]["outstanding"] == points["outstanding"]


def test_rates_are_null_when_nothing_was_issued(scenario):
    tenant = scenario["tenant"]

    quiet = report_of(tenant, date(2030, 2, 1), date(2030, 2, 3))
    expiry_only = report_of(tenant, date(2030, 1, 13), date(2030, 1, 14))

    assert quiet["rates"] == {"breakage": None, "redemption": None}
    assert quiet["points"]["opening_outstanding"] == quiet["points"]["outstanding"] == 115
    assert quiet["campaigns"] == [] and quiet["top_items"] == [] and quiet["active_members"] == 0
    assert expiry_only["points"]["issued"] == 0 and expiry_only["points"]["expired"] == 60
    assert expiry_only["rates"] == {"breakage": None, "redemption": None}
    # A day whose reversals and debits outweigh what was earned: nothing to compare with either.
    negative = report_of(tenant, date(2030, 1, 12), date(2030, 1, 13))
    assert negative["points"]["issued"] == -15
    assert negative["rates"] == {"breakage": None, "redemption": None}


def test_another_tenants_activity_is_never_counted(scenario):
    other = scenario["other"]

    mine = client_for_key(scenario["tenant"].raw_api_key).get(URL, {"from": "2030-01-10", "to": "2030-01-14"}).json()
    theirs = client_for_key(other.raw_api_key).get(URL, {"from": "2030-01-10", "to": "2030-01-14"}).json()

    assert mine["points"]["issued"] == 215 and mine["activeMembers"] == 3
    # The other tenant: 1000 earned, 999 from its own campaign, -3 adjusted, 14 redeemed.
    assert theirs["tenantId"] == str(other.pk)
    assert (theirs["points"]["issued"], theirs["points"]["redeemed"]) == (1000 + 999 - 3, 14)
    assert theirs["activeMembers"] == 1
    assert [c["name"] for c in theirs["campaigns"]] == ["Other's bonus"]
    assert [i["name"] for i in theirs["topItems"]] == ["Other's item"]
    assert theirs["liability"]["points"] == sum(
        Account.objects.filter(tenant=other, member__isnull=False).values_list("balance", flat=True)
    )


def test_members_and_anonymous_callers_are_refused(tenant, member_client, client):
    assert member_client.get(URL).status_code == 403
    response = client.get(URL)
    assert response.status_code == 401
    assert response.json()["errors"][0]["code"] == "not_authenticated"


@pytest.mark.parametrize(
    ("params", "attr"),
    [
        ({"from": "2030-01-10", "to": "2030-01-09"}, "to"),
        ({"from": "2030-01-10", "to": "2030-01-10"}, "to"),
        ({"interval": "hour"}, "interval"),
        ({"from": "2029-01-01", "to": "2030-02-06", "interval": "day"}, "interval"),  # 401 days
        ({"from": "1950-01-01", "to": "2030-01-01", "interval": "week"}, "from"),
        ({"from": "2030-13-01"}, "from"),
        ({"to": "yesterday"}, "to"),
    ],
)
def test_a_window_that_makes_no_sense_is_a_400_naming_the_field(api_client, params, attr):
    response = api_client.get(URL, params)

    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["type"] == "validation_error"
    assert [error["attr"] for error in body["errors"]] == [attr]


def test_the_largest_windows_are_accepted(tenant, api_client):
    assert api_client.get(URL, {"from": "2029-01-01", "to": "2030-02-05", "interval": "day"}).status_code == 200
    assert api_client.get(URL, {"from": "1970-01-01", "to": "2003-05-01", "interval": "month"}).status_code == 200
    assert api_client.get(URL).json()["interval"] == "day"  # the last 30 days, today included
    with pytest.raises(ValidationError) as raised:
        program_window(tenant=tenant, date_from=None, date_to=None, interval="year")
    assert list(raised.value.message_dict) == ["interval"]


def test_the_number_of_queries_does_not_grow_with_data_or_buckets(scenario, django_assert_num_queries):
    tenant = scenario["tenant"]
    small = program_window(tenant=tenant, date_from=date(2030, 1, 13), date_to=date(2030, 1, 14), interval="day")
    large = program_window(tenant=tenant, date_from=date(2029, 1, 1), date_to=date(2030, 2, 5), interval="day")

    with django_assert_num_queries(7):
        program_report(tenant=tenant, window=small)
    with django_assert_num_queries(7):
        report = program_report(tenant=tenant, window=large)
    assert len(report["series"]) == 400
    # More data: more members, events, campaigns, redemptions. Still seven.
    with clock(datetime(2030, 1, 12, 15, 0, tzinfo=PARIS)):
        for n in range(12):
            campaign_make(tenant, rule=action_rule(code=f"quest.{n}", points=1), name=f"C{n}")
        campaign_cache_invalidate(tenant_pk=tenant.pk)  # its on-commit retirement never runs in a test
        for n in range(12):
            ingest(tenant, purchase(f"more-{n}", f"more-{n}", f"{n + 1}.00"))
            ingest(tenant, action(f"more-login-{n}", f"more-{n}", code=f"quest.{n}"))
    with django_assert_num_queries(7):
        report = program_report(tenant=tenant, window=large)
    assert len(report["campaigns"]) == 13
    client = client_for_key(tenant.raw_api_key)
    client.get(URL)  # the API key's first use of the day is recorded once
    with CaptureQueriesContext(connection) as few:
        client.get(URL, {"from": "2030-01-13", "to": "2030-01-14", "interval": "day"})
    with CaptureQueriesContext(connection) as many:
        client.get(URL, {"from": "2029-01-01", "to": "2030-02-05", "interval": "day"})
    assert len(few) == len(many)


# The liability against the ledger, after a random mix --------------------------------------------------


def ledger_replay(tenant, *, start: datetime, end: datetime) -> dict:
    """An independent account of the window, transfer by transfer in Python: each moves points
    into members' hands (credited to a member's account from a system one), out of them, or
    between two accounts of the same member (which changes nothing)."""
    opening = closing = 0
    figures = {"issued": 0, "redeemed": 0, "expired": 0}
    issuing = {"EARN", "INCENTIVE", "PURCHASE", "ADJUSTMENT", "REVERSAL"}
    for transfer in Transfer.objects.filter(tenant=tenant).select_related("credit_account", "debit_account"):
        into, out = transfer.credit_account.member_id is not None, transfer.debit_account.member_id is not None
        delta = transfer.amount * (into - out)
        if transfer.created_at < start:
            opening += delta
        if transfer.created_at < end:
            closing += delta
        if not start <= transfer.created_at < end:
            continue
        if transfer.kind in issuing:
            figures["issued"] += delta
        elif transfer.kind in ("REDEMPTION", "REDEMPTION_REFUND"):
            figures["redeemed"] -= delta
        elif transfer.kind == "EXPIRY":
            figures["expired"] -= delta
        else:
            assert transfer.kind == "MATURED" and delta == 0, transfer.kind
    return {"opening_outstanding": opening, "outstanding": closing, **figures}


@pytest.mark.parametrize("seed", [7, 2030])
def test_the_liability_reconciles_with_the_ledger_to_the_point(seed, partner, gateway):
    rng = random.Random(seed)
    tz = ZoneInfo("America/New_York")
    tenant = TenantFactory(
        timezone="America/New_York",
        point_value=Decimal("0.0125"),
        expiry_policy="DAYS",
        expiry_days=4,
        pending_days=1,
    )
    other = TenantFactory()
    partner_config(tenant, partner.url)
    items = [
        catalog_services.item_create(
            tenant=tenant, name=f"Item {cost}", point_cost=cost, kind=Item.Kind.GIFT_CARD, stock_quantity=1000
        )
        for cost in (5, 17, 40)
    ]
    package = credit.credit_package_create(
        tenant=tenant, code="pack", name="Pack", price=Decimal("2.00"), reward_points=150
    )
    refs = [f"r-{n}" for n in range(6)]
    first = datetime(2031, 3, 1, 9, 0, tzinfo=tz)
    with clock(first):
        campaign_make(tenant, rule=action_rule(points=15), name="Login")
        campaign_make(
            tenant,
            rule={"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "multiplier": "2"}},
            name="Double",
        )
        campaign_make(
            tenant,
            rule={"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "CASHBACK", "percent": "5"}},
            name="Cashback",
        )
        for ref in refs:
            MemberFactory(tenant=tenant, external_ref=ref)
    purchases, n = [], 0
    for day in range(14):
        for _ in range(rng.randint(4, 9)):
            n += 1
            moment = first + timedelta(days=day, hours=rng.randint(0, 14), minutes=rng.randint(0, 59))
            ref = rng.choice(refs)
            member = Member.objects.get(tenant=tenant, external_ref=ref)
            op = rng.choice(["buy", "buy", "buy", "login", "adjust", "redeem", "redeem", "refund", "credit"])
            with clock(moment):
                if op == "buy":
                    ingest(tenant, purchase(f"e-{n}", ref, f"{rng.randint(1, 400)}.{rng.randint(0, 99):02d}"))
                    purchases.append(f"e-{n}")
                elif op == "login":
                    ingest(tenant, action(f"e-{n}", ref))
                elif op == "adjust":
                    points = rng.choice([1, 1, -1]) * rng.randint(1, 80)
                    if points > 0 or member_balance(member=member) >= -points:
                        points_adjust(tenant=tenant, member=member, points=points, reason="mix", actor="test")
                elif op == "refund" and purchases:
                    original = rng.choice(purchases)
                    amount = None if rng.random() < 0.4 else f"{rng.randint(1, 30)}.00"
                    ingest(tenant, refund(f"e-{n}", original, amount))  # may be refused: too much refunded
                elif op == "credit":
                    credit.credit_purchase_start(
                        tenant=tenant, member=member, package=package, payment_token="tok_approve"
                    )
                elif op.startswith("redeem"):
                    item = rng.choice(items)
                    if member_balance(member=member) >= item.point_cost:
                        redemption = redeem(tenant, member, item)
                        outcome = rng.choice(["complete", "reject", "cancel", "leave"])
                        if outcome == "cancel":
                            redemption_services.redemption_cancel(redemption=redemption, actor="test")
                        elif outcome in ("complete", "reject"):
                            partner.set_mode("ok" if outcome == "complete" else "reject")
                            workflow.fulfil(redemption.pk)
        with clock(first + timedelta(days=day, hours=15)):
            lots_due_process()  # release pending points, expire lapsed ones
        with clock(first + timedelta(days=day, hours=1)):
            ingest(other, purchase(f"other-{day}", "x", "10.00"))  # another tenant, all along

    # Whatever the draw: one redemption refused by the partner (refunded), one cancelled.
    with clock(first + timedelta(days=13, hours=16)):
        rich = max(Member.objects.filter(tenant=tenant), key=lambda m: member_balance(member=m))
        partner.set_mode("reject")
        workflow.fulfil(redeem(tenant, rich, items[0]).pk)
        redemption_services.redemption_cancel(redemption=redeem(tenant, rich, items[0]), actor="test")

    kinds = set(Transfer.objects.filter(tenant=tenant).values_list("kind", flat=True))
    assert kinds >= {
        "EARN",
        "ADJUSTMENT",
        "REVERSAL",
        "REDEMPTION",
        "REDEMPTION_REFUND",
        "EXPIRY",
        "PURCHASE",
        "MATURED",
    }
    adjustments = Transfer.objects.filter(tenant=tenant, kind="ADJUSTMENT")
    assert adjustments.filter(debit_account__member__isnull=False).exists()  # operator debits
    assert adjustments.filter(credit_account__member__isnull=False).exists()  # and credits
    statuses = set(Redemption.objects.filter(tenant=tenant).values_list("status", flat=True))
    assert {"COMPLETED", "REFUNDED", "CANCELLED"} <= statuses
    assert ledger_verify(tenant=tenant).ok

    # The whole history up to tomorrow: outstanding is the ledger's sum of member balances.
    everything = report_of(tenant, date(2031, 2, 27), date(2031, 3, 30), interval="week")
    balances = sum(Account.objects.filter(tenant=tenant, member__isnull=False).values_list("balance", flat=True))
    assert everything["points"]["opening_outstanding"] == 0
    assert everything["points"]["outstanding"] == everything["liability"]["points"] == balances
    assert everything["liability"]["money"] == balances * Decimal("0.0125")

    windows = [
        (date(2031, 2, 27), date(2031, 3, 30), "week"),
        (date(2031, 3, 3), date(2031, 3, 8), "day"),
        (date(2031, 3, 6), date(2031, 3, 7), "day"),
        (date(2031, 3, 10), date(2031, 4, 10), "month"),
        (date(2031, 3, 1), date(2031, 3, 15), "day"),
    ]
    for date_from, date_to, interval in windows:
        report = report_of(tenant, date_from, date_to, interval)
        points = report["points"]
        start, end = (datetime.combine(d, datetime.min.time(), tzinfo=tz) for d in (date_from, date_to))
        expected = ledger_replay(tenant, start=start, end=end)
        assert {k: points[k] for k in expected} == expected, (date_from, date_to)
        assert points["outstanding"] == (
            points["opening_outstanding"] + points["issued"] - points["redeemed"] - points["expired"]
        )
        series = report["series"]
        assert sum(s["issued"] for s in series) == points["issued"]
        assert sum(s["redeemed"] for s in series) == points["redeemed"]
        assert sum(s["expired"] for s in series) == points["expired"]
        assert series[-1]["outstanding"] == points["outstanding"]
        assert report["liability"]["money"] == points["outstanding"] * Decimal("0.0125")


# The admin dashboard ----------------------------------------------------------------------------------


def dashboard_url() -> str:
    return reverse("admin:insights_program")


def test_an_operator_sees_the_dashboard_of_their_own_tenant_only(scenario, client):
    tenant, other = scenario["tenant"], scenario["other"]
    operator = OperatorFactory(tenant=tenant, role=Operator.Role.VIEWER)
    client.force_login(operator.user)

    index = client.get(reverse("admin:index"))
    response = client.get(dashboard_url(), {"from": "2030-01-11", "to": "2030-01-14", "tenant": other.pk})

    assert dashboard_url() in index.content.decode()
    assert response.status_code == 200
    page = response.content.decode()
    report = response.context["report"]
    assert response.context["tenant"] == tenant  # the tenant in the query string is not theirs: ignored
    assert report["tenant_id"] == tenant.pk
    assert (report["points"]["outstanding"], report["points"]["issued"], report["active_members"]) == (115, 115, 3)
    assert "Opening outstanding 100 + issued 115 &minus; redeemed 40 &minus; expired 60 = outstanding" in page
    assert page.count("<svg viewBox") == 4  # issued/redeemed/expired, liability, active members, statuses
    assert "Item A" in page and "Login bonus" in page
    assert "Other&#x27;s" not in page and "Other's" not in page and other.name not in page
    assert 'name="tenant"' not in page  # no tenant picker for an operator


def test_platform_staff_choose_a_tenant(scenario, client):
    staff = UserFactory(username="staff", is_superuser=True)
    client.force_login(staff)

    picker = client.get(dashboard_url())
    chosen = client.get(dashboard_url(), {"tenant": scenario["other"].pk, "from": "2030-01-10", "to": "2030-01-14"})

    assert picker.status_code == 200 and picker.context["report"] is None
    assert 'name="tenant"' in picker.content.decode()
    assert chosen.context["report"]["tenant_id"] == scenario["other"].pk
    assert chosen.context["report"]["points"]["redeemed"] == 14
    assert "Item A" not in chosen.content.decode()


def test_the_dashboard_is_refused_to_staff_without_a_tenant_and_reports_bad_windows(tenant, client):
    client.force_login(UserFactory(username="no-tenant"))
    assert client.get(dashboard_url()).status_code == 403

    operator = OperatorFactory(tenant=tenant, role=Operator.Role.OWNER)
    client.force_login(operator.user)
    response = client.get(dashboard_url(), {"from": "2030-01-10", "to": "2030-01-01"})
    assert response.status_code == 200
    assert response.context["report"] is None
    assert response.context["form"].errors == {"to": ["Must be after `from` (`to` is exclusive)."]}


def test_tokens_of_members_are_no_way_into_the_dashboard(tenant, client):
    member = MemberFactory(tenant=tenant)
    token, _ = member_token_issue(member=member)
    response = client.get(dashboard_url(), HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 302  # to the admin login
