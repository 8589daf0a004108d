"""Inbound events in bulk: replayed from JSON Lines, or generated for a tenant's members.

`manage.py replay_events` and `manage.py simulate` share this module. A line is the body
`POST /api/v1/events` takes (camelCase JSON), parsed and validated as the API does; valid
events go to the engine in batches (`event_batch_ingest`), and every line ends up counted
as applied, duplicate (its eventId was already applied, or already refused), rejected (the
engine refused it) or invalid (not JSON, or not a valid event). A bad line is reported with
its line number and never stops the replay.
"""

import io
import itertools
import json
import logging
import math
import multiprocessing
import queue
import random
import time
import traceback
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.core.management.base import CommandError
from django.db import connection, connections
from rest_framework.exceptions import ParseError, ValidationError

from core.api.casing import camel
from core.api.parsers import CamelCaseJSONParser
from rewards import contributions
from rewards.api.events import event_validate
from rewards.batch import events_apply
from rewards.categories import category_config_get
from rewards.earning import ACTION, TRANSACTION_CREATED, TRANSACTION_REFUNDED
from rewards.management.commands.seed_demo import DEMO_SLUG
from rewards.models import InboundEvent, Member
from tenants.models import Tenant

logger = logging.getLogger(__name__)

APPLIED, DUPLICATE, REJECTED, INVALID = "applied", "duplicate", "rejected", "invalid"
DEFAULT_BATCH_SIZE = 500
MAX_PROBLEMS_KEPT = 1000  # in the summary; the display is told of every one


@dataclass(frozen=True)
class EventResult:
    status: str  # APPLIED, DUPLICATE or REJECTED
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineProblem:
    """A line that was not applied and why: invalid, or rejected by the engine."""

    line: int
    status: str
    errors: tuple[str, ...]


