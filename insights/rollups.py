"""Spending rollups, kept incrementally from the event store and rebuildable from it.

What one processed event adds to the rollups is a pure function of the stored event
(`event_cells`): its amount and points per spend category, the points split by source
(base, multipliers, tier, campaigns) as the engine's explanation computed them, on the
purchase's day in the tenant's timezone. `rollups_update` applies the events that committed
since its cursor, in change-feed order (core.changefeed), in one transaction with the cursor,
so each event is counted exactly once; `rollups_rebuild` recomputes a tenant from scratch.
"""

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db import connection, transaction

from core.changefeed import Cursor, page_after
from insights.models import ALL_CATEGORIES, UNCATEGORIZED, RollupCursor, SpendingRollup
from rewards.earning import ACTION, TRANSACTION_CREATED, TRANSACTION_REFUNDED
from rewards.models import InboundEvent, Member
from tenants.models import Tenant

logger = logging.getLogger(__name__)

SOURCES = ("base", "multiplier", "tier", "campaign")
ROLLED_UP_TYPES = (TRANSACTION_CREATED, TRANSACTION_REFUNDED, ACTION)
BATCH = 1000
UPSERT_ROWS = 2000  # 20,000 parameters a statement, under PostgreSQL's 65,535
CENT = Decimal("0.01")


@dataclass
class Cell:
    amount: Decimal = Decimal(0)
    transactions: int = 0
    points: dict = field(default_factory=lambda: dict.fromkeys(SOURCES, 0))

    def add(self, other: "Cell") -> None:
        self.amount += other.amount
        self.transactions += other.transactions
        for source in SOURCES:
            self.points[source] += other.points[source]

    @property
    def total_points(self) -> int:
        return sum(self.points.values())

    def is_zero(self) -> bool:
        return not self.amount and not self.transactions and not any(self.points.values())


