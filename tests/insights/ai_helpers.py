"""A fixed catalog for the recommendation tests, and members placed in it.

The catalog (list price -> Silver's price at 10% off; value per point at Silver's price):

    digital      Coffee            200 ->  180   3.00   0.016667
                 Music credit      400 ->  360   6.00   0.016667  (ties with Coffee: the cheaper first)
    gift-cards   Gift card 10     1000 ->  900  10.00   0.011111
                 Gift card 25     2000 -> 1800  25.00   0.013889
    merchandise  Headphones        500 ->  450   4.00   0.008889
                 Limited tote      600 ->  540   6.60   0.012222  (3 in stock)
                 Sold-out speaker  300 ->  270  30.00   out of stock
                 Retired mug       100 ->   90  10.00   inactive
    travel       Flight voucher   3000 -> 2700  45.00   0.016667
                 Gold lounge pass  400 ->  360  40.00   Gold members only
"""

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from catalog import services as catalog
from catalog.models import Item
from rewards import services as rewards
from rewards.models import EarnedLot
from tests.catalog.helpers import put_in_tier, tier_ladder
from tests.factories import MemberFactory

K = Item.Kind


def build_catalog(tenant) -> dict:
    """The catalog above, with Bronze / Silver (10% off) / Gold (25% off) tiers. Returns the
    tiers and the items by name. Call it inside django_capture_on_commit_callbacks(execute=True)
    so its writes count as committed (the caches they retire included)."""
    tiers = tier_ladder(tenant)
    for order, (code, name) in enumerate(
        [("digital", "Digital"), ("gift-cards", "Gift cards"), ("merchandise", "Merchandise"), ("travel", "Travel")]
    ):
        catalog.category_create(tenant=tenant, code=code, name=name, sort_order=order, description=f"{name} rewards")
    rows = [
        ("Coffee", "digital", K.DIGITAL, 200, "3.00", {}),
        ("Music credit", "digital", K.DIGITAL, 400, "6.00", {}),
        ("Gift card 10", "gift-cards", K.GIFT_CARD, 1000, "10.00", {}),
        ("Gift card 25", "gift-cards", K.GIFT_CARD, 2000, "25.00", {}),
        ("Headphones", "merchandise", K.MERCHANDISE, 500, "4.00", {}),
        ("Limited tote", "merchandise", K.MERCHANDISE, 600, "6.60", {"stock_quantity": 3}),
        ("Sold-out speaker", "merchandise", K.MERCHANDISE, 300, "30.00", {"stock_quantity": 0}),
        ("Retired mug", "merchandise", K.MERCHANDISE, 100, "10.00", {"is_active": False}),
        ("Flight voucher", "travel", K.TRAVEL, 3000, "45.00", {}),
        ("Gold lounge pass", "travel", K.TRAVEL, 400, "40.00", {"min_tier": "gold"}),
    ]
    items = {}
    for name, category, kind, cost, cash, extra in rows:
        items[name] = catalog.item_create(
            tenant=tenant,
            name=name,
            category=category,
            kind=kind,
            point_cost=cost,
            cash_value=Decimal(cash),
            **extra,
        )
    return {"tiers": tiers, "items": items}


def member_at(tenant, tier, *, points: int = 0, **fields):
    """A member in `tier` holding `points` that never expire."""
    member = MemberFactory(tenant=tenant, **fields)
    put_in_tier(member, tier)
    if points:
        rewards.points_adjust(tenant=tenant, member=member, points=points, reason="seed", actor="test")
    return member


def give_expiring(member, points: int, *, days: float):
    """Credit `points` to the member that expire in `days` days."""
    result = rewards.points_adjust(tenant=member.tenant, member=member, points=points, reason="seed", actor="test")
    expires_at = timezone.now() + timedelta(days=days)
    EarnedLot.objects.filter(transfer=result.transfer).update(expires_at=expires_at)
    return expires_at


def names(rows: list[dict]) -> list[str]:
    return [row["name"] for row in rows]
