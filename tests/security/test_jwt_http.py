"""Member tokens over HTTP (GET /api/v1/me): every forged, stale or misdirected token is a 401
in the API's error shape, never a 200 and never a 500. The WebSocket twin of these cases is in
tests/realtime/test_consumer.py."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from rest_framework.test import APIClient

from rewards.models import Member
from rewards.services import member_token_issue, member_update
from tenants.models import Tenant
from tests.core.shapes import assert_error
from tests.factories import MemberFactory, member_claims

ME = "/api/v1/me"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(member, **overrides) -> dict:
    return member_claims(member, **{"exp": int(time.time()) + 600, **overrides})


def _signed(claims: dict, *, key=None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, settings.MEMBER_TOKEN_SIGNING_KEY if key is None else key, algorithm=algorithm)


def _unsigned(claims: dict, *, alg: str) -> str:
    """A token whose header claims `alg` (none, None, NONE...) and carries no signature."""
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _rsa_private_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _forged(kind: str, member, other_member) -> str:
    now = int(time.time())
    if kind == "alg none":
        return _unsigned(_claims(member), alg="none")
    if kind == "alg None, capitalised":
        return _unsigned(_claims(member), alg="None")
    if kind == "alg none with the real signature kept":
        real = member_token_issue(member=member)[0]
        header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return ".".join([header, *real.split(".")[1:]])
    if kind == "HS512 with the signing key":
        return _signed(_claims(member), algorithm="HS512")
    if kind == "RS256 with an attacker's key":
        return _signed(_claims(member), key=_rsa_private_key(), algorithm="RS256")
    if kind == "HS256 keyed with an RSA public key":
        # The classic confusion: a verifier that takes the key from the token's own algorithm
        # would accept an HMAC made with a public key the attacker knows.
        public_pem = (
            _rsa_private_key()
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(_claims(member)).encode())
        signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"
    if kind == "expired 1 s ago":
        return _signed(_claims(member, iat=now - 901, exp=now - 1))
    if kind == "no exp":
        return _signed(_claims(member, exp=None))
    if kind == "no iat":
        return _signed(_claims(member, iat=None))
    if kind == "no tid":
        return _signed(_claims(member, tid=None))
    if kind == "no sub":
        return _signed(_claims(member, sub=None))
    if kind == "wrong audience":
        return _signed(_claims(member, aud="someone-else"))
    if kind == "wrong issuer":
        return _signed(_claims(member, iss="someone-else"))
    if kind == "wrong key":
        return _signed(_claims(member), key="not-the-signing-key-but-long-enough-for-hs256-xx")
    if kind == "another tenant's id":
        return _signed(_claims(member, tid=str(other_member.tenant_id)))
    if kind == "another tenant's member under this tenant":
        return _signed(_claims(other_member, tid=str(member.tenant_id)))
    if kind == "tampered signature":
        header, payload, signature = member_token_issue(member=member)[0].split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        return f"{header}.{payload}.{flipped}"
    if kind == "tampered payload":
        header, _, signature = member_token_issue(member=member)[0].split(".")
        payload = _b64(json.dumps(_claims(other_member, tid=str(other_member.tenant_id))).encode())
        return f"{header}.{payload}.{signature}"
    if kind == "not yet valid":
        return _signed(_claims(member, nbf=now + 600))
    if kind == "garbage":
        return "not-a-jwt"
    if kind == "closed member":
        token = member_token_issue(member=member)[0]
        member_update(member=member, status=Member.Status.CLOSED)
        return token
    if kind == "suspended tenant":
        token = member_token_issue(member=member)[0]
        Tenant.objects.filter(pk=member.tenant_id).update(status=Tenant.Status.SUSPENDED)
        return token
    raise AssertionError(kind)


REFUSED = [
    "alg none",
    "alg None, capitalised",
    "alg none with the real signature kept",
    "HS512 with the signing key",
    "RS256 with an attacker's key",
    "HS256 keyed with an RSA public key",
    "expired 1 s ago",
    "no exp",
    "no iat",
    "no tid",
    "no sub",
    "wrong audience",
    "wrong issuer",
    "wrong key",
    "another tenant's id",
    "another tenant's member under this tenant",
    "tampered signature",
    "tampered payload",
    "not yet valid",
    "garbage",
    "closed member",
    "suspended tenant",
]


def _get_me(token: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(ME)


# The HS512 forgery reuses the (short, for HS512) test signing key on purpose.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("kind", REFUSED)
def test_a_refused_member_token_is_a_401_in_the_error_shape(kind, member, other_tenant):
    token = _forged(kind, member, MemberFactory(tenant=other_tenant))

    response = _get_me(token)

    assert_error(response, 401)


def test_an_expired_token_says_it_has_expired(member):
    now = int(time.time())
    response = _get_me(_signed(_claims(member, iat=now - 901, exp=now - 1)))

    assert_error(response, 401, code="token_expired")


def test_a_valid_token_is_a_200_for_its_own_member(member):
    response = _get_me(member_token_issue(member=member)[0])

    assert response.status_code == 200, response.content
    assert response.json()["memberRef"] == member.external_ref


def test_a_token_that_still_has_a_second_left_is_accepted(member):
    now = int(time.time())
    response = _get_me(_signed(_claims(member, exp=now + 2)))

    assert response.status_code == 200, response.content


def test_a_malformed_authorization_header_is_a_401(member):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer one two")

    assert_error(client.get(ME), 401)


def test_no_credentials_at_all_is_a_401(db):
    assert_error(APIClient().get(ME), 401)
