"""What a recommendation engine is told and what it answers (seed 003 `POST /ai/recommendation`).

An engine chooses one of the member's candidate categories (insights.recommendations.
category_values) and says why. The rules engine always answers; the LLM engine raises a
ProviderFailure instead, whose `reason` the response reports when the rules stood in.
"""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from insights.recommendations import CategoryValue

RULES, LLM = "rules", "llm"
TIMEOUT, ERROR, MALFORMED = "timeout", "error", "malformed"
FALLBACK_REASONS = (TIMEOUT, ERROR, MALFORMED)


@dataclass(frozen=True)
class AiContext:
    """The member as an engine sees it: no memberRef, nothing the tenant did not put in its
    catalog, and what the member asked for (`request`, free text, may be empty)."""

    balance: int
    tier_id: str | None
    discount_percentage: Decimal
    currency: str
    expiring_points: int
    categories: list[CategoryValue]
    request: str = ""

    def category(self, code: str) -> CategoryValue | None:
        return next((value for value in self.categories if value.category.code == code), None)


@dataclass(frozen=True)
class Choice:
    category: CategoryValue | None  # None only when there is nothing to recommend
    reason: str


class Engine(Protocol):
    name: str

    def choose(self, context: AiContext) -> Choice: ...


class ProviderFailure(Exception):
    """The provider gave no usable answer; `reason` is one of FALLBACK_REASONS."""

    reason = ERROR


class ProviderTimeout(ProviderFailure):
    reason = TIMEOUT


class ProviderError(ProviderFailure):
    """Could not connect, or an HTTP error status."""

    reason = ERROR


class ProviderMalformed(ProviderFailure):
    """An answer that is not exactly the JSON asked for."""

    reason = MALFORMED