def allocate(total: int, weights: list) -> list[int]:
    """`total` split in proportion to non-negative `weights` (largest remainder, ties to the
    first), adding up to it exactly. All weights zero: everything goes to the first."""
    if not weights:
        return []
    weights = [max(Decimal(w), Decimal(0)) for w in weights]
    whole = sum(weights)
    if whole == 0:
        return [total] + [0] * (len(weights) - 1)
    sign, total = (-1 if total < 0 else 1), abs(total)
    exact = [total * w / whole for w in weights]
    parts = [int(e) for e in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return [sign * p for p in parts]


def _split_sources(explanation: dict) -> tuple[dict, dict]:
    """A purchase's points per source and per category, before limits cut anything:
    {source: int} and {category: {source: weight}} to spread each source over categories."""
    earn_rate = Decimal(explanation.get("earnRate") or 0)
    lines = explanation.get("lines") or []
    decimals = dict.fromkeys(("base", "multiplier", "tier"), Decimal(0))
    weights: dict = defaultdict(lambda: dict.fromkeys(SOURCES, Decimal(0)))
    for line in lines:
        category = line.get("category") or UNCATEGORIZED
        amount = Decimal(line["amount"])
        tier_factor = Decimal(line.get("tierFactor") or 1)
        base = amount * earn_rate
        parts = {
            "base": base,
            "tier": base * (tier_factor - 1),
            "multiplier": Decimal(line["points"]) - base * tier_factor,
        }
        for source, value in parts.items():
            decimals[source] += value
            weights[category][source] += value
        weights[category]["campaign"] += amount
    rounded = int(explanation.get("basePoints") or 0)
    tier = int(decimals["tier"].to_integral_value())
    multiplier = int(decimals["multiplier"].to_integral_value())
    totals = {
        "base": rounded - tier - multiplier,
        "multiplier": multiplier,
        "tier": tier + int(explanation.get("tierBonusPoints") or 0),
        "campaign": max(0, sum(int(i.get("points") or 0) for i in explanation.get("incentives") or [])),
    }
    for category in weights:  # the tier bonus and campaigns are spread by amount
        weights[category]["tier"] += weights[category]["campaign"]
    return totals, weights


def _awarded_sources(totals: dict, awarded: int) -> dict:
    """What was credited, by source: limits credit the purchase's own points first, then the
    campaigns' (rewards.earning._award)."""
    own = totals["base"] + totals["multiplier"] + totals["tier"]
    own_given = min(awarded, max(own, 0))
    given = {"campaign": awarded - own_given}
    if own_given == own and min(totals["base"], totals["multiplier"], totals["tier"]) >= 0:
        given.update(base=totals["base"], multiplier=totals["multiplier"], tier=totals["tier"])
        return given
    keys = ("base", "multiplier", "tier")
    given.update(zip(keys, allocate(own_given, [totals[k] for k in keys]), strict=True))
    return given


def purchase_cells(event: InboundEvent) -> dict[str, Cell]:
    """A purchase's cells per category (without the `_all` total)."""
    explanation = (event.result or {}).get("explanation") or {}
    totals, weights = _split_sources(explanation)
    given = _awarded_sources(totals, int(event.points))
    categories = list(weights) or [UNCATEGORIZED]
    cells = {category: Cell(transactions=1) for category in categories}
    for line in explanation.get("lines") or []:
        cells[line.get("category") or UNCATEGORIZED].amount += Decimal(line["amount"])
    if not explanation.get("lines"):
        cells[UNCATEGORIZED].amount = event.amount or Decimal(0)
    for source in SOURCES:
        shares = allocate(given[source], [weights[c][source] if c in weights else 0 for c in categories])
        for category, share in zip(categories, shares, strict=True):
            cells[category].points[source] = share
    return cells


def refund_cells(event: InboundEvent) -> dict[str, Cell]:
    """A refund takes back, from the purchase's own categories and sources, its share of the
    money and the points it reversed. Shares are cut from the running totals of refunds so
    far (as the engine's explanation records them), so a purchase refunded in full in any
    number of parts comes back to exactly zero."""
    original = event.original
    explanation = (event.result or {}).get("explanation") or {}
    cells = purchase_cells(original)
    categories = list(cells)
    keys = [(c, s) for c in categories for s in SOURCES]
    point_weights = [cells[c].points[s] for c, s in keys]
    cent_weights = [cells[c].amount / CENT for c in categories]

    def cut(before_points: int, before_cents: int, after_points: int, after_cents: int) -> dict[str, Cell]:
        out = {c: Cell() for c in categories}
        taken = zip(keys, allocate(after_points, point_weights), allocate(before_points, point_weights), strict=True)
        for (category, source), after, before in taken:
            out[category].points[source] = -(after - before)
        money = zip(categories, allocate(after_cents, cent_weights), allocate(before_cents, cent_weights), strict=True)
        for category, after, before in money:
            out[category].amount = -(after - before) * CENT
        return out

    before_points = int(explanation.get("reversedBefore") or 0)
    before_cents = int(Decimal(explanation.get("refundedBefore") or 0) / CENT)
    return cut(
        before_points,
        before_cents,
        before_points + int(explanation.get("reversed") or 0),
        before_cents + int((event.amount or Decimal(0)) / CENT),
    )


def action_cells(event: InboundEvent) -> dict[str, Cell]:
    cell = Cell()
    cell.points["campaign"] = int(event.points)
    return {UNCATEGORIZED: cell}


def event_day(event: InboundEvent, tenant: Tenant) -> date:
    """The day a purchase counts on (a refund counts on its purchase's day)."""
    at = event.original.occurred_at if event.type == TRANSACTION_REFUNDED else event.occurred_at
    return at.astimezone(ZoneInfo(tenant.timezone)).date()


def event_cells(event: InboundEvent) -> dict[str, Cell]:
    """What one applied event adds to its member's day: category cells and the `_all` total
    (a purchase counts once there, whatever the number of its categories)."""
    if event.status != InboundEvent.Status.APPLIED:
        return {}
    handler = {TRANSACTION_CREATED: purchase_cells, TRANSACTION_REFUNDED: refund_cells, ACTION: action_cells}.get(
        event.type
    )
    if handler is None or (event.type == TRANSACTION_REFUNDED and event.original is None):
        return {}
    cells = handler(event)
    total = Cell()
    for cell in cells.values():
        total.add(cell)
    total.transactions = 1 if event.type == TRANSACTION_CREATED else 0
    return {**cells, ALL_CATEGORIES: total}


def rolled_up_events():
    return InboundEvent.objects.filter(status=InboundEvent.Status.APPLIED, type__in=ROLLED_UP_TYPES).select_related(
        "tenant", "original"
    )


def events_cells(events: Iterable[InboundEvent]) -> dict[tuple, Cell]:
    """Cells of many events, summed per (tenant id, member ref, day, category)."""
    summed: dict[tuple, Cell] = defaultdict(Cell)
    for event in events:
        cells = event_cells(event)
        if not cells:
            continue
        day = event_day(event, event.tenant)
        for category, cell in cells.items():
            summed[(event.tenant_id, event.member_ref, day, category)].add(cell)
    return summed


COLUMNS = ("amount", "transactions", "points_base", "points_multiplier", "points_tier", "points_campaign")


def _upsert(summed: dict[tuple, Cell]) -> set[tuple]:
    """Adds the cells to their rows in one statement (insert, or add to what is there);
    returns the (tenant id, member id) pairs touched."""
    members = _member_ids({(tenant_id, ref) for tenant_id, ref, _, _ in summed})
    rows, touched = [], set()
    for (tenant_id, ref, day, category), cell in summed.items():
        member_id = members.get((tenant_id, ref))
        if member_id is None or cell.is_zero():
            continue
        touched.add((tenant_id, member_id))
        rows.append((tenant_id, member_id, day, category, cell.amount, cell.transactions, *cell.points.values()))
    if not rows:
        return touched
    table = SpendingRollup._meta.db_table
    names = ("tenant_id", "member_id", "day", "category", *COLUMNS)
    fields = [SpendingRollup._meta.get_field(name.removesuffix("_id")) for name in names]
    rows = [tuple(f.get_db_prep_save(value, connection) for f, value in zip(fields, row, strict=True)) for row in rows]
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in COLUMNS)
    rows.sort(key=lambda row: row[:4])  # one lock order for every writer
    with connection.cursor() as cursor:
        for start in range(0, len(rows), UPSERT_ROWS):
            chunk = rows[start : start + UPSERT_ROWS]
            values = ", ".join(["(" + ", ".join(["%s"] * len(names)) + ")"] * len(chunk))
            # The names are the model's own; every value is a parameter.
            sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES {values} "  # noqa: S608
            sql += f"ON CONFLICT (tenant_id, member_id, day, category) DO UPDATE SET {updates}"
            cursor.execute(sql, [value for row in chunk for value in row])
    return touched


