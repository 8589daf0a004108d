"""Backtests: a proposed change to earning, replayed over the tenant's stored purchases.

Each applied `transaction.created` event in the range is computed twice with the pure
calculation: with today's configuration (the baseline) and with the change applied (the
proposal). Both use the member's current tier and leave out incentives, limits and caps
already used, so the difference is the change's alone. Nothing is written.
"""

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import islice

from core.exceptions import DomainError
from rewards.calculation import MultiplierRule, Snapshot, calculate, event_lines
from rewards.categories import category_config_get
from rewards.contributions import TierContext, tiers_for
from rewards.earning import TRANSACTION_CREATED
from rewards.models import InboundEvent, Member
from tenants.models import Tenant

MAX_RANGE = timedelta(days=366)
MAX_TOP = 100
CHUNK = 2000
CENT = Decimal("0.01")

NOTES = (
    "The baseline is recomputed with the current configuration and each member's current tier, "
    "not taken from what was recorded, so baseline and proposed differ only by the change.",
    "Campaign incentives, points limits and multiplier cap usage are not re-simulated; "
    "a multiplier cap still bounds the extra points of a single event.",
    "Refunds are not netted out.",
    "recordedPoints is what these events actually awarded, incentives and limits included.",
)


class SimulationInvalid(DomainError):
    default_code = "invalid_simulation"
    default_message = "The simulation request is not valid."


@dataclass(frozen=True)
class ProposedMultiplier:
    category: str
    factor: Decimal
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tier: str = ""


@dataclass(frozen=True)
class Changes:
    """What to try: anything left as None keeps the tenant's current setting."""

    earn_rate: Decimal | None = None
    rounding: str | None = None
    multipliers: tuple[ProposedMultiplier, ...] = ()
    replace: bool = False  # the proposed multipliers replace the current ones instead of joining them


@dataclass
class _Tally:
    """Running totals; per-member sums need only the current member because events arrive
    grouped by member."""

    top: int
    events: int = 0
    members: int = 0
    members_affected: int = 0
    baseline: int = 0
    proposed: int = 0
    recorded: int = 0
    member_ref: str | None = None
    member_difference: int = 0
    largest: list = field(default_factory=list)  # min-heap of (|difference|, -pk, change)

    def add(self, event: InboundEvent, baseline: int, proposed: int) -> None:
        if event.member_ref != self.member_ref:
            self._close_member()
            self.member_ref = event.member_ref
            self.members += 1
        self.events += 1
        self.baseline += baseline
        self.proposed += proposed
        self.recorded += event.points
        difference = proposed - baseline
        self.member_difference += difference
        if difference and self.top:
            # Equal differences rank by arrival (pk), so the answer is the same on every run.
            entry = (abs(difference), -event.pk, event, baseline, proposed)
            if len(self.largest) < self.top:
                heapq.heappush(self.largest, entry)
            elif entry[:2] > self.largest[0][:2]:
                heapq.heapreplace(self.largest, entry)

    def _close_member(self) -> None:
        if self.member_difference:
            self.members_affected += 1
        self.member_difference = 0

    def report(self) -> dict:
        self._close_member()
        difference = self.proposed - self.baseline
        percent = None
        if self.baseline:
            percent = (Decimal(difference) * 100 / Decimal(self.baseline)).quantize(CENT, rounding=ROUND_HALF_UP)
        largest = sorted(self.largest, key=lambda entry: entry[:2], reverse=True)
        return {
            "events": self.events,
            "members": self.members,
            "baseline": {"points": self.baseline},
            "proposed": {"points": self.proposed},
            "difference": {"points": difference, "percent": percent},
            "members_affected": self.members_affected,
            "recorded_points": self.recorded,
            "largest_changes": [
                {
                    "event_id": event.event_id,
                    "member_ref": event.member_ref,
                    "occurred_at": event.occurred_at,
                    "baseline": baseline,
                    "proposed": proposed,
                    "difference": proposed - baseline,
                }
                for _, _, event, baseline, proposed in largest
            ],
            "notes": list(NOTES),
        }


