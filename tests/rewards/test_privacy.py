"""Member erasure and export (privacy requests) over the API."""

import json

import pytest
from auditlog.models import LogEntry
from django.db import connection
from rest_framework.test import APIClient

from rewards import services
from rewards.models import InboundEvent, Member, OutboxEvent
from rewards.selectors import ledger_verify
from tenants.selectors import limits_effective
from tenants.services import limit_upsert
from tenants.webhooks import webhook_deliveries_enqueue, webhook_endpoint_create
from tests.core.shapes import assert_error
from tests.factories import OperatorFactory
from tests.redemptions.helpers import partner_config, reward

pytestmark = pytest.mark.django_db

REF = "alice-4471"
EMAIL = "alice.liddell@example.org"
NAME = "Alice Liddell"
PHONE = "+44 20 7946 0958"


def tables_containing(needle: str) -> dict[str, int]:
    """Every table of the database with rows whose text form contains `needle`."""
    found = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT count(*) FROM {quoted} t WHERE t::text ILIKE %s", [f"%{needle}%"])
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


def purchase(event_id: str, amount: str = "40.00", **extra) -> dict:
    return {
        "type": "transaction.created",
        "eventId": event_id,
        "memberRef": REF,
        "amount": amount,
        "currency": "USD",
        "occurredAt": "2026-11-20T10:00:00Z",
        **extra,
    }


