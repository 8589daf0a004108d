"""`Idempotency-Key` on POSTs, one request after another (the concurrent case is in
tests/rewards/test_concurrency.py)."""

import pytest
from rest_framework.test import APIClient

from core.models import IdempotencyRecord
from rewards import selectors
from rewards.models import Member, Transfer
from rewards.services import member_token_issue
from tests.core.shapes import assert_error
from tests.factories import MemberFactory
from tests.rewards.credit_helpers import PURCHASES, package, sandbox  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def member_app(member) -> APIClient:
    token, _ = member_token_issue(member=member)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def adjust(client, member_ref: str, body: dict, key: str):
    return client.post(f"/api/v1/members/{member_ref}/adjustments", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_retry_with_the_same_key_and_body_replays_the_first_response(api_client, tenant, member):
    first = adjust(api_client, member.external_ref, {"points": 30, "reason": "goodwill"}, "key-1")
    second = adjust(api_client, member.external_ref, {"points": 30, "reason": "goodwill"}, "key-1")

    assert first.status_code == 201, first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.status_code == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Transfer.objects.filter(tenant=tenant).count() == 1
    assert selectors.member_balance(member=member) == 30


def test_retry_of_a_member_creation_replays_it(api_client, tenant):
    first = api_client.post("/api/v1/members", {"memberRef": "once-1"}, format="json", HTTP_IDEMPOTENCY_KEY="m-1")
    second = api_client.post("/api/v1/members", {"memberRef": "once-1"}, format="json", HTTP_IDEMPOTENCY_KEY="m-1")

    assert first.status_code == 201, first.json()
    assert second.status_code == 201, second.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Member.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize(
    ("path_ref", "body"),
    [
        ("same", {"points": 31, "reason": "goodwill"}),
        ("same", {"points": 30, "reason": "other reason"}),
        ("another", {"points": 30, "reason": "goodwill"}),
    ],
    ids=["other-points", "other-reason", "other-member"],
)
def test_same_key_with_another_request_is_refused(api_client, tenant, member, path_ref, body):
    other = MemberFactory(tenant=tenant)
    adjust(api_client, member.external_ref, {"points": 30, "reason": "goodwill"}, "key-1")
    ref = member.external_ref if path_ref == "same" else other.external_ref

    response = adjust(api_client, ref, body, "key-1")

    assert_error(response, 422, code="idempotency_key_reused", attr="Idempotency-Key")
    assert Transfer.objects.filter(tenant=tenant).count() == 1
    assert selectors.member_balance(member=member) == 30
    assert selectors.member_balance(member=other) == 0


def test_keys_are_scoped_to_the_tenant(api_client, other_client, tenant, other_tenant, member):
    # given a member with the same memberRef in another tenant
    twin = MemberFactory(tenant=other_tenant, external_ref=member.external_ref)
    body = {"points": 30, "reason": "goodwill"}

    # when both tenants use the same key
    mine = adjust(api_client, member.external_ref, body, "shared-key")
    theirs = adjust(other_client, member.external_ref, body, "shared-key")

    # then each posts its own transfer, neither is a replay
    assert mine.status_code == 201, mine.json()
    assert theirs.status_code == 201, theirs.json()
    assert "Idempotent-Replayed" not in theirs.headers
    assert mine.json()["transfer"]["id"] != theirs.json()["transfer"]["id"]
    assert Transfer.objects.filter(tenant=tenant).count() == 1
    assert Transfer.objects.filter(tenant=other_tenant).count() == 1
    assert selectors.member_balance(member=member) == 30
    assert selectors.member_balance(member=twin) == 30


@pytest.mark.parametrize("key", ["", "   ", "k" * 256], ids=["empty", "blank", "too-long"])
def test_invalid_key_is_refused_before_anything_runs(api_client, tenant, member, key):
    response = adjust(api_client, member.external_ref, {"points": 30, "reason": "goodwill"}, key)

    assert_error(response, 400, code="invalid_idempotency_key", attr="Idempotency-Key")
    assert Transfer.objects.filter(tenant=tenant).count() == 0
    assert IdempotencyRecord.objects.count() == 0


def test_a_request_refused_by_validation_does_not_use_up_its_key(api_client, tenant, member):
    # given a request whose body is invalid
    refused = adjust(api_client, member.external_ref, {"points": 0, "reason": "goodwill"}, "key-2")
    assert refused.status_code == 400

    # when it is corrected and sent again with the same key
    response = adjust(api_client, member.external_ref, {"points": 5, "reason": "goodwill"}, "key-2")

    # then it runs
    assert response.status_code == 201, response.json()
    assert selectors.member_balance(member=member) == 5


def test_member_token_keys_are_scoped_to_the_member(api_client, tenant, package, sandbox):  # noqa: F811 - fixtures
    # given two members of one tenant, each with its app, and the tenant's backend
    alice, bob = MemberFactory(tenant=tenant), MemberFactory(tenant=tenant)
    apps = {member.pk: member_app(member) for member in (alice, bob)}
    body = {"packageId": str(package.pk), "paymentToken": "tok_approve"}

    # when all three send the same Idempotency-Key
    first = {pk: app.post(PURCHASES, body, format="json", HTTP_IDEMPOTENCY_KEY="same") for pk, app in apps.items()}
    backend = api_client.post(
        PURCHASES, {**body, "memberRef": alice.external_ref}, format="json", HTTP_IDEMPOTENCY_KEY="same"
    )
    replay = apps[alice.pk].post(PURCHASES, body, format="json", HTTP_IDEMPOTENCY_KEY="same")

    # then each is its own purchase, and only a member's own retry replays its first answer
    assert [r.status_code for r in first.values()] == [201, 201], [r.json() for r in first.values()]
    assert backend.status_code == 201, backend.json()
    assert "Idempotent-Replayed" not in backend.headers
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first[alice.pk].json()
    assert set(IdempotencyRecord.objects.filter(key="same").values_list("scope", flat=True)) == {
        f"member:{alice.pk}",
        f"member:{bob.pk}",
        f"tenant:{tenant.pk}",
    }
    assert selectors.member_balance(member=alice) == 2 * package.reward_points
    assert selectors.member_balance(member=bob) == package.reward_points
