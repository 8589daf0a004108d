"""The rule-based engine: the answer when no provider is configured, and whenever the one
configured fails.

- A category the member named in their request comes first (its name, in any of its locales,
  or its code, as whole words).
- Among those (or all), the category whose rewards the member can redeem now give the most
  value per point at their tier's price; then the one they redeemed from more often, then
  the catalog's order.
- If they can redeem nothing yet, the category whose cheapest reward is the fewest points away.
"""

import re
from decimal import Decimal

from insights.ai.base import RULES, AiContext, Choice
from insights.recommendations import CategoryValue

INFINITY = Decimal("Infinity")
NOTHING = "No rewards are available to you right now."


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def _per_hundred(value: Decimal, currency: str) -> str:
    return f"{(value * 100).quantize(Decimal('0.01'))} {currency} per 100 points"


def _named(request: str, value: CategoryValue) -> bool:
    category = value.category
    names = [category.name, *(category.names or {}).values(), category.code.replace("-", " ").replace("_", " ")]
    text = request.casefold()
    return any(
        re.search(rf"(?<!\w){re.escape(name.casefold())}(?!\w)", text) for name in names if name and name.strip()
    )


def _catalog_order(value: CategoryValue) -> tuple:
    return (value.category.sort_order, value.category.name, value.category.code)


class RulesEngine:
    name = RULES

    def choose(self, context: AiContext) -> Choice:
        if not context.categories:
            return Choice(category=None, reason=NOTHING)
        asked = [value for value in context.categories if _named(context.request, value)] if context.request else []
        pool = asked or context.categories
        redeemable = [value for value in pool if value.affordable]
        if redeemable:
            chosen = min(redeemable, key=self._by_value_now)
            reason = self._reason_now(chosen, context)
        else:
            chosen = min(
                pool, key=lambda value: (value.points_needed, -(value.best_value or 0), *_catalog_order(value))
            )
            reason = self._reason_later(chosen, context)
        if chosen in asked:
            reason = f"You asked about {chosen.category.name}. {reason}"
        return Choice(category=chosen, reason=reason)

    @staticmethod
    def _by_value_now(value: CategoryValue) -> tuple:
        best = INFINITY if value.has_free_reward else (value.best_affordable_value or Decimal(0))
        return (-best, -value.past_redemptions, *_catalog_order(value))

    @staticmethod
    def _reason_now(value: CategoryValue, context: AiContext) -> str:
        name, count = value.category.name, _plural(value.affordable, "reward")
        if value.has_free_reward:
            reason = f"{name} has a reward your tier gets for free, among {count} you can redeem now."
        elif value.best_affordable_value:
            reason = (
                f"{name} gives your {context.balance:,} points the most value: up to "
                f"{_per_hundred(value.best_affordable_value, context.currency)}, on {count} you can redeem now."
            )
        else:
            reason = f"{name} has {count} you can redeem now with your {context.balance:,} points."
        if value.past_redemptions:
            reason += " You have redeemed from it before."
        if context.expiring_points:
            reason += f" {_plural(context.expiring_points, 'point')} of yours expire soon: redeem them first."
        return reason

    @staticmethod
    def _reason_later(value: CategoryValue, context: AiContext) -> str:
        reason = f"You are {_plural(value.points_needed, 'point')} away from a reward in {value.category.name}"
        if value.best_value:
            reason += f", where points are worth up to {_per_hundred(value.best_value, context.currency)}"
        return reason + "."
