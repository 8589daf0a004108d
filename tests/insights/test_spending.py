"""Spending insights: rollups kept from processed events, recomputable from them, and the
insights API that reads them."""

import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insights.models import ALL_CATEGORIES, UNCATEGORIZED, RollupCursor, SpendingRollup
from insights.rollups import SOURCES, allocate, rollups_compute, rollups_rebuild, rollups_update
from rewards.categories import category_create, multiplier_create
from rewards.expiry import member_points_expire
from rewards.models import InboundEvent, Member, Transfer
from rewards.selectors import member_get
from rewards.services import points_adjust
from tests.campaigns.helpers import action, action_rule, campaign_make, ingest, purchase, refund
from tests.conftest import client_for_key
from tests.factories import TenantFactory
from tiers.models import Tier

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


def at(days: int = 0) -> str:
    return (DAY + timedelta(days=days)).isoformat()


def table(tenant) -> dict:
    """The rollup table as {(member ref, day, category): (amount, transactions, points by source)}."""
    out = {}
    for row in SpendingRollup.objects.filter(tenant=tenant).select_related("member"):
        points = (row.points_base, row.points_multiplier, row.points_tier, row.points_campaign)
        if row.amount or row.transactions or any(points):
            out[(row.member.external_ref, row.day, row.category)] = (row.amount, row.transactions, points)
    return out


def computed(tenant) -> dict:
    return {
        key: (cell.amount, cell.transactions, tuple(cell.points[s] for s in SOURCES))
        for key, cell in rollups_compute(tenant=tenant).items()
    }


@pytest.fixture
def dining(tenant):
    category = category_create(tenant=tenant, code="dining", name="Dining")
    multiplier_create(tenant=tenant, category=category, factor=Decimal("3"))
    category_create(tenant=tenant, code="grocery", name="Groceries")
    return category


# The split of one event -----------------------------------------------------------------


def test_allocate_adds_up_exactly_and_follows_the_weights():
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(-7, [2, 1, 0]) == [-5, -2, 0]
    assert allocate(5, [0, 0]) == [5, 0]
    assert sum(allocate(1234, [Decimal("0.3"), Decimal("2.9"), Decimal("7")])) == 1234


def test_a_purchase_is_split_by_category_and_by_source(tenant, dining):
    gold = Tier.objects.create(
        tenant=tenant,
        tier_id="gold",
        names={"en": "Gold"},
        min_points=0,
        earn_multiplier=Decimal("1.5"),
        benefits={"bonus_points": 20},
    )
    assert gold.pk
    body = purchase(
        "p-1",
        amount="100.00",
        occurredAt=at(),
        lineItems=[{"amount": "40.00", "category": "dining"}, {"amount": "60.00", "category": "grocery"}],
    )
    outcome = ingest(tenant, body)
    # 40 x 1.5 x 3 = 180 and 60 x 1.5 = 90: 270, plus the 20 bonus.
    assert outcome.body["points"] == 290
    assert rollups_update() == 1

    rows = table(tenant)
    day = date(2026, 3, 10)
    #                                        amount, transactions, (base, multiplier, tier, campaign)
    assert rows[("m-1", day, "dining")] == (Decimal("40.00"), 1, (40, 120, 20 + 8, 0))
    assert rows[("m-1", day, "grocery")] == (Decimal("60.00"), 1, (60, 0, 30 + 12, 0))
    assert rows[("m-1", day, ALL_CATEGORIES)] == (Decimal("100.00"), 1, (100, 120, 70, 0))
    assert rows == computed(tenant)


def test_refunds_count_against_the_purchase_and_a_full_refund_comes_back_to_zero(tenant, dining):
    ingest(tenant, purchase("p-1", amount="90.00", occurredAt=at(), category="dining"))  # 270
    ingest(tenant, purchase("p-2", amount="10.00", occurredAt=at(), category="grocery"))
    ingest(tenant, refund("r-1", "p-1", amount="30.00"))
    rollups_update()
    day = date(2026, 3, 10)
    assert table(tenant)[("m-1", day, "dining")] == (Decimal("60.00"), 1, (60, 120, 0, 0))
    ingest(tenant, refund("r-2", "p-1", amount="29.99"))
    ingest(tenant, refund("r-3", "p-1"))  # the rest
    rollups_update()
    rows = table(tenant)
    assert rows[("m-1", day, "dining")] == (Decimal("0.00"), 1, (0, 0, 0, 0))
    assert rows[("m-1", day, ALL_CATEGORIES)] == (Decimal("10.00"), 2, (10, 0, 0, 0))
    assert rows == computed(tenant)


