"""The load benchmark's data: one tenant as production would hold it, loaded with set-based
inserts (bulk_create, thousands of rows a statement) in a minute or two.

- 100,000 members, each with a points account, one or two EARN transfers from the tenant's
  ISSUANCE account and an earned lot per transfer (balance == sum of transfers == sum of
  lots), a tier assignment and the qualifying points that put them in that tier;
- spend categories with MCCs and multipliers (one capped per month, one for a tier), four
  tiers with earn multipliers and discounts, three active campaigns, the tenant's limits;
- 100,000 catalog items (the PostgreSQL trigger fills each search vector as rows go in),
  their opening stock movements, and a partner configuration pointing at a sandbox partner.

Config goes through the services (their validation and caches); the bulk rows are built as
the services would build them.
"""

import os
import random
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from bench.common import progress
from bench.load.scenarios import ADJECTIVES, BRANDS, DETAILS, MEMBER_REF, NOUNS, SPEND_CATEGORIES
from campaigns.models import Campaign
from campaigns.services import campaign_activate, campaign_create
from catalog.models import Category, Item, Partner, StockMovement
from redemptions.models import PartnerConfig
from rewards.categories import category_create, multiplier_create
from rewards.ledger import system_account_get
from rewards.models import Account, EarnedLot, Member, Transfer
from tenants.models import Tenant
from tenants.services import tenant_create
from tiers.models import QualifyingPoints, Tier, TierAssignment
from tiers.services import tier_create

MEMBERS = int(os.environ.get("BENCH_LOAD_MEMBERS") or 100_000)
ITEMS = int(os.environ.get("BENCH_LOAD_ITEMS") or 100_000)
REDEEMABLE = 500  # gift cards with stock the redemption burst asks for
CHUNK = 5_000
# (tier, qualifying points from, to, share of members): most members low, a few high.
TIERS = [
    ("bronze", 1_000, 4_999, 0.50, Decimal("1"), Decimal("0")),
    ("silver", 5_000, 19_999, 0.30, Decimal("1.25"), Decimal("5")),
    ("gold", 20_000, 59_999, 0.15, Decimal("1.5"), Decimal("10")),
    ("platinum", 60_000, 150_000, 0.05, Decimal("2"), Decimal("15")),
]


@dataclass
class Loaded:
    tenant: Tenant
    api_key: str
    redeem_items: list[str]
    seconds: float


def load(*, partner_url: str, seed: int = 20261215) -> Loaded:
    started = time.perf_counter()
    rng = random.Random(seed)
    tenant, issued = tenant_create(
        name=f"bench-load-{uuid.uuid4().hex[:8]}",
        limits={"GLOBAL": {"max_per_day": 10**11}, "USER": {"max_per_day": 1_000_000}},
    )
    tiers = _config(tenant)
    _members(tenant, tiers, rng, MEMBERS)
    redeem_items = _catalog(tenant, partner_url, rng)
    step = time.perf_counter()
    with connection.cursor() as cursor:
        # Fresh statistics for the planner; VACUUM also merges the GIN indexes' pending lists.
        cursor.execute(f"VACUUM ANALYZE {Item._meta.db_table}")
        for model in (Member, Account, Transfer, EarnedLot, TierAssignment, QualifyingPoints, StockMovement):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    print(f"  vacuum and analyze: {time.perf_counter() - step:.0f} s")
    return Loaded(tenant=tenant, api_key=issued.raw, redeem_items=redeem_items, seconds=time.perf_counter() - started)