def _member_ids(pairs: set[tuple]) -> dict[tuple, int]:
    by_tenant: dict[int, list[str]] = defaultdict(list)
    for tenant_id, ref in pairs:
        by_tenant[tenant_id].append(ref)
    found = {}
    for tenant_id, refs in by_tenant.items():
        for pk, ref in Member.objects.filter(tenant_id=tenant_id, external_ref__in=refs).values_list(
            "pk", "external_ref"
        ):
            found[(tenant_id, ref)] = pk
    return found


def _cursor_of(row: RollupCursor) -> Cursor | None:
    return None if row.tx_id < 0 else Cursor(row.tx_id, str(row.event_pk))


def rollups_update(*, batch: int = BATCH, max_batches: int | None = None) -> int:
    """Applies every event that committed since the cursor, a batch per transaction; how
    many were applied. A second caller while one runs returns 0 at once (the cursor row is
    locked, and skipped)."""
    applied = 0
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction.atomic():
            RollupCursor.objects.get_or_create(key="spending")
            row = RollupCursor.objects.select_for_update(skip_locked=True).filter(key="spending").first()
            if row is None:
                return applied
            events, cursor = page_after(rolled_up_events(), cursor=_cursor_of(row), limit=batch)
            if not events:
                return applied
            touched = _upsert(events_cells(events))
            row.tx_id, row.event_pk = cursor.tx_id, int(cursor.pk)
            row.events_applied += len(events)
            row.save(update_fields=["tx_id", "event_pk", "events_applied", "updated_at"])
            transaction.on_commit(lambda touched=touched: insights_cache_retire(touched))
        applied += len(events)
        batches += 1
    return applied


def rollups_rebuild(*, tenant: Tenant, on_progress: Callable[[int, int], None] | None = None) -> int:
    """Recomputes a tenant's rollups from its events, up to where the cursor has read (later
    events are the next update's): one transaction, holding the cursor meanwhile."""
    with transaction.atomic():
        RollupCursor.objects.get_or_create(key="spending")
        row = RollupCursor.objects.select_for_update().get(key="spending")
        SpendingRollup.objects.filter(tenant=tenant).delete()
        cursor = _cursor_of(row)
        if cursor is None:
            return 0
        events = rolled_up_events().filter(tenant=tenant)
        events = events.filter(tx_id__lt=cursor.tx_id) | events.filter(tx_id=cursor.tx_id, pk__lte=int(cursor.pk))
        total = events.count()
        done, after = 0, None
        while True:
            page, after = page_after(events, cursor=after, limit=BATCH)
            if not page:
                break
            _upsert(events_cells(page))
            done += len(page)
            if on_progress:
                on_progress(done, total)
        member_ids = SpendingRollup.objects.filter(tenant=tenant).values_list("member_id", flat=True).distinct()
        pairs = {(tenant.pk, member_id) for member_id in member_ids}
        transaction.on_commit(lambda: insights_cache_retire(pairs))
    return done


def rollups_compute(*, tenant: Tenant) -> dict[tuple, Cell]:
    """The tenant's rollups recomputed in memory from every applied event: what the table
    must hold once the cursor has passed them all. Keys: (member ref, day, category)."""
    summed = events_cells(rolled_up_events().filter(tenant=tenant).order_by("tx_id", "pk"))
    return {(ref, day, category): cell for (_, ref, day, category), cell in summed.items() if not cell.is_zero()}


# The insights cache (seed 000): answers are cached under the member's generation, which
# changes whenever their rollups do.
def _generation_key(tenant_id: int, member_id: int) -> str:
    return f"insights:gen:{tenant_id}:{member_id}"


def insights_cache_retire(pairs: Iterable[tuple]) -> None:
    keys = {_generation_key(tenant_id, member_id): uuid.uuid4().hex for tenant_id, member_id in pairs}
    if keys:
        try:
            cache.set_many(keys, timeout=None)
        except Exception:
            logger.warning("insights cache generation not retired", exc_info=True)


def insights_cache_generation(tenant_id: int, member_id: int) -> str:
    key = _generation_key(tenant_id, member_id)
    generation = cache.get(key)
    if generation is None:
        generation = uuid.uuid4().hex
        cache.add(key, generation, timeout=None)
        generation = cache.get(key) or generation
    return generation
