"""How other apps plug into the earning engine without the engine importing them.

`tiers` registers the member's tier (code and multiplier); `campaigns` registers incentive
providers; anyone may listen to points earned or reversed (tier re-evaluation). They
register from their `AppConfig.ready`, so dependencies keep pointing one way.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class TierContext:
    code: str = ""
    multiplier: Decimal = Decimal("1")
    bonus_points: int = 0  # added to every purchase's points
    discount_percentage: Decimal = Decimal("0")  # off the point cost of rewards


@dataclass(frozen=True)
class IncentiveContext:
    """What the engine tells incentive providers about the event being applied."""

    base_points: int  # what the purchase earns before incentives (0 for an action)
    now: datetime
    dry_run: bool = False
    # The member's tier as the engine already read it for this event (None: ask tier_for).
    tier: TierContext | None = None
    # Campaigns (ids) a first attempt at this event found out of budget at its end (EventRetry).
    exhausted: frozenset = frozenset()
    # The set-based batch applying this event (rewards.batch), if any: providers may hand it
    # their writes (`batch.extension`) to make them once for the whole batch.
    batch: Any = None


@dataclass(frozen=True)
class Incentive:
    """Extra points a campaign adds to an earning, with why. `settle` is told, once the
    limits have been applied, how many of `points` were actually credited (and the
    transfer), so the provider can record the true amount and announce it."""

    points: int
    source: str
    explanation: dict = field(default_factory=dict)
    settle: Callable[[int, str | None], None] | None = field(default=None, compare=False)


class EventRetry(Exception):
    """Raised by a provider at the end of an event (from `Incentive.settle`) when something it
    counted on is gone: a campaign's budget, spent by concurrent events while this one was
    applied. The engine rolls the event back and applies it again with `exhausted` added to
    the context, so that the outcome is what it would have been had it known from the start.
    Checking budgets last keeps their shared row locked only for the end of the transaction."""

    def __init__(self, *, exhausted: frozenset):
        super().__init__("retry the event")
        self.exhausted = exhausted


@dataclass(frozen=True)
class RefundContext:
    """Told to refund listeners when a refund is applied (in its transaction)."""

    tenant: Any
    member: Any
    original_event_id: str
    refund_event_id: str
    refunded_total: Decimal  # all refunds of the original so far, this one included
    original_amount: Decimal
    dry_run: bool = False

    @property
    def complete(self) -> bool:
        return self.refunded_total >= self.original_amount


@dataclass(frozen=True)
class PointsChange:
    """Told to listeners after the engine moved points for an event (in its transaction)."""

    tenant: Any
    member: Any
    points: int  # negative for a reversal or an expiry
    kind: str  # "earn", "reversal" or "expiry"
    event_id: str
    earned_at: datetime | None = None  # when the points taken back were earned (None: now)


TierProvider = Callable[[Any, Any], TierContext]  # (tenant, member) -> TierContext
TierLadderProvider = Callable[[Any], list[str]]  # (tenant) -> tier codes, lowest first
TierBatchProvider = Callable[[Any, list], dict]  # (tenant, members) -> {member pk: TierContext}
IncentiveProvider = Callable[[Any, Any, dict, IncentiveContext], list[Incentive]]
PointsListener = Callable[[PointsChange], None]
# (tenant, member, event, context) -> what the provider would give, if it gives nothing and
# writes nothing for this event; None when it would (only the provider itself may then answer).
IncentivePreview = Callable[[Any, Any, dict, IncentiveContext], "list[Incentive] | None"]
# (tenant, members, now) -> {member pk: points the member may still earn before something
# happens at once (an upgrade), None for nothing}; a member missing is never set-based.
PointsHeadroom = Callable[[Any, list, datetime], dict]
# (tenant, [PointsChange], crossed) for many earnings at once; `crossed` holds the members
# whose last earning reached their headroom: for them the listener then acts as for one.
BatchPointsListener = Callable[[Any, list, frozenset], None]
RefundListener = Callable[[RefundContext], list[dict]]  # -> what it reversed, for the explanation

_tier_provider: TierProvider | None = None
_tier_batch_provider: "TierBatchProvider | None" = None
_tier_ladder_provider: TierLadderProvider | None = None
_incentive_providers: list[IncentiveProvider] = []
_incentive_previews: dict[IncentiveProvider, IncentivePreview] = {}
_batch_forms: dict[PointsListener, tuple[BatchPointsListener, PointsHeadroom]] = {}
_action_catalog: Callable[[Any], list[str]] | None = None
_listeners: list[PointsListener] = []
_refund_listeners: list[RefundListener] = []
_member_extensions: dict[str, Callable[[Any], dict | None]] = {}
_member_created_listeners: list[Callable[[Any], None]] = []


def register_tier_provider(provider: TierProvider, batch: TierBatchProvider | None = None) -> None:
    """`batch(tenant, members) -> {member pk: TierContext}` answers for many members at once."""
    global _tier_provider, _tier_batch_provider
    _tier_provider, _tier_batch_provider = provider, batch


def register_tier_ladder(provider: TierLadderProvider) -> None:
    """`provider(tenant)` lists the tenant's tier codes from the lowest to the highest."""
    global _tier_ladder_provider
    _tier_ladder_provider = provider


