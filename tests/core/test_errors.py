"""Bad requests get a 4xx in the one error shape, naming the field in camelCase, and write
nothing."""

import json

import pytest

from core.models import IdempotencyRecord
from rewards import services
from rewards.models import Account, Member, Transfer
from tenants.models import ApiKey, Limit, Tenant
from tests.core.shapes import assert_error

pytestmark = pytest.mark.django_db

JSON = "application/json"
MEMBERS = "/api/v1/members"
MEMBER = "/api/v1/members/{ref}"
ADJUST = "/api/v1/members/{ref}/adjustments"
LIMITS = "/api/v1/tenants/{tenant}/limits"
USER_LIMITS = "/api/v1/tenants/{tenant}/user-limits"
API_KEYS = "/api/v1/tenants/{tenant}/api-keys"
VALID_ADJUSTMENT = {"points": 5, "reason": "x"}

NUL_IN_ATTRIBUTES = '{"memberRef": "ok-1", "attributes": {"k": "\\u0000"}}'
SURROGATE_IN_ATTRIBUTES = '{"memberRef": "ok-1", "attributes": {"k": "\\ud800"}}'
SURROGATE_IN_STATUS = '{"memberRef": "ok-1", "status": "\\udfff"}'
NUL_IN_A_KEY = '{"memberRef": "ok-1", "attributes": {"\\u0000": 1}}'
TOO_DEEP = '{"memberRef": "ok-1", "attributes": {"a": ' + "[" * 100 + "]" * 100 + "}}"
FAR_TOO_DEEP = '{"memberRef": "ok-1", "attributes": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"
NOBODY = "/api/v1/members/nobody"

# (id, method, path, body, content type, status, code, attr); a str body is sent as is.
CASES = [
    ("malformed-json", "post", ADJUST, '{"points": 5, "reason": ', JSON, 400, "parse_error", None),
    ("trailing-garbage", "post", MEMBERS, '{"memberRef": "ok-1"} x', JSON, 400, "parse_error", None),
    ("nan", "post", ADJUST, '{"points": NaN, "reason": "x"}', JSON, 400, "parse_error", None),
    ("form-body", "post", MEMBERS, "memberRef=ok-1", "application/x-www-form-urlencoded", 415, None, None),
    ("too-deep", "post", MEMBERS, TOO_DEEP, JSON, 400, "parse_error", None),
    ("far-too-deep", "post", MEMBERS, FAR_TOO_DEEP, JSON, 400, "parse_error", None),
    ("nul-in-attributes", "post", MEMBERS, NUL_IN_ATTRIBUTES, JSON, 400, "null_characters", "attributes.k"),
    ("nul-in-a-key", "post", MEMBERS, NUL_IN_A_KEY, JSON, 400, "null_characters", "attributes"),
    (
        "surrogate-in-attributes",
        "post",
        MEMBERS,
        SURROGATE_IN_ATTRIBUTES,
        JSON,
        400,
        "surrogate_characters",
        "attributes.k",
    ),
    ("surrogate-in-status", "post", MEMBERS, SURROGATE_IN_STATUS, JSON, 400, "surrogate_characters", "status"),
    ("not-an-object", "post", MEMBERS, [{"memberRef": "ok-1"}], JSON, 400, "invalid", "nonFieldErrors"),
    ("member-ref-missing", "post", MEMBERS, {"locale": "en"}, JSON, 400, "required", "memberRef"),
    ("member-ref-snake-case-wrong-type", "post", MEMBERS, {"member_ref": ["a"]}, JSON, 400, "invalid", "memberRef"),
    ("member-ref-invalid", "post", MEMBERS, {"memberRef": "a b"}, JSON, 400, "invalid_member_ref", "memberRef"),
    ("member-ref-duplicate", "post", MEMBERS, {"memberRef": "{ref}"}, JSON, 409, "member_exists", "memberRef"),
    ("attributes-list", "post", MEMBERS, {"memberRef": "a", "attributes": [1]}, JSON, 400, "not_a_dict", "attributes"),
    ("status-unknown", "post", MEMBERS, {"memberRef": "ok-1", "status": "VIP"}, JSON, 400, "invalid_choice", "status"),
    ("locale-invalid", "post", MEMBERS, {"memberRef": "ok-1", "locale": "not a locale"}, JSON, 400, None, "locale"),
    ("patch-status-unknown", "patch", MEMBER, {"status": "GONE"}, JSON, 400, "invalid_choice", "status"),
    ("patch-unknown-member", "patch", NOBODY, {"status": "CLOSED"}, JSON, 404, "member_not_found", "memberRef"),
    ("get-unknown-member", "get", NOBODY, None, JSON, 404, "member_not_found", "memberRef"),
    ("get-member-ref-with-nul", "get", "/api/v1/members/a%00b", None, JSON, 404, "member_not_found", "memberRef"),
    ("points-missing", "post", ADJUST, {"reason": "x"}, JSON, 400, "required", "points"),
    ("reason-missing", "post", ADJUST, {"points": 5}, JSON, 400, "required", "reason"),
    ("points-text", "post", ADJUST, {"points": "ten", "reason": "x"}, JSON, 400, "invalid", "points"),
    ("points-fraction", "post", ADJUST, {"points": 1.5, "reason": "x"}, JSON, 400, "invalid", "points"),
    ("points-boolean", "post", ADJUST, {"points": True, "reason": "x"}, JSON, 400, "invalid", "points"),
    ("points-null", "post", ADJUST, {"points": None, "reason": "x"}, JSON, 400, "null", "points"),
    ("points-zero", "post", ADJUST, {"points": 0, "reason": "x"}, JSON, 400, "zero", "points"),
    ("points-too-many", "post", ADJUST, {"points": 10**13, "reason": "x"}, JSON, 400, "max_value", "points"),
    ("overdraw", "post", ADJUST, {"points": -51, "reason": "x"}, JSON, 422, "insufficient_points", "points"),
    ("reason-blank", "post", ADJUST, {"points": 5, "reason": ""}, JSON, 400, "blank", "reason"),
    ("reason-too-long", "post", ADJUST, {"points": 5, "reason": "x" * 501}, JSON, 400, "max_length", "reason"),
    ("reason-with-nul", "post", ADJUST, '{"points": 5, "reason": "a\\u0000b"}', JSON, 400, "null_characters", "reason"),
    ("unknown-member", "post", NOBODY + "/adjustments", VALID_ADJUSTMENT, JSON, 404, "member_not_found", "memberRef"),
    ("limit-negative", "post", LIMITS, {"scope": "GLOBAL", "maxPerDay": -1}, JSON, 400, "min_value", "maxPerDay"),
    ("limit-huge", "post", LIMITS, {"scope": "GLOBAL", "maxTotal": 2**63}, JSON, 400, "max_value", "maxTotal"),
    ("limit-text", "post", LIMITS, {"scope": "GLOBAL", "maxPerDay": "lots"}, JSON, 400, "invalid", "maxPerDay"),
    ("limit-window-zero", "post", LIMITS, {"scope": "USER", "windowDays": 0}, JSON, 400, "min_value", "windowDays"),
    ("limit-scope-missing", "post", LIMITS, {"maxPerDay": 5}, JSON, 400, "required", "scope"),
    ("limit-scope-unknown", "post", LIMITS, {"scope": "PLANET"}, JSON, 400, "invalid_choice", "scope"),
    ("user-limit-member-ref-missing", "post", USER_LIMITS, {"maxPerDay": 5}, JSON, 400, "required", "memberRef"),
    ("user-limit-negative", "post", USER_LIMITS, {"memberRef": "v", "maxPerDay": -5}, JSON, 400, None, "maxPerDay"),
    ("api-key-name-too-long", "post", API_KEYS, {"name": "x" * 101}, JSON, 400, "max_length", "name"),
    ("unknown-route", "get", "/api/v1/nowhere", None, JSON, 404, "not_found", None),
    ("method-not-allowed", "put", MEMBER, {"status": "CLOSED"}, JSON, 405, "method_not_allowed", None),
]