def test_campaign_points_of_actions_and_purchases_are_campaign_points(tenant):
    campaign_make(tenant, rule=action_rule("app.login", points=50))
    now = timezone.now()
    ingest(tenant, action("a-1", occurredAt=now.isoformat()))
    rollups_update()
    today = timezone.localdate(now, timezone=tenant_zone(tenant))
    assert table(tenant) == {
        ("m-1", today, UNCATEGORIZED): (Decimal("0.00"), 0, (0, 0, 0, 50)),
        ("m-1", today, ALL_CATEGORIES): (Decimal("0.00"), 0, (0, 0, 0, 50)),
    }


def test_a_rejected_event_adds_nothing(tenant):
    ingest(tenant, purchase("p-1", amount="10.00", currency="EUR", occurredAt=at()))
    assert InboundEvent.objects.get(event_id="p-1").status == InboundEvent.Status.REJECTED
    rollups_update()
    assert table(tenant) == {}


def test_the_day_is_the_tenants_day():
    tenant = TenantFactory(timezone="Asia/Tokyo")
    late = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # 05:00 on the 11th in Tokyo
    ingest(tenant, purchase("p-1", amount="5.00", occurredAt=late.isoformat()))
    rollups_update()
    assert {day for _, day, _ in table(tenant)} == {date(2026, 3, 11)}


# Rollups equal a recomputation from the raw events ------------------------------------

MEMBERS = ("m-1", "m-2", "m-3")
CATEGORIES = ("dining", "grocery", None)
amounts = st.integers(min_value=1, max_value=50_000).map(lambda cents: Decimal(cents) / 100)
purchases = st.builds(
    lambda member, amount, category, split, days: ("purchase", member, amount, category, split, days),
    st.sampled_from(MEMBERS),
    amounts,
    st.sampled_from(CATEGORIES),
    st.booleans(),
    st.integers(min_value=0, max_value=40),
)
refunds = st.builds(
    lambda which, fraction: ("refund", which, fraction),
    st.integers(min_value=0, max_value=1000),
    st.sampled_from([None, Decimal("0.1"), Decimal("0.5"), Decimal("0.33")]),
)
actions = st.builds(lambda member: ("action", member), st.sampled_from(MEMBERS))
steps = st.lists(
    st.one_of(purchases, purchases, refunds, actions, st.just(("expire",)), st.just(("update",)), st.just(("spend",))),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=steps)
