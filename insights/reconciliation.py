"""Reconciliation: every stored running total recomputed from its source of truth, per tenant
and in batches, with what disagrees recorded as drift (a `ReconciliationDrift` row, the
`loyalty_reconciliation_drift` gauge, a banner on the back office's home page).

What is checked:

- each member account's balance column against the sum of its transfers (the ledger);
- each member's open lots against the balance they overlay (available and pending);
- each limit counter Redis holds against the points the ledger says were issued in its period;
- each budgeted campaign's counters (`CampaignStats`) against its incentives;
- each counted item's stock against its stock movements since stock counting began.

It never corrects anything: a drift is a bug or a hand edit to look into, and a silent fix
would hide both. It lives here, above every app whose totals it reads, and only reads.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery, Sum
from django.utils import timezone
from prometheus_client import Gauge

from campaigns.models import CampaignStats, Incentive
from catalog.models import Item, StockMovement
from insights.models import ReconciliationDrift, ReconciliationRun
from rewards.limits import limit_counters_check
from rewards.models import Account, EarnedLot, Transfer
from tenants.models import Tenant

logger = logging.getLogger(__name__)

BATCH = 500
DRIFT = Gauge(
    "loyalty_reconciliation_drift",
    "Stored totals that disagreed with their source of truth at the tenant's last reconciliation",
    ["tenant", "kind"],
)
CHECKED = Gauge(
    "loyalty_reconciliation_checked", "Stored totals compared at the tenant's last reconciliation", ["tenant"]
)
LAST_RUN = Gauge(
    "loyalty_reconciliation_last_run_timestamp_seconds", "When the tenant's last reconciliation finished", ["tenant"]
)

Kind = ReconciliationDrift.Kind


@dataclass(frozen=True)
class Found:
    kind: str
    object_type: str
    object_id: str
    object_repr: str
    stored: Decimal | int | None
    computed: Decimal | int


@contextmanager
def _snapshot():
    """One consistent view of the database for a batch: its stored totals and their sources are
    read at one instant, so a transfer committing between the two reads is not taken for drift
    (REPEATABLE READ on PostgreSQL; inside a caller's transaction, that transaction's view)."""
    if connection.in_atomic_block or connection.vendor != "postgresql":
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def _batches(queryset) -> Iterator[list]:
    """Rows in primary-key order, BATCH at a time (keyset paging: no offset scans), each batch
    inside its own snapshot while the caller checks it."""
    last = None
    while True:
        page = queryset.order_by("pk")
        if last is not None:
            page = page.filter(pk__gt=last)
        with _snapshot():
            rows = list(page[:BATCH])
            if not rows:
                return
            yield rows
        last = rows[-1].pk


def _balances(tenant: Tenant, counted: list[int]) -> Iterator[Found]:
    accounts = Account.objects.filter(tenant=tenant, member__isnull=False).select_related("member")
    for batch in _batches(accounts):
        ids = [a.pk for a in batch]
        credits = dict(
            Transfer.objects.filter(credit_account__in=ids).values_list("credit_account").annotate(s=Sum("amount"))
        )
        debits = dict(
            Transfer.objects.filter(debit_account__in=ids).values_list("debit_account").annotate(s=Sum("amount"))
        )
        lot_rows = (
            EarnedLot.objects.filter(member__in=[a.member_id for a in batch], remaining__gt=0)
            .values_list("member")
            .annotate(
                available=Sum("remaining", filter=Q(pending_until__isnull=True)),
                pending=Sum("remaining", filter=Q(pending_until__isnull=False)),
            )
        )
        lots = {member: (available or 0, pending or 0) for member, available, pending in lot_rows}
        for account in batch:
            counted[0] += 2
            label = f"{account.member} {account.kind}"
            derived = credits.get(account.pk, 0) - debits.get(account.pk, 0)
            if account.balance != derived:
                yield Found(Kind.ACCOUNT_BALANCE, "rewards.Account", str(account.pk), label, account.balance, derived)
            available, pending = lots.get(account.member_id, (0, 0))
            in_lots = pending if account.kind == Account.Kind.PENDING else available
            if account.balance != in_lots:
                yield Found(Kind.LOTS, "rewards.Account", str(account.pk), label, account.balance, in_lots)


def _limit_counters(tenant: Tenant, counted: list[int]) -> Iterator[Found]:
    for state in limit_counters_check(tenant=tenant, now=timezone.now()):
        counted[0] += 1
        if state.stored != state.computed:
            yield Found(Kind.LIMIT_COUNTER, "redis", state.key, state.key, state.stored, state.computed)


def _campaigns(tenant: Tenant, counted: list[int]) -> Iterator[Found]:
    # Only a campaign with a budget needs its counters (and the calculator keeps them for those).
    budgeted = Q(campaign__budget_rewards__isnull=False) | Q(campaign__budget_amount__isnull=False)
    stats = CampaignStats.objects.filter(budgeted, campaign__tenant=tenant).select_related("campaign")
    for batch in _batches(stats):
        ids = [s.pk for s in batch]
        # Net of reversals, as the counters are kept: a fully reversed incentive gives its
        # reward back, and one the points limits swallowed whole (a quest kept complete with
        # nothing paid) never counted.
        issued = {
            row["campaign"]: row
            for row in Incentive.objects.filter(campaign__in=ids)
            .values("campaign")
            .annotate(
                rewards=Count(
                    "pk", filter=Q(status=Incentive.Status.ISSUED) & ~Q(reward_amount=0, explanation__limited=True)
                ),
                amount=Sum(F("reward_amount") - F("reversed_amount")),
            )
        }
        for stat in batch:
            counted[0] += 2
            row = issued.get(stat.pk, {})
            rewards, amount = row.get("rewards") or 0, row.get("amount") or Decimal(0)
            name = stat.campaign.name
            if stat.rewards_issued != rewards:
                yield Found(
                    Kind.CAMPAIGN_REWARDS, "campaigns.CampaignStats", str(stat.pk), name, stat.rewards_issued, rewards
                )
            if stat.amount_issued != amount:
                yield Found(
                    Kind.CAMPAIGN_AMOUNT, "campaigns.CampaignStats", str(stat.pk), name, stat.amount_issued, amount
                )


def _stock(tenant: Tenant, counted: list[int]) -> Iterator[Found]:
    items = Item.objects.filter(tenant=tenant, stock_quantity__isnull=False)
    for batch in _batches(items):
        ids = [i.pk for i in batch]
        # Stock counting (re)starts with an INITIAL movement; only what follows it counts.
        opened = dict(
            StockMovement.objects.filter(item__in=ids, kind=StockMovement.Kind.INITIAL)
            .values_list("item")
            .annotate(at=Max("created_at"))
        )
        for item in batch:
            counted[0] += 1
            movements = StockMovement.objects.filter(item=item)
            if item.pk in opened:
                movements = movements.filter(created_at__gte=opened[item.pk])
            total = movements.aggregate(s=Sum("quantity"))["s"] or 0
            if item.stock_quantity != total:
                yield Found(Kind.ITEM_STOCK, "catalog.Item", str(item.pk), str(item), item.stock_quantity, total)


CHECKS: tuple[Callable[[Tenant, list[int]], Iterator[Found]], ...] = (_balances, _limit_counters, _campaigns, _stock)


def reconcile_tenant(*, tenant: Tenant, progress: Callable[[str], None] | None = None) -> ReconciliationRun:
    """Recompute every stored total of one tenant and record a run with its drift."""
    run = ReconciliationRun.objects.create(tenant=tenant, started_at=timezone.now())
    counted = [0]
    drifts: list[ReconciliationDrift] = []
    for check in CHECKS:
        for found in check(tenant, counted):
            drifts.append(
                ReconciliationDrift(
                    tenant=tenant,
                    run=run,
                    kind=found.kind,
                    object_type=found.object_type,
                    object_id=found.object_id[:255],
                    object_repr=found.object_repr[:255],
                    stored=found.stored,
                    computed=found.computed,
                )
            )
        if progress is not None:
            progress(f"{tenant.slug}: {check.__name__.strip('_')} checked, {len(drifts)} drift so far")
    ReconciliationDrift.objects.bulk_create(drifts, batch_size=BATCH)
    run.checked, run.drift_count, run.finished_at = counted[0], len(drifts), timezone.now()
    run.save(update_fields=["checked", "drift_count", "finished_at"])
    by_kind = dict.fromkeys(Kind.values, 0)
    for drift in drifts:
        by_kind[drift.kind] += 1
    for kind, count in by_kind.items():
        DRIFT.labels(tenant=tenant.slug, kind=kind).set(count)
    CHECKED.labels(tenant=tenant.slug).set(run.checked)
    LAST_RUN.labels(tenant=tenant.slug).set(run.finished_at.timestamp())
    if drifts:
        logger.error("reconciliation found drift", extra={"tenant": tenant.slug, "drift": len(drifts)})
    return run


def reconcile_all(*, tenants=None, progress: Callable[[str], None] | None = None) -> list[ReconciliationRun]:
    """One run per tenant (all of them unless `tenants` is given)."""
    tenants = Tenant.objects.order_by("pk") if tenants is None else tenants
    return [reconcile_tenant(tenant=tenant, progress=progress) for tenant in tenants]


def last_runs_with_drift(*, tenant: Tenant | None) -> list[ReconciliationRun]:
    """The latest run of the tenant (or of each tenant, for platform staff) if it found drift."""
    finished = ReconciliationRun.objects.filter(finished_at__isnull=False)
    latest = finished.filter(tenant=OuterRef("tenant")).order_by("-started_at", "-pk").values("pk")[:1]
    runs = finished.filter(pk=Subquery(latest), drift_count__gt=0).select_related("tenant")
    if tenant is not None:
        runs = runs.filter(tenant=tenant)
    return list(runs.order_by("tenant__name"))
