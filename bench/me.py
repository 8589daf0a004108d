"""`GET /api/v1/me` in-process: the cost of one request through the whole Django stack (the
middleware, the member token's verification, the member with its balance, expiring points and
tier), without a server or a network in the way, and the queries it makes. Run with
`bench/run.py me`; with BENCH_PROFILE=1 it also prints a pyinstrument profile of 300 calls.
The load benchmark (`bench/run.py load`, BENCH_LOAD_SCENARIOS=me) measures it under load."""

import uuid

from rest_framework.test import APIClient

from bench.common import queries_and_profile, report, timed
from rewards.services import member_create, member_token_issue, points_adjust
from tenants.services import tenant_create
from tiers.services import tier_create

MEMBERS = 50


def me_bench() -> None:
    print("me: GET /api/v1/me in-process (token, member, balance, expiring points, tier)")
    tenant, _ = tenant_create(name=f"bench-me-{uuid.uuid4().hex[:8]}")
    for rank, (tier_id, low) in enumerate((("bronze", 0), ("silver", 1_000), ("gold", 5_000))):
        tier_create(tenant=tenant, tier_id=tier_id, names={"en": tier_id.title()}, min_points=low, rank=rank)
    clients = []
    for i in range(MEMBERS):
        member = member_create(tenant=tenant, external_ref=f"me-{i}")
        points_adjust(tenant=tenant, member=member, points=100 * (i + 1), reason="bench", actor="bench")
        token, _ = member_token_issue(member=member)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        clients.append(client)

    def me(i: int) -> None:
        response = clients[i % MEMBERS].get("/api/v1/me")
        assert response.status_code == 200, response.content

    for i in range(MEMBERS):
        me(i)  # every member once: caches and connections made here, not in the figures
    report("GET /me (in-process)", timed(me, 2_000, "GET /me"))
    queries_and_profile(me, 300)
