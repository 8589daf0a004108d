"""Query counts of the hot read and write paths, pinned: a change that adds a query per
request shows here before it shows in the load benchmark."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from core.rls import WALL_QUERIES
from rewards.services import member_token_issue, points_adjust
from tests.catalog.helpers import put_in_tier, tier_ladder
from tests.factories import MemberFactory
from tiers.models import QualifyingPoints
from tiers.services import tier_policy_update

# Committed setup, as in production: caches only serve what a committed write left behind.
pytestmark = pytest.mark.django_db(transaction=True)


def queries_of(call) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = call()
    assert response.status_code < 300, response.content
    return [query["sql"] for query in captured.captured_queries]


def test_me_reads_the_member_once_and_the_tiers_from_the_cache(tenant):
    ladder = tier_ladder(tenant)
    member = MemberFactory(tenant=tenant)
    put_in_tier(member, ladder["silver"])
    points_adjust(tenant=tenant, member=member, points=10, reason="x", actor="t")
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    client.get("/api/v1/me")  # warms the tier cache

    sql = queries_of(lambda: client.get("/api/v1/me"))

    # the token's member with its tenant and balance (one query for the authentication and the
    # profile), expiring points, and the tier assignment with the qualifying points; the tier
    # list and the tier policy come from the cache
    assert len(sql) == 3 + WALL_QUERIES, "\n".join(sql)
    assert not [q for q in sql if 'FROM "tiers_tier"' in q or 'FROM "tiers_tierpolicy"' in q]
    assert sum('FROM "rewards_member"' in q for q in sql) == 1
    assert client.get("/api/v1/me").json()["balance"] == 10


def test_an_event_through_the_whole_engine(tenant, api_client):
    ladder = tier_ladder(tenant)
    member = MemberFactory(tenant=tenant)
    put_in_tier(member, ladder["silver"])
    body = {"type": "transaction.created", "memberRef": member.external_ref, "amount": "12.50", "currency": "USD"}
    api_client.post("/api/v1/events", {**body, "eventId": "warm"}, format="json")  # system accounts, caches

    sql = queries_of(lambda: api_client.post("/api/v1/events", {**body, "eventId": "e-1"}, format="json"))

    # 17 round trips: BEGIN and COMMIT, the handler's savepoint (the transfer opens none of its
    # own), the inbox row, the member with its account row lock, its tier, the ledger transfer
    # with its lot and event, the tier's processed event, qualifying points (an upsert) and
    # re-evaluation. No query for the tenant, its system accounts, its limits, its tier list or
    # policy.
    assert len(sql) == 17 + WALL_QUERIES, "\n".join(sql)
    assert sum(q.startswith("SAVEPOINT") for q in sql) == 1
    assert not [q for q in sql if 'FROM "tenants_tenant"' in q]
    assert sum('FROM "rewards_account"' in q for q in sql) == 1  # the member's account, locked with the member


def test_me_shows_a_tier_policy_change_at_once_though_it_reads_the_policy_from_the_cache(tenant):
    member = MemberFactory(tenant=tenant)
    tier_ladder(tenant)
    year_ago = (timezone.now() - timedelta(days=370)).date().replace(day=1)
    QualifyingPoints.objects.create(tenant=tenant, member=member, month=year_ago, points=700)
    QualifyingPoints.objects.create(tenant=tenant, member=member, month=timezone.now().date().replace(day=1), points=50)
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/me").json()["tier"]["qualifyingPoints"] == 750  # lifetime; the policy now cached

    tier_policy_update(tenant=tenant, qualification="ROLLING", window_months=3)

    assert client.get("/api/v1/me").json()["tier"]["qualifyingPoints"] == 50
