"""An independent model of the earning rules, and Hypothesis strategies that feed it.

The oracle is written from the rules as the README states them, not from
`rewards.calculation`, so that a mistake in the engine is not copied into the check:

    points = round( sum of line amount * earn rate * category multiplier * tier multiplier )

It works in exact Decimal arithmetic (a context far wider than any value here needs) and
does its own rounding, so nothing it computes is ever rounded behind its back.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext

from hypothesis import strategies as st

EXACT = Context(prec=120)
ONE = Decimal(1)
HALF = Decimal("0.5")
CENT = Decimal("0.01")
ROUNDINGS = ("FLOOR", "HALF_UP", "HALF_EVEN", "CEILING")

# Multiplier windows and purchases sit on whole hours around this moment, so that a purchase
# often falls exactly on a window's first or last instant.
BASE = datetime(2031, 3, 14, 12, 0, tzinfo=UTC)
CODES = ("dining", "travel", "air", "hotel", "fuel", "grocery", "online")
MCC_POOL = ("5812", "5814", "4511", "3000", "7011", "5541", "5411", "5999", "4121", "5732")
UNMAPPED_MCC = "9999"
UNKNOWN_CATEGORY = "not-a-category"
TIERS = ("", "silver", "gold")


@dataclass(frozen=True)
class Rule:
    """A multiplier as the oracle sees it."""

    category: str
    factor: Decimal
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    tier: str = ""


@dataclass(frozen=True)
class Program:
    """A tenant's earning configuration."""

    earn_rate: Decimal
    rounding: str
    parents: dict[str, str | None]  # category code -> parent code, in creation order
    mccs: dict[str, tuple[str, ...]]  # category code -> its MCCs (no MCC belongs to two categories)
    rules: tuple[Rule, ...] = ()
    tier_factors: dict[str, Decimal] = field(default_factory=lambda: {"": ONE})

    @property
    def category_of_mcc(self) -> dict[str, str]:
        return {mcc: code for code, mccs in self.mccs.items() for mcc in mccs}


# The oracle ----------------------------------------------------------------------------


def oracle_lines(event: dict) -> list[tuple[Decimal, str | None, str | None]]:
    """(amount, category, mcc) per line: each line item, then whatever of the amount the
    items leave over at the event's category. An item that names its own category is
    classified by that alone (plus its own MCC); one that does not takes the event's."""
    lines = []
    for item in event.get("line_items") or []:
        if item.get("category"):
            lines.append((Decimal(item["amount"]), item["category"], item.get("mcc")))
        else:
            lines.append((Decimal(item["amount"]), event.get("category"), item.get("mcc") or event.get("mcc")))
    rest = event["amount"] - sum((amount for amount, _, _ in lines), Decimal(0))
    if not lines or rest > 0:
        lines.append((rest, event.get("category"), event.get("mcc")))
    return lines


def oracle_category(program: Program, category: str | None, mcc: str | None) -> str | None:
    """A known category code wins; otherwise a mapped MCC; otherwise none."""
    if category in program.parents:
        return category
    return program.category_of_mcc.get(mcc)


def oracle_factor(program: Program, category: str | None, at: datetime, tier: str) -> Decimal:
    """The category's live multiplier (one for the member's tier beats a general one, then the
    highest), or its parent's when it has none, up to the root; 1 when nothing applies."""
    while category is not None:
        live = [
            rule
            for rule in program.rules
            if rule.category == category
            and rule.tier in ("", tier)
            and (rule.valid_from is None or rule.valid_from <= at)
            and (rule.valid_to is None or at < rule.valid_to)
        ]
        for_tier = [rule.factor for rule in live if rule.tier]
        if for_tier:
            return max(for_tier)
        if live:
            return max(rule.factor for rule in live)
        category = program.parents[category]
    return ONE


def oracle_round(value: Decimal, rounding: str) -> int:
    """Round a non-negative exact value to whole points, by hand."""
    assert value >= 0
    whole = int(value // 1)
    fraction = value - whole
    if rounding == "FLOOR":
        return whole
    if rounding == "CEILING":
        return whole + (fraction > 0)
    if rounding == "HALF_UP":
        return whole + (fraction >= HALF)
    assert rounding == "HALF_EVEN"
    return whole + (fraction > HALF or (fraction == HALF and whole % 2 == 1))


def oracle_points(program: Program, event: dict, tier: str) -> int:
    """Points a purchase computes to, before limits."""
    with localcontext(EXACT):
        tier_factor = program.tier_factors[tier]
        total = Decimal(0)
        for amount, category, mcc in oracle_lines(event):
            factor = oracle_factor(program, oracle_category(program, category, mcc), event["occurred_at"], tier)
            total += amount * program.earn_rate * tier_factor * factor
        return oracle_round(total, program.rounding)


def oracle_reversed_total(*, awarded: int, refunded_cents: int, amount_cents: int) -> int:
    """Points reversed once `refunded_cents` of a purchase of `amount_cents` are refunded:
    floor(awarded * refunded / amount), and exactly the award once all of it is."""
    assert 0 <= refunded_cents <= amount_cents
    if refunded_cents == amount_cents:
        return awarded
    return awarded * refunded_cents // amount_cents


# Strategies ----------------------------------------------------------------------------

FACTORS = tuple(Decimal(f) for f in ("0", "0.5", "1", "1.25", "1.5", "2", "3", "10"))
EARN_RATES = tuple(Decimal(r) for r in ("0", "0.01", "0.5", "1", "1.2345", "2", "3.3333", "10"))
TIER_FACTORS = tuple(Decimal(f) for f in ("1", "1.1", "1.25", "1.5", "2", "3"))


def decimals(low: str, high: str, places: int) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=Decimal(low), max_value=Decimal(high), places=places, allow_nan=False)


