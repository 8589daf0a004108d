"""Spend categories and multipliers: the configuration the calculation reads."""

from dataclasses import dataclass

from rewards.calculation import MultiplierRule
from rewards.models import Multiplier, SpendCategory
from tenants.models import Tenant


@dataclass(frozen=True)
class CategoryConfig:
    categories: dict[str, str | None]  # code -> parent code
    mcc: dict[str, str]  # MCC -> category code
    multipliers: tuple[MultiplierRule, ...]


def category_config_get(*, tenant: Tenant) -> CategoryConfig:
    """The tenant's categories, MCC map and multipliers, as the calculation reads them."""
    categories, mcc = {}, {}
    for code, parent_code, codes in SpendCategory.objects.filter(tenant=tenant).values_list(
        "code", "parent__code", "mcc_codes"
    ):
        categories[code] = parent_code
        for value in codes or []:
            mcc.setdefault(str(value), code)
    multipliers = tuple(
        MultiplierRule(
            id=m.id,
            category=m.category.code,
            factor=m.factor,
            valid_from=m.valid_from,
            valid_to=m.valid_to,
            tier=m.tier,
            cap_points=m.cap_points,
            cap_period=m.cap_period,
            version=m.version,
        )
        for m in Multiplier.objects.filter(tenant=tenant).select_related("category").order_by("id")
    )
    return CategoryConfig(categories=categories, mcc=mcc, multipliers=multipliers)
