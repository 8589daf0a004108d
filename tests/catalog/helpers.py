from decimal import Decimal

from django.utils import timezone

from catalog import services
from tiers.models import Tier, TierAssignment


def tier_ladder(tenant) -> dict:
    """Bronze (0), Silver (1,000, 10% off rewards), Gold (5,000, 25% off)."""
    return {
        "bronze": Tier.objects.create(tenant=tenant, tier_id="bronze", names={"en": "Bronze"}, min_points=0),
        "silver": Tier.objects.create(
            tenant=tenant, tier_id="silver", names={"en": "Silver"}, min_points=1000, discount_percentage=Decimal(10)
        ),
        "gold": Tier.objects.create(
            tenant=tenant, tier_id="gold", names={"en": "Gold"}, min_points=5000, discount_percentage=Decimal(25)
        ),
    }


def put_in_tier(member, tier) -> None:
    TierAssignment.objects.update_or_create(
        member=member, defaults={"tenant_id": member.tenant_id, "tier": tier, "assigned_at": timezone.now()}
    )


def item(tenant, name: str, point_cost: int = 100, **fields):
    return services.item_create(tenant=tenant, name=name, point_cost=point_cost, **fields)