def db_state() -> dict:
    return {
        "tenants": list(Tenant.objects.order_by("pk").values_list("pk", "slug", "status")),
        "members": list(
            Member.objects.order_by("pk").values_list("pk", "external_ref", "locale", "status", "attributes")
        ),
        "accounts": list(Account.objects.order_by("pk").values_list("pk", "balance")),
        "transfers": Transfer.objects.count(),
        "limits": list(
            Limit.objects.order_by("pk").values_list("pk", "scope", "member_ref", "max_per_day", "max_total")
        ),
        "keys": list(ApiKey.objects.order_by("pk").values_list("pk", "revoked_at")),
        # A refused request must not leave its Idempotency-Key claimed (stuck "in flight").
        "claimed_keys": IdempotencyRecord.objects.filter(status=IdempotencyRecord.Status.IN_FLIGHT).count(),
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "code", "attr"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_request_gets_one_error_shape_and_writes_nothing(
    api_client, tenant, member, method, path, body, content_type, status, code, attr
):
    # given a member with 50 points
    services.points_adjust(tenant=tenant, member=member, points=50, reason="float", actor="test")
    path = path.format(tenant=tenant.pk, ref=member.external_ref)
    if body is not None and not isinstance(body, str):
        body = json.dumps(body).replace("{ref}", member.external_ref)
    before = db_state()

    # when the bad request is sent (with an Idempotency-Key, whose claim must not stay behind)
    response = api_client.generic(
        method.upper(), path, body or "", content_type=content_type, HTTP_IDEMPOTENCY_KEY="bad-request-1"
    )

    # then it is refused in the one shape, naming the field, and nothing changed
    assert_error(response, status, code=code, attr=attr)
    assert db_state() == before


def test_every_validation_error_is_listed_with_its_field(api_client, member):
    response = api_client.post(f"/api/v1/members/{member.external_ref}/adjustments", {}, format="json")

    body = assert_error(response, 400)
    assert body["type"] == "validation_error"
    assert {(e["attr"], e["code"]) for e in body["errors"]} == {("points", "required"), ("reason", "required")}


def test_error_request_id_is_the_response_request_id(api_client):
    response = api_client.get("/api/v1/members/nobody")

    body = assert_error(response, 404)
    assert body["requestId"] == response.headers["X-Request-ID"]
