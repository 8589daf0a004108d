"""Member tokens (JWT): only an unexpired token, signed with the platform's key, for the
audience and issuer, naming an active member of the tenant it names, gets in."""

import base64
import json
import time
import uuid

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from rewards import services
from rewards.models import Member
from rewards.tokens import ALGORITHM, member_token_decode, member_token_encode
from tests.core.shapes import assert_error
from tests.factories import MemberFactory, member_claims

pytestmark = pytest.mark.django_db

OTHER_SIGNING_KEY = "another-signing-key-that-is-long-enough-for-hs256"


claims_for = member_claims


def forge(member, *, key: str | None = None, **overrides) -> str:
    return jwt.encode(claims_for(member, **overrides), key or settings.MEMBER_TOKEN_SIGNING_KEY, algorithm=ALGORITHM)


def me(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v1/me")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_an_issued_token_gets_the_member_in(member):
    token, _ = services.member_token_issue(member=member)

    response = me(token)

    assert response.status_code == 200, response.json()
    assert response.json()["memberRef"] == member.external_ref


def test_a_token_forged_with_the_real_key_and_valid_claims_gets_in(member):
    # The forging below is sound: each refused token differs from this one by one thing.
    response = me(forge(member))

    assert response.status_code == 200, response.json()
    assert response.json()["id"] == str(member.pk)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": int(time.time()) - 10, "iat": int(time.time()) - 1000}, "token_expired"),
        ({"aud": "someone-else"}, "invalid_token"),
        ({"iss": "another-issuer"}, "invalid_token"),
        ({"tid": None}, "invalid_token"),
        ({"exp": None}, "invalid_token"),
        ({"sub": "not-a-uuid"}, "invalid_token"),
        ({"sub": str(uuid.uuid4())}, "invalid_token"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer", "no-tenant", "no-expiry", "bad-subject", "unknown-member"],
)
def test_a_token_with_a_bad_claim_is_401(member, overrides, code):
    assert_error(me(forge(member, **overrides)), 401, code=code)


def test_an_expired_token_from_the_issuer_is_401(member, settings):
    settings.MEMBER_TOKEN_TTL = -settings.MEMBER_TOKEN_TTL
    token, _ = member_token_encode(tenant_id=member.tenant_id, member_id=member.pk)

    assert_error(me(token), 401, code="token_expired")


def test_a_token_signed_with_another_key_is_401(member):
    assert_error(me(forge(member, key=OTHER_SIGNING_KEY)), 401, code="invalid_token")


def test_a_tampered_payload_with_the_original_signature_is_401(tenant, member):
    # given a real token, and another member of the same tenant
    other = MemberFactory(tenant=tenant)
    token, _ = services.member_token_issue(member=member)
    header, _, signature = token.split(".")

    # when its payload is rewritten to name the other member, keeping the signature
    claims = member_token_decode(token)
    claims["sub"] = str(other.pk)
    tampered = ".".join([header, b64url(json.dumps(claims).encode()), signature])

    # then it is refused
    assert_error(me(tampered), 401, code="invalid_token")


def test_a_token_re_signed_for_another_tenant_is_401(member, other_tenant):
    # The member exists and the signature is valid, but the member is not the named tenant's.
    token = forge(member, tid=str(other_tenant.pk))

    assert_error(me(token), 401, code="invalid_token")


def test_an_unsigned_token_is_401(member):
    token = jwt.encode(claims_for(member), key=None, algorithm="none")

    assert_error(me(token), 401, code="invalid_token")


def test_a_token_of_a_member_no_longer_active_is_401(member):
    token, _ = services.member_token_issue(member=member)
    services.member_update(member=member, status=Member.Status.SUSPENDED)

    assert_error(me(token), 401, code="invalid_token")


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-jwt"])
def test_a_malformed_bearer_header_is_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    assert_error(client.get("/api/v1/me"), 401)


def test_me_needs_a_member_token(api_client):
    assert_error(APIClient().get("/api/v1/me"), 401, code="not_authenticated")
    assert_error(api_client.get("/api/v1/me"), 403, code="permission_denied")


def test_a_member_token_cannot_call_tenant_endpoints(member_client, member):
    response = member_client.get(f"/api/v1/members/{member.external_ref}")

    assert_error(response, 403, code="permission_denied")
