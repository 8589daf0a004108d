"""Reconciliation: balances and counters recomputed from the ledger and the database; drift
reported (model rows, a metric, the back office's banner), never corrected."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from campaigns.models import CampaignStats
from catalog.models import Item
from insights.models import ReconciliationDrift, ReconciliationRun
from insights.reconciliation import reconcile_tenant
from insights.tasks import reconcile_task
from redemptions.services import redemption_cancel, redemption_request
from rewards.expiry import member_pending_release, member_points_expire
from rewards.limits import limit_counters_check
from rewards.models import Account, Member
from rewards.selectors import ledger_verify
from tenants.models import Operator
from tenants.services import limit_upsert
from tests.campaigns.helpers import action, action_rule, campaign_make, ingest, purchase, refund
from tests.factories import OperatorFactory, TenantFactory
from tests.redemptions.helpers import member_with, partner_config, reward

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_tenant(django_capture_on_commit_callbacks):
    """A tenant with earning under limits (so Redis holds counters), a campaign's incentives
    (one reversed by a refund), redemptions of a counted item (one cancelled), an operator
    adjustment, and points that expired."""
    tenant = TenantFactory(expiry_policy="DAYS", expiry_days=30)
    limit_upsert(tenant=tenant, scope="GLOBAL", max_per_day=100_000, max_total=10_000_000)
    limit_upsert(tenant=tenant, scope="USER", max_per_day=50_000)
    budget = {"budget_rewards": 1000, "budget_amount": Decimal(100_000)}
    campaign_make(tenant, rule=action_rule("app.login", points=25), **budget)
    campaign_make(
        tenant,
        name="Purchase bonus",
        **budget,
        rule={"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "POINTS", "points": 10}},
    )
    # Refunds give limit headroom back once committed: run the commit callbacks as they come.
    with django_capture_on_commit_callbacks(execute=True):
        ingest(tenant, purchase("p-1", "m-1", amount="120.00"))
        ingest(tenant, purchase("p-2", "m-1", amount="80.00"))
        ingest(tenant, purchase("p-3", "m-2", amount="60.00"))
        ingest(tenant, action("a-1", "m-1"))
        ingest(tenant, refund("r-1", "p-2"))
        ingest(tenant, refund("r-3", "p-3", amount="20.00"))
        partner_config(tenant, "http://127.0.0.1:9/partner")  # fulfilment is not run here
        item = reward(tenant, point_cost=40, stock=10)
        m1 = Member.objects.get(tenant=tenant, external_ref="m-1")
        redemption_request(tenant=tenant, member=m1, item_id=item.pk)
        cancelled, _ = redemption_request(tenant=tenant, member=m1, item_id=item.pk)
        redemption_cancel(redemption=cancelled, actor="test")
    member_with(tenant, 70)
    m2 = Member.objects.get(tenant=tenant, external_ref="m-2")
    assert member_points_expire(member=m2, now=timezone.now() + timedelta(days=31)) > 0
    assert ledger_verify(tenant=tenant).ok
    return tenant


def gauge(tenant, kind: str) -> float | None:
    return REGISTRY.get_sample_value("loyalty_reconciliation_drift", {"tenant": tenant.slug, "kind": kind})


def test_a_clean_ledger_with_activity_has_no_drift(busy_tenant):
    run = reconcile_tenant(tenant=busy_tenant)

    assert list(run.drifts.values_list("kind", "object_id", "stored", "computed")) == []
    assert run.drift_count == 0
    # Three member accounts (balance and lots each), four Redis counters (the tenant's day and
    # total, each earning member's day), two campaigns (rewards and amount each), one item.
    assert run.checked == 3 * 2 + 4 + 2 * 2 + 1
    assert gauge(busy_tenant, "ACCOUNT_BALANCE") == 0


def test_a_corrupted_balance_is_reported_exactly_and_not_fixed(busy_tenant):
    account = Account.objects.get(member__tenant=busy_tenant, member__external_ref="m-1", kind=Account.Kind.MEMBER)
    true_balance = account.balance
    with connection.cursor() as cursor:
        cursor.execute("UPDATE rewards_account SET balance = balance + 7 WHERE id = %s", [account.pk])

    run = reconcile_tenant(tenant=busy_tenant)

    drifts = {(d.kind, d.object_id, d.stored, d.computed) for d in run.drifts.all()}
    assert drifts == {
        ("ACCOUNT_BALANCE", str(account.pk), true_balance + 7, true_balance),
        ("LOTS", str(account.pk), true_balance + 7, true_balance),
    }
    assert run.drift_count == 2
    assert gauge(busy_tenant, "ACCOUNT_BALANCE") == 1
    assert Account.objects.get(pk=account.pk).balance == true_balance + 7  # reported, not corrected


def test_corrupted_counters_are_reported(busy_tenant):
    stats = CampaignStats.objects.get(campaign__tenant=busy_tenant, campaign__name="Purchase bonus")
    item = Item.objects.get(tenant=busy_tenant)
    CampaignStats.objects.filter(pk=stats.pk).update(rewards_issued=stats.rewards_issued + 1)
    Item.objects.filter(pk=item.pk).update(stock_quantity=item.stock_quantity - 2)
    from django_redis import get_redis_connection

    redis = get_redis_connection("default")
    daily = list(redis.scan_iter(match=f"*limit:{busy_tenant.pk}:daily"))
    assert len(daily) == 1
    issued_today = int(redis.get(daily[0]))
    redis.incrby(daily[0], 5)

    run = reconcile_tenant(tenant=busy_tenant)

    found = {(d.kind, d.object_id, d.stored, d.computed) for d in run.drifts.all()}
    assert found == {
        ("CAMPAIGN_REWARDS", str(stats.pk), stats.rewards_issued + 1, stats.rewards_issued),
        ("ITEM_STOCK", str(item.pk), item.stock_quantity - 2, item.stock_quantity),
        ("LIMIT_COUNTER", f"limit:{busy_tenant.pk}:daily", issued_today + 5, issued_today),
    }
    assert gauge(busy_tenant, "LIMIT_COUNTER") == 1


def test_the_command_reports_drift_per_tenant_and_exits_non_zero(busy_tenant, capsys):
    calm = TenantFactory()
    call_command("reconcile", "--tenant", calm.slug)
    assert "0 drift" in capsys.readouterr().out
    Account.objects.filter(member__tenant=busy_tenant, kind=Account.Kind.MEMBER).update(balance=0)

    with pytest.raises(SystemExit) as exited:
        call_command("reconcile", "--tenant", busy_tenant.slug)

    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "DRIFT" in out and "ACCOUNT_BALANCE" in out
    assert ReconciliationRun.objects.filter(tenant=calm).get().drift_count == 0


def test_the_scheduled_task_runs_every_tenant(busy_tenant, settings):
    other = TenantFactory()
    assert "insights.tasks.reconcile" in {e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()}

    assert reconcile_task() == 0

    assert set(ReconciliationRun.objects.values_list("tenant", flat=True)) >= {busy_tenant.pk, other.pk}
    assert ReconciliationDrift.objects.count() == 0


def test_the_admin_home_warns_of_the_last_runs_drift_and_shows_it_read_only(client, busy_tenant):
    calm = TenantFactory()
    reconcile_tenant(tenant=calm)
    item = Item.objects.get(tenant=busy_tenant)
    Item.objects.filter(pk=item.pk).update(stock_quantity=0)
    run = reconcile_tenant(tenant=busy_tenant)
    client.force_login(OperatorFactory(tenant=busy_tenant, role=Operator.Role.VIEWER).user)

    home = client.get("/admin/")

    assert home.status_code == 200
    page = home.content.decode()
    assert 'id="reconciliation-alert"' in page and "found\n1 stored total that disagree" in page
    drifts = client.get(f"/admin/insights/reconciliationdrift/?run__id__exact={run.pk}")
    assert drifts.status_code == 200
    assert str(item.pk) in drifts.content.decode()
    assert client.get("/admin/insights/reconciliationdrift/add/").status_code == 403
    opened = client.get(f"/admin/insights/reconciliationrun/{run.pk}/change/")
    assert opened.status_code == 200 and str(item.pk) in opened.content.decode()

    # Another tenant's operator sees no banner, and none of this tenant's runs.
    client.force_login(OperatorFactory(tenant=calm, role=Operator.Role.OWNER).user)
    assert 'id="reconciliation-alert"' not in client.get("/admin/").content.decode()
    assert client.get(f"/admin/insights/reconciliationrun/{run.pk}/change/").status_code == 404

    # Once a later run finds the books agree again, the warning goes.
    Item.objects.filter(pk=item.pk).update(stock_quantity=item.stock_quantity)
    reconcile_tenant(tenant=busy_tenant)
    client.force_login(OperatorFactory(tenant=busy_tenant, role=Operator.Role.OWNER).user)
    assert 'id="reconciliation-alert"' not in client.get("/admin/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_pending_points_reconcile_before_and_after_release_in_committed_snapshots():
    # Committed transactions, so each batch is read in a REPEATABLE READ snapshot of its own.
    tenant = TenantFactory(pending_days=14)
    ingest(tenant, purchase("p-1", "m-1", amount="50.00"))
    ingest(tenant, purchase("p-2", "m-2", amount="30.00"))
    before = reconcile_tenant(tenant=tenant)
    member = Member.objects.get(tenant=tenant, external_ref="m-1")
    assert member_pending_release(member=member, now=timezone.now() + timedelta(days=15)) == 50

    after = reconcile_tenant(tenant=tenant)

    assert (before.drift_count, after.drift_count) == (0, 0)
    # Two members with two accounts each (balance and lots), and the default limits' counters.
    counters = len(limit_counters_check(tenant=tenant, now=timezone.now()))
    assert counters > 0
    assert before.checked == after.checked == 2 * 2 * 2 + counters
    Account.objects.filter(member=member, kind=Account.Kind.PENDING).update(balance=3)
    assert {(d.kind, d.stored, d.computed) for d in reconcile_tenant(tenant=tenant).drifts.all()} == {
        ("ACCOUNT_BALANCE", 3, 0),
        ("LOTS", 3, 0),
    }
