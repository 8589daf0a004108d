"""The round trips of one purchase through the whole engine (spend category and multiplier,
tier, a campaign under a budget, limits), pinned: configuration comes from the caches, nothing
the event just wrote is read back, and the campaign's shared stats row is written last."""

from decimal import Decimal

import pytest

from core.rls import WALL_QUERIES
from rewards.categories import category_create, multiplier_create
from tests.campaigns.helpers import campaign_make
from tests.catalog.helpers import put_in_tier, tier_ladder
from tests.factories import MemberFactory
from tests.rewards.test_query_counts import queries_of

# Committed setup, as in production: caches only serve what a committed write left behind.
pytestmark = pytest.mark.django_db(transaction=True)


def _purchase(member, event_id: str) -> dict:
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": member.external_ref,
        "amount": "40.00",
        "currency": "USD",
        "category": "dining",
    }


def test_a_purchase_with_a_multiplier_a_tier_and_a_budgeted_campaign(tenant, api_client):
    ladder = tier_ladder(tenant)
    dining = category_create(tenant=tenant, code="dining", name="Dining", mcc_codes=["5812"])
    multiplier_create(tenant=tenant, category=dining, factor=Decimal("2"))
    campaign_make(
        tenant,
        rule={
            "trigger": {"eventTypes": ["transaction.created"]},
            "conditions": {">=": [{"var": "event.amount"}, 20]},
            "reward": {"type": "POINTS", "multiplier": "2", "maxPoints": 500},
        },
        budget_amount=Decimal(10**6),
    )
    warm, member = MemberFactory(tenant=tenant), MemberFactory(tenant=tenant)
    put_in_tier(warm, ladder["silver"])
    put_in_tier(member, ladder["silver"])
    # system accounts, caches, and the member's limit counters for the day
    assert api_client.post("/api/v1/events", _purchase(warm, "warm"), format="json").status_code == 201
    assert api_client.post("/api/v1/events", _purchase(member, "warm-2"), format="json").status_code == 201

    sql = queries_of(lambda: api_client.post("/api/v1/events", _purchase(member, "e-1"), format="json"))

    # the API key; BEGIN, the inbox row (ON CONFLICT DO NOTHING: no savepoint), the handler's
    # savepoint (a refusal rolls it back); the member's account row locked, with the member (one
    # query), and its tier; the ledger transfer (the balance and the row, in the handler's
    # savepoint: none of its own), the lot and points.credited; the tier's processed event, the
    # month's qualifying points (an upsert), the tier assignment lock and the total; the
    # incentive and incentive.generated; the campaign's stats; the inbox result; COMMIT.
    assert len(sql) == 20 + WALL_QUERIES, "\n".join(sql)
    for table in ("tenants_tenant", "tenants_limit", "tiers_tier", "tiers_tierpolicy", "rewards_spendcategory"):
        assert not [q for q in sql if f'FROM "{table}"' in q], table
    assert not [q for q in sql if 'FROM "rewards_transfer"' in q]  # the new transfer is not looked for
    assert sum('FROM "rewards_account"' in q for q in sql) == 1  # locked once
    assert sum('FROM "tiers_tierassignment"' in q for q in sql) == 2  # read once, locked once
    # the shared stats row is the last write before the inbox result and COMMIT
    # (the tenant scope of row-level security is widened again after the response: the last query)
    assert "set_config" in sql[-1]
    sql = sql[:-1]
    stats = [i for i, q in enumerate(sql) if 'UPDATE "campaigns_campaignstats"' in q]
    assert stats == [len(sql) - 4], "\n".join(sql[-5:])
    assert sql[-1] == "COMMIT"
