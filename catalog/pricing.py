"""What an item costs a member: the point cost less the tier's discount, rounded up to a
whole point (a discount never makes an item free by rounding)."""

from decimal import ROUND_CEILING, Decimal


def member_point_cost(point_cost: int, discount_percentage: Decimal) -> int:
    if not discount_percentage:
        return point_cost
    cost = Decimal(point_cost) * (Decimal(100) - discount_percentage) / Decimal(100)
    return int(cost.to_integral_value(rounding=ROUND_CEILING))


def max_affordable_cost(balance: int, discount_percentage: Decimal) -> int | None:
    """The highest list price a member with `balance` points can pay after the discount
    (None: anything, at a 100% discount). ceil(c * (100 - d) / 100) <= b exactly when
    c * (100 - d) <= 100 * b."""
    remaining = Decimal(100) - (discount_percentage or Decimal(0))
    if remaining <= 0:
        return None
    return int((Decimal(balance) * 100 / remaining).to_integral_value(rounding="ROUND_FLOOR"))
