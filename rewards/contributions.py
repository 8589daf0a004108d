"""How other apps plug into the earning engine without the engine importing them.

`tiers` registers the member's tier (code and multiplier); `campaigns` registers incentive
providers; anyone may listen to points earned or reversed (tier re-evaluation). They
register from their `AppConfig.ready`, so dependencies keep pointing one way.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class TierContext:
    code: str = ""
    multiplier: Decimal = Decimal("1")


@dataclass(frozen=True)
class Incentive:
    """Extra points a campaign adds to an earning, with why."""

    points: int
    source: str
    explanation: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PointsChange:
    """Told to listeners after the engine moved points for an event (in its transaction)."""

    tenant: Any
    member: Any
    points: int  # negative for a reversal
    kind: str  # "earn" or "reversal"
    event_id: str


TierProvider = Callable[[Any, Any], TierContext]  # (tenant, member) -> TierContext
IncentiveProvider = Callable[[Any, Any, dict], list[Incentive]]  # (tenant, member, event) -> incentives
PointsListener = Callable[[PointsChange], None]

_tier_provider: TierProvider | None = None
_incentive_providers: list[IncentiveProvider] = []
_listeners: list[PointsListener] = []


def register_tier_provider(provider: TierProvider) -> None:
    global _tier_provider
    _tier_provider = provider


def register_incentive_provider(provider: IncentiveProvider) -> None:
    if provider not in _incentive_providers:
        _incentive_providers.append(provider)


def register_points_listener(listener: PointsListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def tier_for(tenant, member) -> TierContext:
    return _tier_provider(tenant, member) if _tier_provider is not None else TierContext()


def incentives_for(tenant, member, event: dict) -> list[Incentive]:
    return [incentive for provider in _incentive_providers for incentive in provider(tenant, member, event)]


def points_changed(change: PointsChange) -> None:
    for listener in _listeners:
        listener(change)