def register_incentive_provider(provider: IncentiveProvider, preview: IncentivePreview | None = None) -> None:
    """`preview`, if given, answers without writing for events the provider gives nothing:
    the set-based batch path applies those without the provider's per-event writes."""
    if provider not in _incentive_providers:
        _incentive_providers.append(provider)
    if preview is not None:
        _incentive_previews[provider] = preview


def register_action_catalog(provider: Callable[[Any], list[str]]) -> None:
    """`provider(tenant)` lists the action codes the tenant knows (campaigns keeps them)."""
    global _action_catalog
    _action_catalog = provider


def action_codes(tenant) -> list[str]:
    """The tenant's known action codes (none without a catalog registered)."""
    return list(_action_catalog(tenant)) if _action_catalog is not None else []


def register_points_listener(
    listener: PointsListener, batch: BatchPointsListener | None = None, headroom: PointsHeadroom | None = None
) -> None:
    """`batch(tenant, changes, crossed)`, with `headroom`, is the listener's set-based form:
    it does for many earnings what `listener` does for one. The points `headroom(tenant,
    members, now)` gives a member are what it may earn with nothing to do but count them;
    for the members in `crossed`, whose last earning in `changes` reached that headroom, it
    then does what `listener` does at once (an upgrade, say). Without it, the set-based batch
    path is not used."""
    if listener not in _listeners:
        _listeners.append(listener)
    if batch is not None and headroom is not None:
        _batch_forms[listener] = (batch, headroom)


def register_refund_listener(listener: RefundListener) -> None:
    if listener not in _refund_listeners:
        _refund_listeners.append(listener)


def register_member_extension(name: str, extension: Callable[[Any], dict | None]) -> None:
    """`extension(member)` adds a section `name` to the member as the API shows it (the tier)."""
    _member_extensions[name] = extension


def register_member_created_listener(listener: Callable[[Any], None]) -> None:
    """`listener(member)` runs in the transaction that created the member (default tier)."""
    if listener not in _member_created_listeners:
        _member_created_listeners.append(listener)


def member_created(member) -> None:
    for listener in _member_created_listeners:
        listener(member)


def member_extensions(member) -> dict:
    return {name: extension(member) for name, extension in _member_extensions.items()}


def tier_for(tenant, member) -> TierContext:
    return _tier_provider(tenant, member) if _tier_provider is not None else TierContext()


def tiers_for(tenant, members: list) -> dict:
    """{member pk: TierContext} for many members, in one query when the provider can."""
    if _tier_batch_provider is not None:
        found = _tier_batch_provider(tenant, members)
        return {member.pk: found.get(member.pk, TierContext()) for member in members}
    return {member.pk: tier_for(tenant, member) for member in members}


def tier_ladder(tenant) -> list[str]:
    """The tenant's tier codes, lowest first (empty without tiers)."""
    return _tier_ladder_provider(tenant) if _tier_ladder_provider is not None else []


def tiers_reached(tenant, member, tier: TierContext | None = None) -> list[str]:
    """The tier codes at or below the member's current tier (`tier`, when the caller has read
    it already): what tier-gated things they may see (empty for a member without a tier)."""
    code = (tier or tier_for(tenant, member)).code
    ladder = tier_ladder(tenant)
    return ladder[: ladder.index(code) + 1] if code in ladder else []


def incentives_for(tenant, member, event: dict, context: IncentiveContext) -> list[Incentive]:
    return [incentive for provider in _incentive_providers for incentive in provider(tenant, member, event, context)]


def incentives_preview(tenant, member, event: dict, context: IncentiveContext) -> list[Incentive] | None:
    """Every provider's answer without writes, or None when one of them would write (or has
    no preview): then the event must go through `incentives_for`."""
    found = []
    for provider in _incentive_providers:
        preview = _incentive_previews.get(provider)
        answer = preview(tenant, member, event, context) if preview is not None else None
        if answer is None:
            return None
        found += answer
    return found


def batch_points_ready() -> bool:
    """Whether every points listener has a set-based form."""
    return all(listener in _batch_forms for listener in _listeners)


def points_headroom(tenant, members: list, now: datetime) -> dict:
    """{member pk: points the member may earn in a batch before a listener must act at once
    (None: no bound)}; a member left out may not be earned for set-based."""
    headroom: dict = {member.pk: None for member in members}
    for _batch, bound in _batch_forms.values():
        found = bound(tenant, members, now)
        for pk in list(headroom):
            if pk not in found:
                del headroom[pk]
            elif found[pk] is not None:
                headroom[pk] = found[pk] if headroom[pk] is None else min(headroom[pk], found[pk])
    return headroom


def points_changed_batch(tenant, changes: list[PointsChange], crossed: frozenset = frozenset()) -> None:
    """`crossed`: the pks of the members whose last earning in `changes` reached the headroom
    `points_headroom` gave them."""
    for batch, _bound in _batch_forms.values():
        batch(tenant, changes, crossed)


def refund_applied(context: RefundContext) -> list[dict]:
    return [item for listener in _refund_listeners for item in listener(context)]


def points_changed(change: PointsChange) -> None:
    for listener in _listeners:
        listener(change)
