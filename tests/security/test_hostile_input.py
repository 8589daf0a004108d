"""Hostile bodies on the JSON API: too large (413) or nested too deep (400) is refused once, in
the parser, for every endpoint, in the one error shape and before anything is written; and
read-only fields sent to the write endpoints (mass assignment) never reach the row."""

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from campaigns import services as campaign_services
from campaigns.models import Campaign
from catalog.models import Item
from core.api.parsers import CamelCaseJSONParser, RequestBodyTooLarge, _body_within_limit
from rewards.models import Member
from tenants.models import WebhookEndpoint
from tests.core.shapes import assert_error
from tests.factories import MemberFactory

MEMBERS = "/api/v1/members"


# Body size ----------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_a_413_and_creates_nothing(api_client, settings):
    settings.API_MAX_BODY_BYTES = 2048
    body = {"memberRef": "big", "attributes": {"padding": "x" * 4096}}

    response = api_client.post(MEMBERS, body, format="json")

    assert_error(response, 413, code="request_too_large", attr=None)
    assert "2048 bytes" in response.json()["errors"][0]["detail"]
    assert not Member.objects.filter(external_ref="big").exists()


def test_a_body_within_the_limit_goes_through(api_client, settings):
    settings.API_MAX_BODY_BYTES = 2048
    body = {"memberRef": "small", "attributes": {"padding": "x" * 1500}}

    response = api_client.post(MEMBERS, body, format="json")

    assert response.status_code == 201, response.content


def test_the_default_limit_is_one_mebibyte(api_client):
    response = api_client.post(MEMBERS, {"memberRef": "huge", "attributes": {"p": "x" * (1024 * 1024)}}, format="json")

    assert_error(response, 413, code="request_too_large")


def test_a_body_longer_than_its_declared_length_is_still_cut_at_the_limit(api_client, settings):
    """The limit counts the bytes read, not only what Content-Length claims."""
    settings.API_MAX_BODY_BYTES = 100

    class Stream:
        def __init__(self, data):
            self.data = data

        def read(self, size):
            return self.data[:size]

    with pytest.raises(RequestBodyTooLarge):
        _body_within_limit(Stream(b"x" * 500), {}, 100)
    assert _body_within_limit(Stream(b"x" * 100), {}, 100).read() == b"x" * 100


def test_a_member_token_request_is_limited_too(member_client, settings):
    settings.API_MAX_BODY_BYTES = 64

    response = member_client.post(
        "/api/v1/redemptions", {"itemId": "x" * 200}, format="json", HTTP_IDEMPOTENCY_KEY="big-body"
    )

    assert_error(response, 413, code="request_too_large")


# Depth --------------------------------------------------------------------------------------


def nested(depth: int):
    """`depth` levels of objects around a number."""
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_json_nested_past_the_limit_is_a_400_naming_the_problem(api_client, settings):
    settings.API_MAX_JSON_DEPTH = 8
    # The body itself is level 1 and attributes level 2: 8 levels inside attributes is 9 in all.
    response = api_client.post(MEMBERS, {"memberRef": "deep", "attributes": nested(8)}, format="json")

    body = assert_error(response, 400)
    assert "nest deeper than 8 levels" in body["errors"][0]["detail"]
    assert not Member.objects.filter(external_ref="deep").exists()


def test_json_at_the_limit_is_accepted(api_client, settings):
    settings.API_MAX_JSON_DEPTH = 8

    response = api_client.post(MEMBERS, {"memberRef": "deep", "attributes": nested(7)}, format="json")

    assert response.status_code == 201, response.content


def test_json_deeper_than_python_can_recurse_is_a_400_not_a_500(api_client):
    raw = "[" * 100_000 + "]" * 100_000

    response = api_client.generic("POST", MEMBERS, raw, content_type="application/json")

    body = assert_error(response, 400)
    assert "nest deeper" in body["errors"][0]["detail"]


# Mass assignment ----------------------------------------------------------------------------

FOREIGN_ID = str(uuid.uuid4())
SERVER_OWNED = {
    "id": FOREIGN_ID,
    "tenant": FOREIGN_ID,
    "tenantId": FOREIGN_ID,
    "createdAt": "2001-01-01T00:00:00Z",
    "updatedAt": "2001-01-01T00:00:00Z",
}


def test_member_create_ignores_read_only_fields(api_client, tenant, other_tenant):
    sent = {**SERVER_OWNED, "memberRef": "m-1", "balance": 1_000_000, "pending": 50, "expiringSoon": {"points": 9}}

    response = api_client.post(MEMBERS, sent, format="json")

    assert response.status_code == 201, response.content
    member = Member.objects.get(external_ref="m-1")
    assert member.tenant_id == tenant.pk
    assert str(member.pk) != FOREIGN_ID and member.created_at.year > 2001
    assert response.json()["balance"] == 0 and response.json()["pending"] == 0
    assert api_client.get(f"{MEMBERS}/m-1").json()["balance"] == 0


