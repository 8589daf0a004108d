"""Members, adjustments, the ledger and member tokens over the API."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from rewards import services
from rewards.models import Member
from tests.core.shapes import assert_error
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

MEMBER_KEYS = {"id", "memberRef", "locale", "status", "attributes", "balance", "pending", "createdAt", "updatedAt"}
MEMBER_DETAIL_KEYS = MEMBER_KEYS | {"expiringSoon", "tier"}
TRANSFER_KEYS = {"id", "kind", "points", "amount", "balanceAfter", "reason", "reference", "explanation", "createdAt"}
# Member attributes are the tenant's own JSON: their keys are never re-cased.
ATTRIBUTES = {"snake_key": 1, "camelKey": {"inner_key": [1, {"deep_key": True}]}, "UPPER_CASE": "x"}


def refs(response) -> list[str]:
    return [m["memberRef"] for m in response.json()["results"]]


def test_create_member_answers_in_camel_case_and_keeps_attribute_keys(api_client, tenant):
    response = api_client.post(
        "/api/v1/members", {"memberRef": "cust-1", "locale": "pt-BR", "attributes": ATTRIBUTES}, format="json"
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == MEMBER_KEYS
    assert body["memberRef"] == "cust-1"
    assert body["status"] == "ACTIVE"
    assert body["balance"] == 0
    assert body["attributes"] == ATTRIBUTES
    assert Member.objects.get(tenant=tenant, external_ref="cust-1").attributes == ATTRIBUTES


def test_get_member_with_its_balance(api_client, tenant, member):
    services.points_adjust(tenant=tenant, member=member, points=42, reason="x", actor="test")

    response = api_client.get(f"/api/v1/members/{member.external_ref}")

    assert response.status_code == 200, response.json()
    assert set(response.json()) == MEMBER_DETAIL_KEYS
    assert response.json()["balance"] == 42
    assert response.json()["expiringSoon"] == {"points": 0, "withinDays": 30, "firstExpiry": None}
    assert response.json()["id"] == str(member.pk)


def test_expiring_soon_sums_the_spendable_lots_that_expire_within_30_days(api_client, tenant, member):
    # given lots expiring in 3, 10 and 45 days, one never, one spent and one still pending
    from rewards.models import EarnedLot

    for points in (100, 200, 400, 800, 1600, 3200):
        services.points_adjust(tenant=tenant, member=member, points=points, reason="x", actor="test")
    lots = list(EarnedLot.objects.filter(member=member).order_by("points"))
    now = timezone.now()
    soon, later, beyond, never, spent, pending = lots
    for lot, days in ((soon, 3), (later, 10), (beyond, 45), (spent, 5), (pending, 6)):
        lot.expires_at = now + timedelta(days=days)
    never.expires_at, spent.remaining, pending.pending_until = None, 0, now + timedelta(days=2)
    EarnedLot.objects.bulk_update(lots, ["expires_at", "remaining", "pending_until"])

    # then the member's detail counts the first two only, from the earliest
    body = api_client.get(f"/api/v1/members/{member.external_ref}").json()["expiringSoon"]
    assert body["points"] == 100 + 200 and body["withinDays"] == 30
    assert abs(parse_datetime(body["firstExpiry"]) - soon.expires_at) < timedelta(seconds=1)


def test_patch_member_changes_only_what_is_sent(api_client, member):
    response = api_client.patch(
        f"/api/v1/members/{member.external_ref}",
        {"status": "SUSPENDED", "attributes": {"tier_hint": "gold"}},
        format="json",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "SUSPENDED"
    assert response.json()["attributes"] == {"tier_hint": "gold"}
    member.refresh_from_db()
    assert member.status == Member.Status.SUSPENDED
    assert member.attributes == {"tier_hint": "gold"}
    assert member.locale == "en"


def test_patch_member_with_an_invalid_locale_changes_nothing(api_client, member):
    response = api_client.patch(
        f"/api/v1/members/{member.external_ref}", {"locale": "not a locale", "status": "CLOSED"}, format="json"
    )

    assert_error(response, 400, attr="locale")
    member.refresh_from_db()
    assert member.locale == "en"
    assert member.status == Member.Status.ACTIVE


def test_member_list_is_page_paginated_newest_first(api_client, tenant):
    # given five members created one after another
    created = [MemberFactory(tenant=tenant, external_ref=f"page-{i}").external_ref for i in range(5)]

    # when the list is walked two at a time
    first = api_client.get("/api/v1/members", {"pageSize": 2})
    second = api_client.get(first.json()["next"])
    third = api_client.get(second.json()["next"])

    # then the pages hold every member once, newest first
    assert first.status_code == 200, first.json()
    assert set(first.json()) == {"count", "next", "previous", "results"}
    assert first.json()["count"] == 5
    assert first.json()["previous"] is None
    assert third.json()["next"] is None
    assert refs(first) + refs(second) + refs(third) == list(reversed(created))
    assert set(first.json()["results"][0]) == MEMBER_KEYS


def test_member_list_filters(api_client, tenant, other_tenant):
    # given members of two tenants
    shop_1 = MemberFactory(tenant=tenant, external_ref="shop-1", locale="en")
    shop_2 = MemberFactory(tenant=tenant, external_ref="shop-2", locale="fr")
    MemberFactory(tenant=tenant, external_ref="web-1", locale="fr")
    services.member_update(member=shop_2, status=Member.Status.SUSPENDED)
    MemberFactory(tenant=other_tenant, external_ref="shop-9", locale="fr")

    def listed(**params) -> set[str]:
        response = api_client.get("/api/v1/members", params)
        assert response.status_code == 200, response.json()
        assert response.json()["count"] == len(response.json()["results"])
        return set(refs(response))

    # then each filter narrows the tenant's own members only
    assert listed() == {"shop-1", "shop-2", "web-1"}
    assert listed(status="SUSPENDED") == {"shop-2"}
    assert listed(memberRefPrefix="shop-") == {"shop-1", "shop-2"}
    assert listed(locale="fr") == {"shop-2", "web-1"}
    assert listed(memberRefPrefix="shop-", locale="fr") == {"shop-2"}
    assert listed(createdAfter=shop_2.created_at.isoformat()) == {"shop-2", "web-1"}
    assert listed(createdBefore=shop_2.created_at.isoformat()) == {shop_1.external_ref}
    assert_error(api_client.get("/api/v1/members", {"status": "NOPE"}), 400, attr="status")


def test_member_list_takes_any_offset_python_parses_and_refuses_an_unrepresentable_time(api_client, member):
    # PostgreSQL itself refuses offsets beyond 15:59; the filter hands it UTC
    far_offset = api_client.get("/api/v1/members", {"createdAfter": "2000-07-27T22:35:27-18:30"})
    assert far_offset.status_code == 200 and refs(far_offset) == [member.external_ref]
    before_year_one = api_client.get("/api/v1/members", {"createdAfter": "0001-01-01T00:00:00+05:00"})
    assert_error(before_year_one, 400, attr="createdAfter")


def test_adjustment_returns_the_transfer_and_the_balance(api_client, tenant, member):
    credit = api_client.post(
        f"/api/v1/members/{member.external_ref}/adjustments", {"points": 100, "reason": "welcome"}, format="json"
    )
    debit = api_client.post(
        f"/api/v1/members/{member.external_ref}/adjustments", {"points": -40, "reason": "fix"}, format="json"
    )

    assert credit.status_code == 201, credit.json()
    assert debit.status_code == 201, debit.json()
    assert set(credit.json()) == {"transfer", "balance"}
    transfer = debit.json()["transfer"]
    assert set(transfer) == TRANSFER_KEYS
    assert transfer["kind"] == "ADJUSTMENT"
    assert transfer["points"] == -40
    assert transfer["amount"] == 40
    assert transfer["balanceAfter"] == 60
    assert transfer["reason"] == "fix"
    assert transfer["reference"] == {"type": "adjustment", "id": f"api-key:{tenant.raw_api_key[:10]}"}
    assert debit.json()["balance"] == 60


def test_transfers_walk_by_cursor_without_gaps_or_duplicates(api_client, tenant, member):
    # given 120 transfers, posted one after another
    for i in range(120):
        services.points_adjust(tenant=tenant, member=member, points=1, reason=f"t-{i:03d}", actor="test")
    url = f"/api/v1/members/{member.external_ref}/transfers"

    # when the ledger is walked 50 at a time, with a new transfer arriving after the first page
    pages = [api_client.get(url, {"pageSize": 50})]
    services.points_adjust(tenant=tenant, member=member, points=1, reason="late", actor="test")
    while pages[-1].json()["next"]:
        pages.append(api_client.get(pages[-1].json()["next"]))

    # then every transfer that existed is seen once, newest first, and the late one not at all
    assert all(page.status_code == 200 for page in pages)
    assert [len(page.json()["results"]) for page in pages] == [50, 50, 20]
    seen = [t for page in pages for t in page.json()["results"]]
    assert [t["reason"] for t in seen] == [f"t-{i:03d}" for i in reversed(range(120))]
    assert len({t["id"] for t in seen}) == 120
    assert [t["balanceAfter"] for t in seen] == list(range(120, 0, -1))
    assert pages[0].json()["previous"] is None
    assert pages[1].json()["previous"] is not None
    assert set(seen[0]) == TRANSFER_KEYS
    # and starting over shows the late transfer first
    assert api_client.get(url).json()["results"][0]["reason"] == "late"


def test_member_token_reaches_me_and_my_transfers(api_client, tenant, member):
    # given a member with transfers, and another member of the same tenant with its own
    services.points_adjust(tenant=tenant, member=member, points=15, reason="mine", actor="test")
    other = MemberFactory(tenant=tenant)
    services.points_adjust(tenant=tenant, member=other, points=99, reason="theirs", actor="test")

    # when the tenant's backend gets a token for the member
    issued = api_client.post(f"/api/v1/members/{member.external_ref}/token")

    # then the member's app sees its own profile and ledger with it
    assert issued.status_code == 201, issued.json()
    assert set(issued.json()) == {"token", "tokenType", "expiresAt"}
    assert issued.json()["tokenType"] == "Bearer"
    expires_at = parse_datetime(issued.json()["expiresAt"])
    assert timezone.now() < expires_at <= timezone.now() + timedelta(minutes=16)
    app = APIClient()
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.json()['token']}")
    me = app.get("/api/v1/me")
    assert me.status_code == 200, me.json()
    assert me.json()["memberRef"] == member.external_ref
    assert me.json()["balance"] == 15
    transfers = app.get("/api/v1/me/transfers")
    assert transfers.status_code == 200, transfers.json()
    assert [t["reason"] for t in transfers.json()["results"]] == ["mine"]


def test_no_token_for_a_member_who_is_not_active(api_client, member):
    services.member_update(member=member, status=Member.Status.SUSPENDED)

    response = api_client.post(f"/api/v1/members/{member.external_ref}/token")

    assert_error(response, 422, code="member_inactive", attr="memberRef")