@dataclass
class ReplaySummary:
    applied: int = 0
    duplicate: int = 0
    rejected: int = 0
    invalid: int = 0
    seconds: float = 0.0
    problems: list[LineProblem] = field(default_factory=list)  # the first MAX_PROBLEMS_KEPT

    @property
    def done(self) -> int:
        return self.applied + self.duplicate + self.rejected + self.invalid

    @property
    def rate(self) -> float:
        """Events per second, every line counted (a duplicate or a refusal is work too)."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def count(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)


# Parsing ------------------------------------------------------------------------------

_PARSER = CamelCaseJSONParser()


def event_parse(raw: bytes | str) -> dict:
    """One line as the API would take it: strict JSON, camelCase keys, a valid event (snake_case).
    Raises ParseError or ValidationError."""
    if isinstance(raw, str):
        raw = raw.encode()
    return event_validate(_PARSER.parse(io.BytesIO(raw)))


def _messages(detail, path: str = "") -> list[str]:
    if isinstance(detail, dict):
        return [m for key, value in detail.items() for m in _messages(value, f"{path}.{key}" if path else str(key))]
    if isinstance(detail, list):
        return [m for value in detail for m in _messages(value, path)]
    return [f"{camel(path)}: {detail}" if path and path != "non_field_errors" else str(detail)]


def replay_tenant_get(*, slug: str) -> Tenant:
    """The tenant events are replayed into, or an error a command prints as it is."""
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        hint = " (create it with `manage.py seed_demo`)" if slug == DEMO_SLUG else ""
        raise CommandError(f"No tenant with slug '{slug}'{hint}.")
    if not tenant.is_active:
        # The API refuses a suspended tenant's events; a replay does not go round that.
        raise CommandError(f"Tenant '{slug}' is suspended.")
    return tenant


# Ingestion ----------------------------------------------------------------------------


def event_batch_ingest(*, tenant: Tenant, events: list[dict]) -> list[EventResult]:
    """Apply validated events in order, one result per event, through the set-based batch
    path (`rewards.batch`): once per (tenant, eventId), as `POST /api/v1/events:batch` does."""
    results = []
    for outcome in events_apply(tenant=tenant, events=events):
        if outcome.replayed:
            results.append(EventResult(DUPLICATE))
        elif outcome.status_code < 300:
            results.append(EventResult(APPLIED))
        else:
            errors = outcome.body.get("errors", [])
            results.append(EventResult(REJECTED, tuple(_error_text(e["code"], e["detail"], e["attr"]) for e in errors)))
    return results


def _error_text(code: str, detail: str, attr: str | None) -> str:
    return f"{camel(attr) + ': ' if attr else ''}{detail} ({code})"


def events_replay(
    *,
    tenant: Tenant,
    lines: Iterable[bytes | str],
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 1,
    on_progress: Callable[[ReplaySummary], None] | None = None,
    on_problem: Callable[[LineProblem], None] | None = None,
) -> ReplaySummary:
    """Replay JSON Lines into the tenant's engine, `batch_size` lines at a time. Blank lines
    are skipped; line numbers count every line, blank ones included. With `workers` above 1
    (PostgreSQL only) the lines are shared out by member among that many processes
    (`_replay_parallel`)."""
    refused = replay_workers_refused(workers)
    if refused:
        raise ValueError(refused)
    summary = ReplaySummary()
    started = time.perf_counter()

    def record(outcomes: list[tuple[str, LineProblem | None]]) -> None:
        for status, found in outcomes:
            summary.count(status)
            if found is None:
                continue
            if len(summary.problems) < MAX_PROBLEMS_KEPT:
                summary.problems.append(found)
            if on_problem is not None:
                on_problem(found)
        summary.seconds = time.perf_counter() - started
        if on_progress is not None:
            on_progress(summary)

    if workers > 1:
        _replay_parallel(tenant=tenant, lines=lines, batch_size=batch_size, workers=workers, record=record)
        summary.problems.sort(key=lambda found: found.line)
    else:
        chunk: list[tuple[int, bytes | str]] = []
        for number, raw in _numbered(lines):
            chunk.append((number, raw))
            if len(chunk) == batch_size:
                record(_chunk_apply(tenant, chunk))
                chunk = []
        if chunk:
            record(_chunk_apply(tenant, chunk))
    summary.seconds = time.perf_counter() - started
    return summary


def _numbered(lines: Iterable[bytes | str]) -> Iterator[tuple[int, bytes | str]]:
    """The non-blank lines with their numbers (blank ones counted)."""
    return ((number, raw) for number, raw in enumerate(lines, start=1) if raw.strip())


def _chunk_apply(tenant: Tenant, chunk: list[tuple[int, bytes | str]]) -> list[tuple[str, LineProblem | None]]:
    """Parse and apply numbered lines as one batch: each line's status, in line order, with
    what was wrong for an invalid or a rejected one."""
    parsed: list[tuple[int, dict | LineProblem]] = []
    for number, raw in chunk:
        try:
            parsed.append((number, event_parse(raw)))
        except (ParseError, ValidationError) as exc:
            parsed.append((number, LineProblem(number, INVALID, tuple(_messages(exc.detail)))))
    results = iter(event_batch_ingest(tenant=tenant, events=[e for _, e in parsed if isinstance(e, dict)]))
    outcomes: list[tuple[str, LineProblem | None]] = []
    for number, entry in parsed:
        if isinstance(entry, LineProblem):
            outcomes.append((INVALID, entry))
            continue
        result = next(results)
        if result.status == REJECTED:
            outcomes.append((REJECTED, LineProblem(number, REJECTED, result.errors)))
        else:
            outcomes.append((result.status, None))
    return outcomes


# Parallel replay ----------------------------------------------------------------------
#
# A worker process per share of the members: one member's events all go to one worker, in
# their order in the file, so what depends on a member's own history (a refund after its
# purchase, a tier earned before the next purchase counts, caps, quests) comes out as in a
# sequential replay. Events of different members run side by side, as they do when the API
# takes them from many clients: which of them a shared campaign budget or a tenant-wide limit
# cuts off may differ from a sequential replay, never how much is given in all.


class ReplayWorkerFailed(Exception):
    """A replay worker process stopped with an error (its traceback is the message)."""


def _share_of(raw: bytes | str, workers: int, purchases: dict[int, int]) -> int:
    """The worker a line goes to: by its memberRef (trimmed, as the API reads it). A refund
    that names no member follows the purchase it refunds, when that was in this replay;
    anything else (not JSON, no member) goes to the first worker, which reports it."""
    try:
        event = json.loads(raw)
    except ValueError:
        return 0
    if not isinstance(event, dict):
        return 0
    ref = event.get("memberRef")
    if isinstance(ref, str) and ref.strip():
        share = zlib.crc32(ref.strip().encode()) % workers
    else:
        original = event.get("originalEventId")
        # A 64-bit hash of the eventId, not the id: a day's ten million purchases in a few
        # hundred MB. Two ids sharing a hash would only send a refund to another worker.
        share = purchases.get(hash(original.strip()), 0) if isinstance(original, str) else 0
    event_id = event.get("eventId")
    if event.get("type") == TRANSACTION_CREATED and isinstance(event_id, str):
        purchases[hash(event_id.strip())] = share
    return share


def _replay_parallel(
    *,
    tenant: Tenant,
    lines: Iterable[bytes | str],
    batch_size: int,
    workers: int,
    record: Callable[[list[tuple[str, LineProblem | None]]], None],
) -> None:
    """Share the lines out among `workers` forked processes, each with its own database
    connection, and `record` each batch's outcomes as the workers report them."""
    context = multiprocessing.get_context("fork")
    connections.close_all()  # a forked process must open its own
    inboxes = [context.Queue(maxsize=2) for _ in range(workers)]
    outcomes = context.Queue()
    processes = [
        context.Process(target=_replay_worker, args=(tenant, inbox, outcomes), daemon=True) for inbox in inboxes
    ]
    for process in processes:
        process.start()
    running = workers

    def collect(wait: float) -> None:
        nonlocal running
        try:
            while True:
                kind, payload = outcomes.get(timeout=wait)
                wait = 0
                if kind == "batch":
                    record(payload)
                elif kind == "failed":
                    raise ReplayWorkerFailed(payload)
                else:
                    running -= 1
        except queue.Empty:
            pass
        for process in processes:
            if process.exitcode not in (None, 0):
                raise ReplayWorkerFailed(f"A replay worker stopped (exit code {process.exitcode}).")

    def send(share: int, item) -> None:
        while True:
            try:
                inboxes[share].put(item, timeout=0.2)
                return
            except queue.Full:
                collect(0)

    try:
        purchases: dict[int, int] = {}
        chunks: list[list[tuple[int, bytes | str]]] = [[] for _ in range(workers)]
        for number, raw in _numbered(lines):
            share = _share_of(raw, workers, purchases)
            chunks[share].append((number, raw))
            if len(chunks[share]) == batch_size:
                send(share, chunks[share])
                chunks[share] = []
                collect(0)
        for share, chunk in enumerate(chunks):
            if chunk:
                send(share, chunk)
            send(share, None)
        while running:
            collect(0.5)
    finally:
        for process in processes:
            if process.is_alive() and running:
                process.terminate()
            process.join()
        for inbox in inboxes:
            # What a stopped worker did not take is dropped, not waited for at exit.
            inbox.cancel_join_thread()


