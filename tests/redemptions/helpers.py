"""Building blocks for redemption tests: a partner set up for the tenant, an item, a member
with points, and the checks every redemption test ends with."""

from decimal import Decimal

from django.db.models import Sum

from catalog import services as catalog
from catalog.models import Item, Partner
from redemptions.models import PartnerConfig, Redemption
from rewards import selectors
from rewards import services as rewards
from rewards.models import EarnedLot
from tests.factories import MemberFactory

ALL_KINDS = [kind.value for kind in Item.Kind]


def partner_config(
    tenant, url: str, *, code: str = "acme", kinds=None, timeout="1.0", max_attempts=2, threshold=5, reset=1
) -> PartnerConfig:
    partner = Partner.objects.create(tenant=tenant, code=code, name=code.title())
    return PartnerConfig.objects.create(
        tenant=tenant,
        partner=partner,
        base_url=url,
        enabled_kinds=list(kinds or ALL_KINDS),
        timeout_seconds=Decimal(timeout),
        max_attempts=max_attempts,
        failure_threshold=threshold,
        reset_timeout_seconds=reset,
    )


def reward(tenant, *, point_cost: int = 100, stock: int | None = None, kind=Item.Kind.GIFT_CARD, **fields) -> Item:
    fields.setdefault("name", f"{kind.title()} {point_cost}")
    fields.setdefault("cash_value", Decimal("5.00"))
    return catalog.item_create(tenant=tenant, point_cost=point_cost, kind=kind, stock_quantity=stock, **fields)


def member_with(tenant, points: int, **fields):
    member = MemberFactory(tenant=tenant, **fields)
    if points:
        rewards.points_adjust(tenant=tenant, member=member, points=points, reason="seed", actor="test")
    return member


def balance(member) -> int:
    return selectors.member_balance(member=member)


def stock(item: Item) -> int | None:
    return Item.objects.values_list("stock_quantity", flat=True).get(pk=item.pk)


def assert_books_balance(tenant) -> None:
    """The ledger's invariants hold and every member's open lots add up to their balance."""
    report = selectors.ledger_verify(tenant=tenant)
    assert report.ok, report
    for member in tenant.members.all():
        lots = EarnedLot.objects.filter(member=member, pending_until__isnull=True).aggregate(s=Sum("remaining"))["s"]
        assert (lots or 0) == balance(member), member


def statuses(tenant) -> dict:
    from collections import Counter

    return dict(Counter(Redemption.objects.filter(tenant=tenant).values_list("status", flat=True)))
