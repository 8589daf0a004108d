"""The points calculation: a pure function of an event and a configuration snapshot.

Nothing here touches the database, the cache or the clock, so the same code serves live
events, dry runs, replays and backtests (simulations).

    points = round( Σ line amount * earn rate * category multiplier * tier multiplier )
             + campaign incentives

Each line is the event's amount, or its line items (the rest of the amount at the event's
category). A multiplier with a cap per period adds at most the cap's remaining extra points.
"""

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

ROUNDING = {"FLOOR": ROUND_FLOOR, "HALF_UP": ROUND_HALF_UP, "HALF_EVEN": ROUND_HALF_EVEN, "CEILING": ROUND_CEILING}
ONE = Decimal("1")


@dataclass(frozen=True)
class MultiplierRule:
    id: int
    category: str
    factor: Decimal
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tier: str = ""
    cap_points: int | None = None
    cap_period: str = ""
    version: int = 1

    def applies(self, *, at: datetime, tier: str) -> bool:
        if self.tier and self.tier != tier:
            return False
        if self.valid_from is not None and at < self.valid_from:
            return False
        return self.valid_to is None or at < self.valid_to


@dataclass(frozen=True)
class Snapshot:
    """Everything the calculation may look at, captured before it runs."""

    earn_rate: Decimal
    rounding: str
    categories: dict[str, str | None]  # code -> parent code
    mcc: dict[str, str]  # MCC -> category code
    multipliers: tuple[MultiplierRule, ...] = ()
    tier: str = ""
    tier_multiplier: Decimal = ONE
    cap_used: dict[int, int] = field(default_factory=dict)  # multiplier id -> extra points used this period
    tier_bonus: int = 0  # the tier's bonus points on every purchase
    incentives: tuple = ()  # contributions.Incentive


@dataclass(frozen=True)
class EventLine:
    amount: Decimal
    category: str | None = None
    mcc: str | None = None
    sku: str | None = None


@dataclass(frozen=True)
class Calculation:
    points: int
    lines: list[dict]
    multiplier_extra: dict[int, int]  # multiplier id -> extra points it gave (for caps)
    incentive_points: int
    explanation: dict


def resolve_category(snapshot: Snapshot, category: str | None, mcc: str | None) -> str | None:
    if category and category in snapshot.categories:
        return category
    if mcc and mcc in snapshot.mcc:
        return snapshot.mcc[mcc]
    return None


def best_multiplier(snapshot: Snapshot, category: str | None, at: datetime) -> MultiplierRule | None:
    """The multiplier for a category at a moment: a tier-specific one beats a general one,
    then the highest factor; a category without one inherits its parent's."""
    seen: set[str] = set()
    while category is not None and category not in seen:
        seen.add(category)
        candidates = [
            m for m in snapshot.multipliers if m.category == category and m.applies(at=at, tier=snapshot.tier)
        ]
        if candidates:
            return max(candidates, key=lambda m: (bool(m.tier), m.factor, -m.id))
        category = snapshot.categories.get(category)
    return None


def _round(value: Decimal, rounding: str) -> int:
    return int(value.to_integral_value(rounding=ROUNDING[rounding]))


def calculate(*, lines: list[EventLine], occurred_at: datetime, snapshot: Snapshot) -> Calculation:
    earn_rate, tier_factor = snapshot.earn_rate, snapshot.tier_multiplier
    cap_left = {}
    extra_by_multiplier: dict[int, Decimal] = {}
    explained, total, caps_hit = [], Decimal(0), []
    for line in lines:
        category = resolve_category(snapshot, line.category, line.mcc)
        multiplier = best_multiplier(snapshot, category, occurred_at)
        factor = multiplier.factor if multiplier else ONE
        base = line.amount * earn_rate * tier_factor
        points = base * factor
        if multiplier is not None and multiplier.cap_points is not None and factor > ONE:
            left = cap_left.setdefault(
                multiplier.id, Decimal(max(0, multiplier.cap_points - snapshot.cap_used.get(multiplier.id, 0)))
            )
            extra = points - base
            if extra > left:
                caps_hit.append({"type": "multiplier", "multiplierId": multiplier.id, "cap": multiplier.cap_points})
                extra = left
                points = base + extra
            cap_left[multiplier.id] = left - extra
            extra_by_multiplier[multiplier.id] = extra_by_multiplier.get(multiplier.id, Decimal(0)) + extra
        total += points
        explained.append(
            {
                "amount": str(line.amount),
                **({"sku": line.sku} if line.sku else {}),
                "category": category,
                "categoryFactor": str(factor),
                "multiplierId": multiplier.id if multiplier else None,
                "multiplierVersion": multiplier.version if multiplier else None,
                "tierFactor": str(tier_factor),
                "points": str(points),
            }
        )
    rounded = _round(total, snapshot.rounding)
    incentive_points = sum(i.points for i in snapshot.incentives)
    points = max(0, rounded + snapshot.tier_bonus + incentive_points)
    explanation = {
        "earnRate": str(earn_rate),
        "rounding": snapshot.rounding,
        "tier": snapshot.tier,
        "tierFactor": str(tier_factor),
        "lines": explained,
        "basePoints": rounded,
        "tierBonusPoints": snapshot.tier_bonus,
        "incentives": [{"source": i.source, "points": i.points, **i.explanation} for i in snapshot.incentives],
        "capsHit": caps_hit,
        "computedPoints": points,
    }
    extra = {mid: _round(value, "FLOOR") for mid, value in extra_by_multiplier.items()}
    return Calculation(points, explained, extra, incentive_points, explanation)


def event_lines(
    *, amount: Decimal, category: str | None, mcc: str | None, line_items: list[dict] | None
) -> list[EventLine]:
    """The event as lines: its line items, and the rest of the amount at the event's category."""
    lines = [
        EventLine(
            amount=Decimal(item["amount"]),
            category=item.get("category") or category,
            mcc=item.get("mcc") or (None if item.get("category") else mcc),
            sku=item.get("sku"),
        )
        for item in line_items or []
    ]
    rest = amount - sum((line.amount for line in lines), Decimal(0))
    if rest > 0 or not lines:
        lines.append(EventLine(amount=rest, category=category, mcc=mcc))
    return lines