def _replay_worker(tenant: Tenant, inbox, outcomes) -> None:
    """One worker's share: batches until told to stop (None), each batch's outcomes reported."""
    try:
        while (chunk := inbox.get()) is not None:
            outcomes.put(("batch", _chunk_apply(tenant, chunk)))
    except Exception:
        logger.exception("replay worker failed")
        outcomes.put(("failed", traceback.format_exc()))
    finally:
        connections.close_all()
        outcomes.put(("done", None))
        outcomes.close()
        outcomes.join_thread()


def replay_workers_add_argument(parser) -> None:
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="Processes applying events side by side, each member's events on one of them in order "
        "(default 1; more needs PostgreSQL).",
    )


def replay_workers_refused(workers: int) -> str | None:
    """Why a replay cannot run with this many workers, or None."""
    if workers < 1:
        return "--workers must be at least 1."
    if workers > 1 and connection.vendor != "postgresql":
        return "--workers above 1 needs PostgreSQL (SQLite takes one writer at a time)."
    return None


def replay_workers_check(workers: int) -> None:
    """What a command says of a --workers it cannot use, before it reads anything."""
    refused = replay_workers_refused(workers)
    if refused:
        raise CommandError(refused)


def lines_count(path: str) -> int:
    """The events in a JSON Lines file (its non-blank lines), for the progress display."""
    with open(path, "rb") as file:
        return sum(1 for line in file if line.strip())