def _config(tenant: Tenant) -> dict[str, Tier]:
    """Spend categories and multipliers, tiers and campaigns, through their services."""
    categories = {
        code: category_create(tenant=tenant, code=code, name=code.title(), mcc_codes=mccs)
        for code, mccs in SPEND_CATEGORIES.items()
    }
    multiplier_create(tenant=tenant, category=categories["dining"], factor=Decimal("2"))
    multiplier_create(
        tenant=tenant, category=categories["travel"], factor=Decimal("3"), cap_points=5_000, cap_period="MONTH"
    )
    multiplier_create(tenant=tenant, category=categories["groceries"], factor=Decimal("1.5"))
    multiplier_create(tenant=tenant, category=categories["dining"], factor=Decimal("3"), tier="gold")
    tiers = {
        tier_id: tier_create(
            tenant=tenant,
            tier_id=tier_id,
            names={"en": tier_id.title()},
            min_points=low if tier_id != "bronze" else 0,
            earn_multiplier=multiplier,
            discount_percentage=discount,
            rank=rank,
        )
        for rank, (tier_id, low, _high, _share, multiplier, discount) in enumerate(TIERS)
    }
    start = timezone.now() - timedelta(minutes=5)
    specs = [
        {
            "name": "Double points on orders of 20 or more",
            "type": Campaign.Type.SIMPLE,
            "priority": 10,
            "rule_json": {
                "trigger": {"eventTypes": ["transaction.created"]},
                "conditions": {">=": [{"var": "event.amount"}, 20]},
                "reward": {"type": "POINTS", "multiplier": "2", "maxPoints": 500},
            },
            "budget_amount": Decimal(10**9),
        },
        {
            "name": "50 points on dining, five a week",
            "type": Campaign.Type.SIMPLE,
            "rule_json": {
                "trigger": {"eventTypes": ["transaction.created"]},
                "conditions": {
                    "or": [
                        {"==": [{"var": "event.category"}, "dining"]},
                        {"in": [{"var": "event.mcc"}, SPEND_CATEGORIES["dining"]]},
                    ]
                },
                "reward": {"type": "POINTS", "points": 50},
            },
            "member_cap_rewards": 5,
            "member_cap_period": Campaign.Period.WEEK,
        },
        {
            "name": "2% cashback for gold and platinum",
            "type": Campaign.Type.SIMPLE,
            "rule_json": {
                "trigger": {"eventTypes": ["transaction.created"]},
                "conditions": {"in": [{"var": "member.tier"}, ["gold", "platinum"]]},
                "reward": {"type": "CASHBACK", "percent": "2", "maxAmount": "10.00"},
            },
        },
    ]
    # BENCH_LOAD_CAMPAIGNS=0 (or 1, 2) loads fewer, to see what the campaigns cost.
    specs = specs[: int(os.environ.get("BENCH_LOAD_CAMPAIGNS") or len(specs))]
    for spec in specs:
        campaign_activate(tenant=tenant, campaign=campaign_create(tenant=tenant, start_at=start, **spec))
    print(
        f"  config: {len(categories)} spend categories, 4 multipliers, {len(tiers)} tiers, "
        f"{len(specs)} active campaigns"
    )
    return tiers


def _qualifying(rng: random.Random) -> tuple[str, int]:
    pick, floor = rng.random(), 0.0
    for tier_id, low, high, share, _multiplier, _discount in TIERS:
        floor += share
        if pick < floor:
            return tier_id, rng.randint(low, high)
    return TIERS[-1][0], TIERS[-1][2]


def engine_tenant(prefix: str, members: int):
    """A tenant with the load benchmark's configuration and `members` members, with limits
    high enough not to cut a benchmark's events off: (tenant, issued API key)."""
    tenant, issued = tenant_create(
        name=f"{prefix}-{uuid.uuid4().hex[:8]}",
        limits={"GLOBAL": {"max_per_day": 10**11}, "USER": {"max_per_day": 1_000_000}},
    )
    _members(tenant, _config(tenant), random.Random(1), members)
    return tenant, issued


