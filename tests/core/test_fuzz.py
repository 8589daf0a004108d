"""Random JSON bodies never make the API fail on the server: the answer is below 500 and,
when it is an error, in the one error shape."""

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.validators import MEMBER_REF_PATTERN
from rewards import selectors, services
from tests.core.shapes import assert_error_shape

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)

# Any character, and often the ones databases and encoders choke on (NUL, lone surrogates).
text = st.text(
    alphabet=st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff", "a", "_"]),
    max_size=20,
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=10,
)
member_refs = st.from_regex(MEMBER_REF_PATTERN, fullmatch=True)
# Around zero and around the bigint columns' edge, where validation must stop what the database would refuse.
limit_numbers = (
    st.none()
    | st.integers(min_value=-5, max_value=10**6)
    | st.integers(min_value=2**63 - 3, max_value=2**63 + 3)
    | st.integers()
)
idempotency_keys = st.none() | st.sampled_from(["fuzz-1", "fuzz-2"])


def bodies(**fields):
    """Any JSON at all; or an object with some of the endpoint's fields holding plausible
    values (to get past validation to the database); or holding any JSON, perhaps with a
    stray key."""
    plausible = st.fixed_dictionaries({}, optional=fields)
    mixed = st.fixed_dictionaries({}, optional={name: values | json_values for name, values in fields.items()})
    with_strays = st.tuples(mixed, st.dictionaries(text, json_values, max_size=2)).map(
        lambda pair: {**pair[1], **pair[0]}
    )
    return json_values | plausible | mixed | with_strays


def post(client, path: str, body, key: str | None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = client.generic("POST", path, json.dumps(body), content_type="application/json", **headers)
    assert response.status_code < 500, (body, response.content)
    if response.status_code >= 400:
        assert_error_shape(response.json())
    else:
        assert isinstance(response.json(), dict)
    return response


@FUZZ
@given(
    body=bodies(
        memberRef=member_refs,
        member_ref=member_refs,
        locale=st.sampled_from(["en", "pt-BR", ""]),
        status=st.sampled_from(["ACTIVE", "SUSPENDED", "CLOSED"]),
        attributes=st.dictionaries(text, text | json_values, max_size=3),
    ),
    key=idempotency_keys,
)
# Bodies that once reached the database and failed there, kept as fixed examples.
@example(body={"memberRef": "nul-1", "attributes": {"k": "\x00"}}, key=None)
@example(body={"memberRef": "nul-2", "attributes": {"\x00": 1}}, key="fuzz-1")
@example(body={"memberRef": "surrogate-1", "attributes": {"k": ["\ud800"]}}, key=None)
@example(body={"memberRef": "surrogate-2", "status": "\udfff"}, key=None)
def test_fuzz_member_create(api_client, body, key):
    post(api_client, "/api/v1/members", body, key)


@pytest.fixture
def funded(tenant, member):
    services.points_adjust(tenant=tenant, member=member, points=100, reason="float", actor="test")
    return member


@FUZZ
@given(
    body=bodies(
        points=st.integers(min_value=-300, max_value=300) | st.sampled_from([0, 10**12, 10**12 + 1, -(10**12) - 1]),
        reason=text,
    ),
    key=idempotency_keys,
)
def test_fuzz_adjustments(api_client, tenant, funded, body, key):
    post(api_client, f"/api/v1/members/{funded.external_ref}/adjustments", body, key)

    report = selectors.ledger_verify(tenant=tenant)
    assert report.ok, (body, report)


@FUZZ
@given(
    body=bodies(
        scope=st.sampled_from(["GLOBAL", "USER"]),
        maxPerDay=limit_numbers,
        maxTotal=limit_numbers,
        windowDays=limit_numbers,
    )
)
@example(body={"scope": "GLOBAL", "maxPerDay": 2**63})
@example(body={"scope": "USER", "maxTotal": 10**20})
def test_fuzz_tenant_limits(api_client, tenant, body):
    post(api_client, f"/api/v1/tenants/{tenant.pk}/limits", body, None)


@FUZZ
@given(
    body=bodies(
        memberRef=member_refs,
        maxPerDay=limit_numbers,
        maxTotal=limit_numbers,
        windowDays=limit_numbers,
    )
)
@example(body={"memberRef": "vip-1", "maxPerDay": 2**63})
def test_fuzz_user_limits(api_client, tenant, body):
    post(api_client, f"/api/v1/tenants/{tenant.pk}/user-limits", body, None)