def test_rollups_equal_a_recomputation_from_the_events_after_any_sequence(steps):
    tenant = TenantFactory(expiry_policy="DAYS", expiry_days=30)
    dining = category_create(tenant=tenant, code="dining", name="Dining")
    multiplier_create(tenant=tenant, category=dining, factor=Decimal("2.5"))
    category_create(tenant=tenant, code="grocery", name="Groceries")
    campaign_make(tenant, rule=action_rule("app.login", points=7))
    done = []
    for n, step in enumerate(steps, start=1):
        if step[0] == "purchase":
            _, member, amount, category, split, days = step
            extra = {"category": category} if category else {}
            if split and amount >= Decimal("0.02"):
                half = (amount / 2).quantize(Decimal("0.01"))
                extra["lineItems"] = [{"amount": str(half), "category": "grocery"}]
            ingest(tenant, purchase(f"p-{n}", member, amount=str(amount), occurredAt=at(days), **extra))
            done.append(f"p-{n}")
        elif step[0] == "refund" and done:
            _, which, fraction = step
            original = InboundEvent.objects.get(tenant=tenant, event_id=done[which % len(done)])
            part = max(Decimal("0.01"), (original.amount * (fraction or 1)).quantize(Decimal("0.01")))
            amount = None if fraction is None else str(part)  # one past what is left is refused, as it should
            ingest(tenant, refund(f"r-{n}", original.event_id, amount=amount))
        elif step[0] == "action":
            ingest(tenant, action(f"a-{n}", step[1], occurredAt=timezone.now().isoformat()))
        elif step[0] == "expire":
            for member in Member.objects.filter(tenant=tenant):
                member_points_expire(member=member, now=timezone.now() + timedelta(days=31))
        elif step[0] == "spend":
            for member in Member.objects.filter(tenant=tenant):
                balance = member_get(tenant=tenant, external_ref=member.external_ref).balance
                if balance > 1:
                    points_adjust(tenant=tenant, member=member, points=-(balance // 2), reason="spend", actor="t")
        else:
            rollups_update(batch=3)
    rollups_update(batch=4)

    rows = table(tenant)
    assert rows == computed(tenant)
    rollups_rebuild(tenant=tenant)
    assert table(tenant) == rows

    # Independently of how events are split: each member's totals are the events' and the ledger's.
    events = InboundEvent.objects.filter(tenant=tenant, status="APPLIED")
    for member in Member.objects.filter(tenant=tenant):
        mine = events.filter(member_ref=member.external_ref)
        totals = [v for (ref, _, c), v in rows.items() if ref == member.external_ref and c == ALL_CATEGORIES]
        parts = [v for (ref, _, c), v in rows.items() if ref == member.external_ref and c != ALL_CATEGORIES]
        points = sum(sum(v[2]) for v in totals)
        assert points == sum(e.points for e in mine.exclude(type="member.created"))
        earned = Transfer.objects.filter(tenant=tenant, reference_type="event", credit_account__member=member)
        taken = Transfer.objects.filter(tenant=tenant, kind="REVERSAL", debit_account__member=member)
        assert points == sum(t.amount for t in earned) - sum(t.amount for t in taken)
        spent = sum(e.amount for e in mine.filter(type="transaction.created")) - sum(
            e.amount for e in mine.filter(type="transaction.refunded")
        )
        assert sum((v[0] for v in totals), Decimal(0)) == spent
        assert sum(v[1] for v in totals) == mine.filter(type="transaction.created").count()
        assert sum((v[0] for v in parts), Decimal(0)) == spent
        assert sum(sum(v[2]) for v in parts) == points


# Applying events: once each, in any order of commits ------------------------------------


def applied_until(count: int, seconds: float = 30) -> int:
    """Runs updates until `count` events are applied in all. The feed holds back events of
    transactions younger than the oldest one running anywhere on the server, so another
    client's transaction may delay it (never reorder it)."""
    deadline = time.monotonic() + seconds
    while RollupCursor.objects.filter(events_applied__gte=count).count() == 0 and time.monotonic() < deadline:
        rollups_update()
        time.sleep(0.05)
    return RollupCursor.objects.get().events_applied


@pytest.mark.django_db(transaction=True)
def test_an_event_that_commits_late_is_applied_once_it_commits():
    tenant = TenantFactory()
    ingest(tenant, purchase("p-1", amount="1.00", occurredAt=at()))
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                ingest(tenant, purchase("p-late", amount="100.00", occurredAt=at()))
                started.set()
                release.wait(30)
        finally:
            connection.close()
            finished.set()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert started.wait(30)
    # Another member (the open transaction holds m-1's account): commits after p-late began.
    ingest(tenant, purchase("p-2", "m-2", amount="2.00", occurredAt=at()))
    assert applied_until(1) == 1
    for _ in range(3):
        rollups_update()
    # p-2 has committed, but it waits behind the open transaction: still only p-1.
    assert RollupCursor.objects.get().events_applied == 1
    assert not SpendingRollup.objects.filter(member__external_ref="m-2").exists()
    release.set()
    assert finished.wait(30)
    thread.join()
    # An id cursor would have passed p-late for good: p-2, read first, has the higher id.
    assert InboundEvent.objects.get(event_id="p-late").pk < InboundEvent.objects.get(event_id="p-2").pk
    assert applied_until(3) == 3
    assert table(tenant)[("m-1", date(2026, 3, 10), ALL_CATEGORIES)][:2] == (Decimal("101.00"), 2)
    assert table(tenant)[("m-2", date(2026, 3, 10), ALL_CATEGORIES)][:2] == (Decimal("2.00"), 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_updates_apply_each_event_once():
    from tests.rewards.test_earning_concurrency import run_in_threads

    tenant = TenantFactory()
    for i in range(60):
        ingest(tenant, purchase(f"p-{i}", f"m-{i % 7}", amount="1.00", occurredAt=at()))

    def work(_):
        total = 0
        for _ in range(30):
            total += rollups_update(batch=5, max_batches=1)
        return total

    run_in_threads(4, work, workers=4)
    assert applied_until(60) == 60
    totals = SpendingRollup.objects.filter(tenant=tenant, category=ALL_CATEGORIES)
    assert sum(r.transactions for r in totals) == 60
    assert sum(r.amount for r in totals) == Decimal("60.00")


def test_rebuild_prints_progress_and_equals_the_incremental_rollups(tenant, dining):
    for i in range(12):
        ingest(tenant, purchase(f"p-{i}", f"m-{i % 3}", amount=f"{i + 1}.50", occurredAt=at(i), category="dining"))
    rollups_update(batch=5)
    before = table(tenant)
    SpendingRollup.objects.filter(tenant=tenant).update(points_base=0)
    out = StringIO()
    call_command("insights_rebuild", tenant=tenant.slug, stdout=out)
    assert table(tenant) == before
    assert f"{tenant.slug}: events 12/12" in out.getvalue()
    assert "12 events in" in out.getvalue()


# The API ------------------------------------------------------------------------------


@pytest.fixture
def history(tenant, dining):
    """March: 2 dining purchases; April: 1 grocery and 1 dining."""
    ingest(tenant, purchase("p-1", amount="50.00", occurredAt=at(), category="dining"))
    ingest(tenant, purchase("p-2", amount="20.00", occurredAt=at(5), category="dining"))
    ingest(tenant, purchase("p-3", amount="80.00", occurredAt=at(30), category="grocery"))
    ingest(tenant, purchase("p-4", amount="10.00", occurredAt=at(31), category="dining"))
    rollups_update()


def test_member_insights_totals_change_and_top_categories(api_client, history):
    response = api_client.get(
        "/api/v1/members/m-1/insights", {"period": "month", "from": "2026-04-01", "to": "2026-04-30"}
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"], body["to"], body["period"]) == ("2026-04-01", "2026-04-30", "month")
    assert body["totals"] == {
        "amountSpent": "90.00",
        "transactionCount": 2,
        "pointsEarned": 110,
        "pointsBySource": {"base": 90, "multipliers": 20, "tier": 0, "campaigns": 0},
    }
    assert body["previous"]["amountSpent"] == "70.00" and body["previous"]["pointsEarned"] == 210
    assert body["change"] == {"amountSpent": "28.6", "transactionCount": "0.0", "pointsEarned": "-47.6"}
    assert [(c["category"], c["name"], c["amountSpent"], c["share"]) for c in body["topCategories"]] == [
        ("grocery", "Groceries", "80.00", "88.9"),
        ("dining", "Dining", "10.00", "11.1"),
    ]
    assert [b["start"] for b in body["series"]] == ["2026-04-01"]


def test_daily_series_lists_every_day_of_the_window(api_client, history):
    body = api_client.get(
        "/api/v1/members/m-1/insights", {"period": "day", "from": "2026-03-09", "to": "2026-03-16"}
    ).json()
    assert len(body["series"]) == 8
    spent = {b["start"]: b["amountSpent"] for b in body["series"] if b["transactionCount"]}
    assert spent == {"2026-03-10": "50.00", "2026-03-15": "20.00"}


def test_the_member_reads_its_own_insights_and_a_new_event_shows_at_once(
    tenant, member, member_client, dining, django_capture_on_commit_callbacks
):
    ingest(tenant, purchase("p-1", member.external_ref, amount="10.00", occurredAt=timezone.now().isoformat()))
    rollups_update()
    first = member_client.get("/api/v1/me/insights").json()
    assert first["totals"]["amountSpent"] == "10.00"
    assert member_client.get("/api/v1/me/insights").json() == first  # served from the cache
    ingest(tenant, purchase("p-2", member.external_ref, amount="5.00", occurredAt=timezone.now().isoformat()))
    assert member_client.get("/api/v1/me/insights").json()["totals"]["amountSpent"] == "10.00"  # not yet rolled up
    with django_capture_on_commit_callbacks(execute=True):
        rollups_update()  # retires the member's cached answers once committed
    assert member_client.get("/api/v1/me/insights").json()["totals"]["amountSpent"] == "15.00"


def test_without_a_beat_reading_insights_brings_the_rollups_up_to_date(tenant, member, member_client, settings):
    settings.INSIGHTS_ROLLUPS_ON_READ = True  # the embedded default: no broker, no beat
    ingest(tenant, purchase("p-1", member.external_ref, amount="7.00", occurredAt=timezone.now().isoformat()))
    assert member_client.get("/api/v1/me/insights").json()["totals"]["amountSpent"] == "7.00"


def test_the_projection_to_the_next_tier_follows_the_pace(tenant, member, member_client):
    Tier.objects.create(tenant=tenant, tier_id="base", names={"en": "Base"}, min_points=0)
    Tier.objects.create(tenant=tenant, tier_id="silver", names={"en": "Silver"}, min_points=1000, rank=1)
    now = timezone.now()
    ingest(tenant, purchase("p-1", member.external_ref, amount="90.00", occurredAt=now.isoformat()))
    rollups_update()
    tier = member_client.get("/api/v1/me/insights").json()["tier"]
    assert tier["nextTier"]["tierId"] == "silver" and tier["nextTier"]["pointsToGo"] == 910
    assert tier["pointsPerDay"] == "1.00"  # 90 points over 90 days
    today = timezone.localdate(now, timezone=tenant_zone(tenant))
    assert tier["projectedDate"] == (today + timedelta(days=910)).isoformat()


def tenant_zone(tenant):
    from zoneinfo import ZoneInfo

    return ZoneInfo(tenant.timezone)


@pytest.mark.parametrize(
    ("query", "attr"),
    [
        ({"period": "week"}, "period"),
        ({"from": "2026-05-01", "to": "2026-04-01"}, "to"),
        ({"period": "day", "from": "2024-01-01", "to": "2026-01-01"}, "from"),
        ({"from": "yesterday"}, "from"),
    ],
)
def test_bad_queries_are_400_naming_the_field(api_client, member, query, attr):
    response = api_client.get(f"/api/v1/members/{member.external_ref}/insights", query)
    assert response.status_code == 400
    assert [e["attr"] for e in response.json()["errors"]] == [attr]


def test_another_tenants_member_is_not_found_and_tokens_stay_in_their_lane(
    tenant, other_tenant, api_client, member_client, history
):
    theirs = client_for_key(other_tenant.raw_api_key)
    assert theirs.get("/api/v1/members/m-1/insights").status_code == 404
    assert api_client.get("/api/v1/me/insights").status_code in (401, 403)
    assert member_client.get("/api/v1/members/m-1/insights").status_code in (401, 403)


def test_a_months_window_counts_whole_months(api_client, history):
    body = api_client.get("/api/v1/members/m-1/insights", {"from": "2026-03-20", "to": "2026-04-02"}).json()
    assert (body["from"], body["to"]) == ("2026-03-01", "2026-04-30")
    assert body["totals"]["transactionCount"] == 4
    assert body["previous"]["from"] == "2026-01-01" and body["previous"]["to"] == "2026-02-28"
    assert body["change"]["amountSpent"] is None


def test_rows_per_member_day_and_category_are_kept_once(tenant, dining):
    for i in range(3):
        ingest(tenant, purchase(f"p-{i}", amount="1.00", occurredAt=at(), category="dining"))
        rollups_update()
    cells = defaultdict(int)
    for row in SpendingRollup.objects.filter(tenant=tenant):
        cells[(row.member_id, row.day, row.category)] += 1
    assert set(cells.values()) == {1}
    assert SpendingRollup.objects.get(tenant=tenant, category="dining").transactions == 3