def test_member_patch_ignores_read_only_fields(api_client, tenant, other_tenant):
    member = MemberFactory(tenant=tenant, external_ref="m-2")
    before = Member.objects.get(pk=member.pk)
    sent = {**SERVER_OWNED, "memberRef": "renamed", "balance": 1_000_000, "pending": 50, "locale": "fr"}

    response = api_client.patch(f"{MEMBERS}/m-2", sent, format="json")

    assert response.status_code == 200, response.content
    after = Member.objects.get(pk=member.pk)
    assert (after.external_ref, after.tenant_id, after.created_at) == ("m-2", tenant.pk, before.created_at)
    assert response.json()["balance"] == 0
    assert after.locale == "fr"  # the writable field in the same body did apply
    assert not Member.objects.filter(external_ref="renamed").exists()


def test_catalog_item_create_and_patch_ignore_read_only_fields(api_client, tenant):
    sent = {
        **SERVER_OWNED,
        "itemId": FOREIGN_ID,
        "name": "Mug",
        "pointCost": 100,
        "stockQuantity": 5,
        "inStock": False,
        "memberPointCost": 1,
        "version": 77,
    }
    created = api_client.post("/api/v1/catalog/items", sent, format="json")
    assert created.status_code == 201, created.content
    item = Item.objects.get(tenant=tenant, name="Mug")
    assert (str(item.pk) != FOREIGN_ID, item.tenant_id, item.version, item.stock_quantity) == (True, tenant.pk, 1, 5)

    patched = api_client.patch(
        f"/api/v1/catalog/items/{item.pk}",
        {
            **SERVER_OWNED,
            "itemId": FOREIGN_ID,
            "stockQuantity": 1_000_000,
            "inStock": True,
            "pointCost": 120,
            "version": 1,  # the client's optimistic lock: the version it edits, not one it sets
        },
        format="json",
    )

    assert patched.status_code == 200, patched.content
    after = Item.objects.get(pk=item.pk)
    # Stock moves only through stock movements; the id, tenant and creation time never move.
    assert (after.stock_quantity, after.tenant_id, after.created_at, after.point_cost) == (
        5,
        tenant.pk,
        item.created_at,
        120,
    )
    assert after.version == 2  # the server's count of edits, not the client's 77


def test_campaign_create_and_update_ignore_status_version_and_stats(api_client, tenant):
    campaign_services.action_upsert(tenant=tenant, code="app.login", description="Login")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    body = {
        **SERVER_OWNED,
        "name": "Login bonus",
        "type": "SIMPLE",
        "startAt": start.isoformat(),
        "endAt": (start + timedelta(days=30)).isoformat(),
        "ruleJson": {
            "trigger": {"eventTypes": ["action"], "actionCodes": ["app.login"]},
            "reward": {"type": "POINTS", "points": 50},
        },
        "status": "ACTIVE",
        "version": 99,
        "stats": {"rewardsIssued": 1000, "amountIssued": "1000"},
        "activatedAt": "2001-01-01T00:00:00Z",
    }

    created = api_client.post("/api/v1/campaigns", body, format="json")

    assert created.status_code == 201, created.content
    campaign = Campaign.objects.get(tenant=tenant)
    assert (campaign.status, campaign.version, str(campaign.pk) != FOREIGN_ID) == (Campaign.Status.DRAFT, 1, True)
    assert created.json()["stats"]["rewardsIssued"] == 0

    updated = api_client.put(f"/api/v1/campaigns/{campaign.pk}", {**body, "name": "Renamed"}, format="json")

    assert updated.status_code == 200, updated.content
    after = Campaign.objects.get(pk=campaign.pk)
    assert (after.name, after.status, after.tenant_id, after.created_at) == (
        "Renamed",
        Campaign.Status.DRAFT,
        tenant.pk,
        campaign.created_at,
    )
    assert after.version != 99


def test_webhook_create_and_patch_ignore_the_secret_and_ids(api_client, tenant, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    sent = {**SERVER_OWNED, "webhookId": FOREIGN_ID, "url": "http://127.0.0.1:9/hook", "secret": "whsec_mine"}

    created = api_client.post("/api/v1/webhooks", sent, format="json")

    assert created.status_code == 201, created.content
    endpoint = WebhookEndpoint.objects.get(tenant=tenant)
    assert str(endpoint.pk) != FOREIGN_ID and endpoint.secret != "whsec_mine"
    secret = endpoint.secret

    patched = api_client.patch(
        f"/api/v1/webhooks/{endpoint.pk}",
        {**SERVER_OWNED, "webhookId": FOREIGN_ID, "secret": "whsec_mine", "description": "CRM"},
        format="json",
    )

    assert patched.status_code == 200, patched.content
    after = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert (after.secret, after.tenant_id, after.description, after.created_at) == (
        secret,
        tenant.pk,
        "CRM",
        endpoint.created_at,
    )


def test_a_view_that_takes_larger_bodies_says_so(settings):
    settings.API_MAX_BODY_BYTES = 16
    body = b'{"memberRef": "' + b"x" * 40 + b'"}'

    class Default:
        pass

    class Larger:
        max_body_bytes = 1024

    with pytest.raises(RequestBodyTooLarge):
        CamelCaseJSONParser().parse(io.BytesIO(body), parser_context={"view": Default()})
    parsed = CamelCaseJSONParser().parse(io.BytesIO(body), parser_context={"view": Larger()})
    assert parsed == {"member_ref": "x" * 40}