def _members(tenant: Tenant, tiers: dict[str, Tier], rng: random.Random, count: int) -> None:
    issuance = system_account_get(tenant=tenant, kind=Account.Kind.ISSUANCE)
    now = timezone.now()
    month = now.date().replace(day=1)
    started = time.perf_counter()
    for offset in range(0, count, CHUNK):
        numbers = range(offset, min(offset + CHUNK, count))
        plan = {n: _qualifying(rng) for n in numbers}
        with transaction.atomic():
            members = Member.objects.bulk_create(
                [Member(tenant=tenant, external_ref=MEMBER_REF.format(n), locale="en") for n in numbers]
            )
            accounts = Account.objects.bulk_create(
                [
                    Account(tenant=tenant, member=member, kind=Account.Kind.MEMBER, balance=plan[n][1])
                    for n, member in zip(numbers, members, strict=True)
                ]
            )
            transfers, owners = [], []
            for n, member, account in zip(numbers, members, accounts, strict=True):
                total = plan[n][1]
                # One member in three earned their points in two purchases, so has two lots.
                amounts = [total - total // 3, total // 3] if n % 3 == 0 else [total]
                balance = 0
                for k, amount in enumerate(amounts):
                    balance += amount
                    transfers.append(
                        Transfer(
                            tenant=tenant,
                            debit_account=issuance,
                            credit_account=account,
                            amount=amount,
                            kind=Transfer.Kind.EARN,
                            reason="transaction.created",
                            reference_type="bench",
                            reference_id=f"{member.external_ref}-{k}",
                            idempotency_key=f"bench-load:{member.external_ref}:{k}",
                            explanation={"type": "bench_load"},
                            credit_balance_after=balance,
                        )
                    )
                    owners.append(member)
            Transfer.objects.bulk_create(transfers)
            EarnedLot.objects.bulk_create(
                [
                    EarnedLot(
                        tenant=tenant,
                        member=member,
                        transfer=transfer,
                        points=transfer.amount,
                        remaining=transfer.amount,
                    )
                    for member, transfer in zip(owners, transfers, strict=True)
                ]
            )
            TierAssignment.objects.bulk_create(
                [
                    TierAssignment(
                        member=member, tenant=tenant, tier=tiers[plan[n][0]], assigned_at=now, evaluated_at=now
                    )
                    for n, member in zip(numbers, members, strict=True)
                ]
            )
            QualifyingPoints.objects.bulk_create(
                [
                    QualifyingPoints(tenant=tenant, member=member, month=month, points=plan[n][1])
                    for n, member in zip(numbers, members, strict=True)
                ]
            )
        progress("members (account, transfers, lots, tier, qualifying points)", numbers.stop, count)
    print(f"  members loaded in {time.perf_counter() - started:.0f} s")


def _catalog(tenant: Tenant, partner_url: str, rng: random.Random) -> list[str]:
    """The catalog; returns the ids of the gift cards the redemption burst asks for."""
    shelves = Category.objects.bulk_create(
        [Category(tenant=tenant, code=f"c{n}", name=f"Category {n}") for n in range(20)]
    )
    partner = Partner.objects.create(tenant=tenant, code="sandbox", name="Sandbox partner")
    PartnerConfig.objects.create(
        tenant=tenant, partner=partner, base_url=partner_url, enabled_kinds=[kind.value for kind in Item.Kind]
    )
    kinds = [Item.Kind.MERCHANDISE] * 14 + [Item.Kind.GIFT_CARD] * 3 + [Item.Kind.TRAVEL, Item.Kind.DIGITAL]
    started = time.perf_counter()
    redeemable: list[str] = []
    for offset in range(0, ITEMS, CHUNK):
        batch = []
        for n in range(offset, min(offset + CHUNK, ITEMS)):
            noun = rng.choice(NOUNS)
            name = f"{rng.choice(BRANDS)} {rng.choice(ADJECTIVES)} {noun} {rng.randint(100, 999)}"
            if n < REDEEMABLE:
                kind, cost, stock = Item.Kind.GIFT_CARD, rng.randint(100, 500), 2_000
            else:
                kind, cost = rng.choice(kinds), rng.randint(100, 100_000)
                stock = rng.choice([None, None, None, 0, rng.randint(1, 500), rng.randint(1, 500)])
            batch.append(
                Item(
                    tenant=tenant,
                    sku=f"sku-{n:06d}",
                    name=name,
                    description=f"{name}, {rng.choice(DETAILS)}; {rng.choice(DETAILS)}.",
                    category=rng.choice(shelves),
                    kind=kind,
                    point_cost=cost,
                    cash_value=Decimal(cost) / 100,
                    stock_quantity=stock,
                    is_in_offer_pool=rng.random() < 0.1,
                )
            )
        with transaction.atomic():
            items = Item.objects.bulk_create(batch)  # the trigger fills each search vector
            StockMovement.objects.bulk_create(
                [
                    StockMovement(
                        tenant=tenant,
                        item=item,
                        kind=StockMovement.Kind.INITIAL,
                        quantity=item.stock_quantity,
                        stock_after=item.stock_quantity,
                    )
                    for item in items
                    if item.stock_quantity
                ]
            )
        if offset == 0:
            redeemable = [str(item.pk) for item in items[:REDEEMABLE]]
        progress("catalog items (search vector by trigger, opening stock)", offset + len(batch), ITEMS)
    print(f"  catalog loaded in {time.perf_counter() - started:.0f} s")
    return redeemable[:REDEEMABLE]