@pytest.fixture
def history(api_client, tenant, settings):
    """A member whose ref and personal data have travelled: a creation kept for its
    Idempotency-Key, an update, events (one carrying the e-mail in its payload), an operator
    adjustment, a per-member limit, webhook deliveries of the outbound events."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    webhook_endpoint_create(tenant=tenant, url="http://127.0.0.1:9/hooks")
    created = api_client.post(
        "/api/v1/members",
        {"memberRef": REF, "locale": "en-GB", "attributes": {"name": NAME, "email": EMAIL}},
        format="json",
        HTTP_IDEMPOTENCY_KEY="create-alice",
    )
    assert created.status_code == 201, created.json()
    patched = api_client.patch(
        f"/api/v1/members/{REF}", {"attributes": {"name": NAME, "email": EMAIL, "phone": PHONE}}, format="json"
    )
    assert patched.status_code == 200, patched.json()
    for body in (
        purchase("p-1"),
        purchase("p-2", amount="10.00"),
        {"type": "action", "eventId": "a-1", "memberRef": REF, "actionCode": "app.login", "payload": {"by": EMAIL}},
        {"type": "transaction.refunded", "eventId": "r-1", "originalEventId": "p-2"},
    ):
        response = api_client.post("/api/v1/events", body, format="json")
        assert response.status_code in (200, 201), response.json()
    adjusted = api_client.post(f"/api/v1/members/{REF}/adjustments", {"points": 7, "reason": "goodwill"}, format="json")
    assert adjusted.status_code == 201, adjusted.json()
    limit_upsert(tenant=tenant, scope="USER", member_ref=REF, max_per_day=10_000)
    partner_config(tenant, "http://127.0.0.1:9/partner")  # fulfilment is not run here
    item = reward(tenant, point_cost=5, stock=3)
    redeemed = api_client.post(
        "/api/v1/redemptions", {"memberRef": REF, "itemId": str(item.pk)}, format="json", HTTP_IDEMPOTENCY_KEY="r-1"
    )
    assert redeemed.status_code == 201, redeemed.json()
    from rewards.relay import envelope

    for event in OutboxEvent.objects.filter(tenant=tenant, member_ref=REF):
        webhook_deliveries_enqueue(tenant_id=tenant.pk, envelope=envelope(event))
    member = Member.objects.get(tenant=tenant, external_ref=REF)
    for needle in (REF, EMAIL, NAME):
        assert tables_containing(needle), f"the setup should have spread {needle!r}"
    return member


def test_erasure_leaves_no_trace_of_the_person_and_keeps_the_ledger(api_client, tenant, history):
    balance_before = api_client.get(f"/api/v1/members/{REF}").json()["balance"]
    token, _ = services.member_token_issue(member=history)
    member_app = APIClient()
    member_app.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert member_app.get("/api/v1/me").status_code == 200

    response = api_client.delete(f"/api/v1/members/{REF}")

    assert response.status_code == 204
    for needle in (REF, EMAIL, NAME, PHONE):
        assert tables_containing(needle) == {}, needle
    erased = Member.objects.get(pk=history.pk)
    assert erased.external_ref.startswith("erased-")
    assert erased.attributes == {}
    assert erased.status == Member.Status.CLOSED
    assert api_client.get(f"/api/v1/members/{erased.external_ref}").json()["balance"] == balance_before
    assert ledger_verify(tenant=tenant).ok
    assert member_app.get("/api/v1/me").status_code == 401
    # What happened stays: the events, now under the opaque ref, and an audit entry saying who.
    assert InboundEvent.objects.filter(tenant=tenant, member_ref=erased.external_ref).count() == 4
    assert OutboxEvent.objects.filter(tenant=tenant, type="member.erased", member_ref=erased.external_ref).exists()
    entry = LogEntry.objects.filter(object_pk=str(erased.pk), additional_data__action="Member erased").get()
    assert entry.additional_data["actor"].startswith("api-key:")


def test_a_second_erasure_is_not_found_and_the_old_ref_is_free_again(
    api_client, tenant, history, django_capture_on_commit_callbacks
):
    assert limits_effective(tenant=tenant, member_ref=REF)["user"].source == "member"  # cached now
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client.delete(f"/api/v1/members/{REF}").status_code == 204
    erased_ref = Member.objects.get(pk=history.pk).external_ref

    assert_error(api_client.delete(f"/api/v1/members/{REF}"), 404, attr="memberRef")
    assert_error(api_client.delete(f"/api/v1/members/{erased_ref}"), 404, attr="memberRef")
    assert api_client.get(f"/api/v1/members/{REF}").status_code == 404
    again = api_client.post("/api/v1/members", {"memberRef": REF}, format="json")
    assert again.status_code == 201, again.json()
    assert again.json()["balance"] == 0
    assert limits_effective(tenant=tenant, member_ref=REF)["user"].source == "tenant"  # no inherited override


def test_another_tenants_member_is_not_erased(other_client, history):
    assert_error(other_client.delete(f"/api/v1/members/{REF}"), 404, attr="memberRef")
    assert Member.objects.get(pk=history.pk).external_ref == REF


def test_export_holds_the_members_data(api_client, tenant, history):
    response = api_client.get(f"/api/v1/members/{REF}/export")

    assert response.status_code == 200
    body = json.loads(b"".join(response.streaming_content))
    assert body["memberRef"] == REF
    sections = body["sections"]
    assert sections["profile"][0]["attributes"]["email"] == EMAIL
    member_account = next(a for a in sections["accounts"] if a["kind"] == "MEMBER")
    assert member_account["balance"] == api_client.get(f"/api/v1/members/{REF}").json()["balance"]
    kinds = sorted(t["kind"] for t in sections["transfers"])
    assert kinds == ["ADJUSTMENT", "EARN", "EARN", "REDEMPTION", "REVERSAL"]
    assert len(sections["lots"]) == 3
    assert "tiers.TierHistory" in sections and "campaigns.Incentive" in sections
    assert [r["points"] for r in sections["redemptions.Redemption"]] == [5]


def test_export_of_another_tenants_member_is_not_found(other_client, history):
    assert_error(other_client.get(f"/api/v1/members/{REF}/export"), 404, attr="memberRef")


@pytest.mark.parametrize(("role", "status"), [("VIEWER", 403), ("SUPPORT", 204)])
def test_operators_erase_as_their_role_allows(tenant, history, role, status):
    operator = APIClient()
    operator.force_authenticate(user=OperatorFactory(tenant=tenant, role=role).user)

    response = operator.delete(f"/api/v1/members/{REF}")

    assert response.status_code == status
    assert Member.objects.filter(tenant=tenant, external_ref=REF).exists() is (status == 403)


def test_an_erased_member_cannot_be_reopened(api_client, tenant, history):
    assert api_client.delete(f"/api/v1/members/{REF}").status_code == 204
    erased_ref = Member.objects.get(pk=history.pk).external_ref

    response = api_client.patch(f"/api/v1/members/{erased_ref}", {"status": "ACTIVE"}, format="json")

    assert_error(response, 422, code="member_inactive", attr="memberRef")
    assert Member.objects.get(pk=history.pk).status == Member.Status.CLOSED
    assert_error(api_client.post(f"/api/v1/members/{erased_ref}/token"), 422, code="member_inactive")