def moments() -> st.SearchStrategy[datetime]:
    """Mostly whole hours near BASE (window edges), sometimes a minute or a second past."""
    hours = st.integers(-72, 72)
    offsets = st.sampled_from([timedelta(0), timedelta(0), timedelta(minutes=30), timedelta(seconds=1)])
    return st.builds(lambda h, extra: BASE + timedelta(hours=h) + extra, hours, offsets)


@st.composite
def programs(draw) -> Program:
    codes = draw(st.lists(st.sampled_from(CODES), unique=True, max_size=len(CODES)))
    parents: dict[str, str | None] = {}
    for i, code in enumerate(codes):
        parents[code] = draw(st.one_of(st.none(), st.sampled_from(codes[:i]))) if i else None
    pool = list(draw(st.permutations(MCC_POOL)))
    mccs = {}
    for code in codes:
        n = draw(st.integers(0, 2))
        mccs[code], pool = tuple(pool[:n]), pool[n:]
    rules = []
    if codes:
        for _ in range(draw(st.integers(0, 8))):
            start = draw(st.one_of(st.none(), st.integers(-72, 72)))
            end = draw(st.one_of(st.none(), st.integers(-72, 73)))
            if start is not None and end is not None and end <= start:
                start, end = end - 1, start + 1
            rules.append(
                Rule(
                    category=draw(st.sampled_from(codes)),
                    factor=draw(st.one_of(st.sampled_from(FACTORS), decimals("0", "20", 4))),
                    valid_from=None if start is None else BASE + timedelta(hours=start),
                    valid_to=None if end is None else BASE + timedelta(hours=end),
                    tier=draw(st.sampled_from(TIERS)),
                )
            )
    tier_factors = {
        "": ONE,
        "silver": draw(st.one_of(st.sampled_from(TIER_FACTORS), decimals("1", "3", 2))),
        "gold": draw(st.one_of(st.sampled_from(TIER_FACTORS), decimals("1", "3", 2))),
    }
    return Program(
        earn_rate=draw(st.one_of(st.sampled_from(EARN_RATES), decimals("0", "100", 4))),
        rounding=draw(st.sampled_from(ROUNDINGS)),
        parents=parents,
        mccs=mccs,
        rules=tuple(rules),
        tier_factors=tier_factors,
    )


def amounts_in_cents() -> st.SearchStrategy[int]:
    # Up to 100 million: large enough for any till, and small enough that every product the
    # engine forms fits its 28-digit Decimal context exactly.
    return st.one_of(st.integers(1, 100), st.integers(1, 100_000), st.integers(1, 10**10))


def _classifications(program: Program) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    """Category and MCC choices: none, unknown, or one the program knows."""
    known, mapped = sorted(program.parents), sorted(program.category_of_mcc)
    category = st.one_of(st.none(), st.just(UNKNOWN_CATEGORY), *([st.sampled_from(known)] if known else []))
    mcc = st.one_of(st.none(), st.just(UNMAPPED_MCC), *([st.sampled_from(mapped)] if mapped else []))
    return category, mcc


def purchases(program: Program) -> st.SearchStrategy[dict]:
    """transaction.created events in their validated form (snake_case, Decimal, datetime),
    without event_id and member_ref."""
    # Built once per program: Hypothesis validates every new strategy object, which costs
    # more than the draw itself when it happens once per event.
    category, mcc = _classifications(program)
    return _purchases(amounts_in_cents(), moments(), category, mcc)


@st.composite
def _purchases(draw, cents_strategy, moment_strategy, category_strategy, mcc_strategy) -> dict:
    cents = draw(cents_strategy)
    event = {
        "type": "transaction.created",
        "amount": Decimal(cents) * CENT,
        "currency": "USD",
        "occurred_at": draw(moment_strategy),
    }
    for name, choice in (("category", category_strategy), ("mcc", mcc_strategy)):
        value = draw(choice)
        if value is not None:
            event[name] = value
    if draw(st.booleans()):
        items, left = [], cents
        for _ in range(draw(st.integers(0, 4))):
            if left == 0:
                break
            # Sometimes an item takes everything left, so that no rest line remains.
            item_cents = left if draw(st.booleans()) and draw(st.booleans()) else 1 + draw(ANY_CENTS) % left
            left -= item_cents
            item = {"amount": Decimal(item_cents) * CENT}
            for name, choice in (("category", category_strategy), ("mcc", mcc_strategy)):
                value = draw(choice)
                if value is not None:
                    item[name] = value
            if draw(st.booleans()):
                item["sku"] = f"sku-{len(items)}"
            items.append(item)
        event["line_items"] = items
    return event


ANY_CENTS = st.integers(0, 10**10)