def simulation_run(*, tenant: Tenant, start: datetime, end: datetime, changes: Changes, top: int = 10) -> dict:
    """Points the tenant's applied purchases in [start, end) would earn with `changes`,
    against what they earn with today's configuration. Reads only."""
    if start >= end:
        raise SimulationInvalid("`to` must be after `from`.", field="to", code="range_empty")
    if end - start > MAX_RANGE:
        raise SimulationInvalid(f"The range is at most {MAX_RANGE.days} days.", field="to", code="range_too_long")
    if not 0 <= top <= MAX_TOP:
        raise SimulationInvalid(f"Use 0 to {MAX_TOP}.", field="top", code="top_out_of_range")
    config = category_config_get(tenant=tenant)
    for index, proposal in enumerate(changes.multipliers):
        if proposal.category not in config.categories:
            raise SimulationInvalid(
                "No spend category has this code.",
                field=f"changes.multipliers.{index}.category",
                code="unknown_category",
            )
    current = Snapshot(
        earn_rate=tenant.earn_rate,
        rounding=tenant.rounding,
        categories=config.categories,
        mcc=config.mcc,
        multipliers=config.multipliers,
    )
    proposed = replace(
        current,
        earn_rate=current.earn_rate if changes.earn_rate is None else changes.earn_rate,
        rounding=changes.rounding or current.rounding,
        multipliers=(() if changes.replace else current.multipliers) + _rules(changes.multipliers),
    )
    snapshots: dict[TierContext, tuple[Snapshot, Snapshot]] = {}
    tally = _Tally(top=top)
    for event, tier in _events_with_tiers(tenant=tenant, start=start, end=end):
        if tier not in snapshots:
            snapshots[tier] = tuple(
                replace(snapshot, tier=tier.code, tier_multiplier=tier.multiplier) for snapshot in (current, proposed)
            )
        baseline_snapshot, proposed_snapshot = snapshots[tier]
        payload = event.payload
        lines = event_lines(
            amount=Decimal(str(payload["amount"])),
            category=payload.get("category"),
            mcc=payload.get("mcc"),
            line_items=payload.get("line_items"),
        )
        tally.add(
            event,
            calculate(lines=lines, occurred_at=event.occurred_at, snapshot=baseline_snapshot).points,
            calculate(lines=lines, occurred_at=event.occurred_at, snapshot=proposed_snapshot).points,
        )
    return tally.report()


def _rules(proposals: Iterable[ProposedMultiplier]) -> tuple[MultiplierRule, ...]:
    # Negative ids cannot collide with stored multipliers' ids.
    return tuple(
        MultiplierRule(
            id=-index,
            category=proposal.category,
            factor=proposal.factor,
            valid_from=proposal.valid_from,
            valid_to=proposal.valid_to,
            tier=proposal.tier,
        )
        for index, proposal in enumerate(proposals, start=1)
    )


def _events_with_tiers(*, tenant: Tenant, start: datetime, end: datetime) -> Iterator[tuple[InboundEvent, TierContext]]:
    """The events grouped by member, each with its member's current tier; members are loaded
    one query per chunk, and only the current chunk's tiers are kept."""
    events = (
        InboundEvent.objects.filter(
            tenant=tenant,
            type=TRANSACTION_CREATED,
            status=InboundEvent.Status.APPLIED,
            occurred_at__gte=start,
            occurred_at__lt=end,
        )
        # Matches the (tenant, member_ref, -occurred_at) index, so grouping by member is an index scan.
        .order_by("member_ref", "-occurred_at")
        .only("pk", "event_id", "member_ref", "occurred_at", "payload", "points")
        .iterator(chunk_size=CHUNK)
    )
    while chunk := list(islice(events, CHUNK)):
        refs = {event.member_ref for event in chunk}
        members = list(Member.objects.filter(tenant=tenant, external_ref__in=refs))
        by_pk = tiers_for(tenant, members)
        tiers = {member.external_ref: by_pk[member.pk] for member in members}
        for event in chunk:
            yield event, tiers.get(event.member_ref, TierContext())