class ReplayDisplay:
    """What the commands print: a progress line redrawn after each batch (done/total and
    events/s), each bad line on stderr, and the summary."""

    def __init__(self, *, stdout, stderr, total: int | None):
        self.stdout, self.stderr, self.total = stdout, stderr, total
        self._line_open = False

    def progress(self, summary: ReplaySummary) -> None:
        total = f"/{self.total}" if self.total is not None else ""
        self.stdout.write(f"\r  events {summary.done}{total}  {summary.rate:,.0f} events/s", ending="")
        self.stdout.flush()
        self._line_open = True

    def problem(self, problem: LineProblem) -> None:
        self._close_line()
        self.stderr.write(f"line {problem.line}: {problem.status}: {'; '.join(problem.errors)}")

    def finish(self, summary: ReplaySummary) -> None:
        self._close_line()
        self.stdout.write(
            f"{summary.done} events in {summary.seconds:.1f} s: {summary.applied} applied, "
            f"{summary.duplicate} duplicate, {summary.rejected} rejected, {summary.invalid} invalid "
            f"({summary.rate:,.1f} events/s)"
        )

    def _close_line(self) -> None:
        if self._line_open:
            self.stdout.write("")
            self._line_open = False


# Simulation ---------------------------------------------------------------------------

# A typical basket, in the tenant's currency: the median of a log-normal whose spread puts
# most purchases between a third and three times it, with a long tail of big ones.
TYPICAL_BASKET = 25.0
BASKET_SPREAD = 0.8  # sigma of log(amount)
MIN_AMOUNT, MAX_AMOUNT = Decimal("0.50"), Decimal("5000.00")
DAYS = 30
ACTION_SHARE = 0.10  # when the tenant has known action codes
REFUND_SHARE = 0.03
PARTIAL_REFUND_SHARE = 0.4
MCC_SHARE = 0.8  # purchases that carry an MCC (the others earn the base rate)
CHANNELS = (("pos", 70), ("online", 22), ("app", 8))
# Local hour of day -> relative traffic: a morning rush, lunch and the evening.
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 5, 9, 11, 9, 8, 10, 14, 12, 9, 8, 9, 11, 12, 10, 7, 5, 3, 2)
CENT = Decimal("0.01")


def simulation_members(*, tenant: Tenant) -> list[str]:
    """The tenant's active members' refs, in a stable order (the seed picks among them)."""
    return list(
        Member.objects.filter(tenant=tenant, status=Member.Status.ACTIVE)
        .order_by("external_ref")
        .values_list("external_ref", flat=True)
    )


def simulation_action_codes(*, tenant: Tenant, within: timedelta = timedelta(days=90)) -> list[str]:
    """The tenant's known action codes (its catalog, which campaigns keeps and registers with
    the engine), and any others it has sent lately."""
    since = datetime.now(UTC) - within
    codes = (
        InboundEvent.objects.filter(tenant=tenant, type=ACTION, occurred_at__gte=since)
        .values_list("payload__action_code", flat=True)
        .distinct()
    )
    sent = {code for code in codes[:200] if isinstance(code, str)}
    return sorted(sent | set(contributions.action_codes(tenant)))


def events_simulate(
    *,
    tenant: Tenant,
    count: int,
    members: list[str],
    seed: int,
    until: date,
    action_codes: Sequence[str] = (),
) -> list[dict]:
    """`count` realistic inbound events (camelCase, as the API takes them) for these members,
    in the order they occurred over the `DAYS` days before `until` (in the tenant's time
    zone): purchases, a share of actions when there are action codes, and refunds of some
    earlier purchases. The same arguments give the same events; the eventIds name the seed
    (`sim-<seed>-t<n>`), so the same seed replayed twice applies once."""
    if not members:
        raise ValueError("No members to simulate events for.")
    rng = random.Random(seed)  # noqa: S311 - simulated data, repeatable on purpose
    zone = ZoneInfo(tenant.timezone)
    end = datetime.combine(until, datetime.min.time(), tzinfo=zone)
    config = category_config_get(tenant=tenant)
    mcc_codes = sorted(config.mcc)
    categories = sorted(config.categories)
    # A few members shop a lot and most a little: activity weights from a Pareto tail.
    shoppers = list(itertools.accumulate(rng.paretovariate(1.2) for _ in members))
    channels, channel_weights = zip(*CHANNELS, strict=True)

    refunds = min(round(count * REFUND_SHARE), count // 2)
    actions = round(count * ACTION_SHARE) if action_codes else 0
    purchases = count - refunds - actions

    def moment() -> datetime:
        day = end - timedelta(days=rng.randrange(DAYS) + 1)
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        at = day + timedelta(hours=hour, minutes=rng.randrange(60), seconds=rng.randrange(60))
        # Wall-clock arithmetic in the zone, then an instant: a DST gap only shifts it an hour.
        return at.astimezone(UTC)

    events: list[tuple[datetime, int, dict]] = []
    bought = []
    for n in range(purchases):
        at = moment()
        amount = Decimal(str(rng.lognormvariate(math.log(TYPICAL_BASKET), BASKET_SPREAD))).quantize(CENT)
        amount = min(max(amount, MIN_AMOUNT), MAX_AMOUNT)
        event = {
            "eventId": f"sim-{seed}-t{n:07d}",
            "type": TRANSACTION_CREATED,
            "memberRef": rng.choices(members, cum_weights=shoppers)[0],
            "amount": str(amount),
            "currency": tenant.currency,
            "channel": rng.choices(channels, channel_weights)[0],
            "occurredAt": _iso(at),
        }
        if mcc_codes and rng.random() < MCC_SHARE:
            event["mcc"] = rng.choice(mcc_codes)
        elif categories and rng.random() < MCC_SHARE:
            event["category"] = rng.choice(categories)
        events.append((at, len(events), event))
        bought.append((at, event))
    for n in range(actions):
        at = moment()
        event = {
            "eventId": f"sim-{seed}-a{n:07d}",
            "type": ACTION,
            "memberRef": rng.choices(members, cum_weights=shoppers)[0],
            "actionCode": rng.choice(action_codes),
            "occurredAt": _iso(at),
        }
        events.append((at, len(events), event))
    for n, (bought_at, purchase) in enumerate(rng.sample(bought, refunds)):
        # Returned within a week, always after the purchase (the engine needs it applied first).
        at = bought_at + timedelta(seconds=rng.randrange(3600, 7 * 86400))
        at = max(min(at, end.astimezone(UTC) - timedelta(seconds=1)), bought_at + timedelta(seconds=1))
        event = {
            "eventId": f"sim-{seed}-r{n:07d}",
            "type": TRANSACTION_REFUNDED,
            "originalEventId": purchase["eventId"],
            "memberRef": purchase["memberRef"],
            "occurredAt": _iso(at),
        }
        original = Decimal(purchase["amount"])
        if rng.random() < PARTIAL_REFUND_SHARE and original > CENT:
            part = (original * Decimal(str(rng.uniform(0.2, 0.8)))).quantize(CENT)
            event["amount"] = str(min(max(part, CENT), original - CENT))
        events.append((at, len(events), event))
    events.sort(key=lambda item: item[:2])
    return [event for _, _, event in events]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def events_jsonl(events: Iterable[dict]) -> Iterator[str]:
    """One JSON object a line, as `replay_events` reads them."""
    for event in events:
        yield json.dumps(event, separators=(",", ":")) + "\n"
