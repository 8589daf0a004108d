"""Random event bodies posted to the events API: never a server error, always the one error shape.

Bodies mix plausible values (so that many events pass validation and reach the engine:
purchases, refunds of earlier purchases, repeats and reused eventIds) with anything JSON
can carry: wrong types, missing fields, huge numbers, odd and unstorable characters,
extra keys, and bodies that are not objects or not JSON at all.
"""

import json
import re
import uuid
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from rewards.selectors import ledger_verify

pytestmark = pytest.mark.django_db

EVENTS_EXAMPLES = 500
BATCH_EXAMPLES = 200
HYPOTHESIS = {
    "deadline": None,
    "database": None,
    # Each example is an HTTP request against the database: a failure is reported unshrunk
    # rather than shrunk past the test timeout.
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

TYPES = ("transaction.created", "transaction.refunded", "member.created", "action")
FIELDS = (
    "eventId",
    "type",
    "occurredAt",
    "memberRef",
    "amount",
    "currency",
    "category",
    "mcc",
    "lineItems",
    "channel",
    "originalEventId",
    "locale",
    "attributes",
    "actionCode",
    "payload",
)
ITEM_FIELDS = ("sku", "amount", "category", "mcc")
FREE_FORM = ("attributes", "payload")  # the client's own JSON: any path below them
UNSTORABLE = ("null_characters", "surrogate_characters")  # name the key they hide in, whatever it is
CAMEL_SEGMENT = re.compile(r"^(\d+|[a-z][A-Za-z0-9]*)$")

# Every character, lone surrogates included (they arrive as \ud800 escapes in JSON).
odd_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=40)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**40), 10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_text
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=8
)
ids = st.one_of(
    st.sampled_from([f"e-{i}" for i in range(12)]), st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@+-]{0,130}\Z")
)
member_refs = st.one_of(
    st.sampled_from(["m-1", "m-2", "m-3"]), st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:@+-]{0,130}\Z")
)
money = st.one_of(
    st.decimals(min_value=-10, max_value=10**13, places=2, allow_nan=False).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "0",
            "0.00",
            "0.001",
            "1e400",
            "-1e400",
            "1E+2",
            " 12.50 ",
            "12,50",
            "\u0661\u0662\u066b\u0665",
            "NaN",
            "Infinity",
        ]
    ),
)
moments = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda at: at.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30T00:00:00Z", "now"]),
)
codes = st.one_of(st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,70}\Z"), st.sampled_from(["dining", "travel"]))
mccs = st.from_regex(r"\A\d{3,5}\Z")
locales = st.one_of(st.sampled_from(["en", "pt-BR", "", "en_US", "x" * 40]), odd_text)
line_items = st.lists(
    st.fixed_dictionaries(
        {"amount": money},
        optional={"sku": st.one_of(odd_text, json_values), "category": codes, "mcc": mccs},
    )
    | json_values,
    max_size=4,
)
# Anything a careless or hostile client might put in a field.
PLAUSIBLE = {
    "eventId": ids,
    "type": st.sampled_from(TYPES),
    "occurredAt": moments,
    "memberRef": member_refs,
    "amount": money,
    "currency": st.one_of(st.just("USD"), st.from_regex(r"\A[A-Z]{3}\Z"), st.sampled_from(["usd", "US", "USDX"])),
    "category": codes,
    "mcc": mccs,
    "lineItems": line_items,
    "channel": odd_text,
    "originalEventId": ids,
    "locale": locales,
    "attributes": st.dictionaries(odd_text, json_values, max_size=4),
    "actionCode": st.one_of(st.sampled_from(["app.login", "review.posted"]), odd_text),
    "payload": st.dictionaries(odd_text, json_values, max_size=4),
}
# What a well-behaved client sends: these mostly pass validation and reach the engine.
prices = st.decimals(min_value=5, max_value=500, places=2).map(str)
pool_ids = st.sampled_from([f"e-{i}" for i in range(12)])  # shared by purchases and refunds
VALID = {
    # Hypothesis favours simple values and would draw the same few UUIDs again and again.
    "eventId": st.one_of(st.builds(lambda: str(uuid.uuid4())), st.builds(lambda: str(uuid.uuid4())), pool_ids),
    "occurredAt": st.datetimes(timezones=st.timezones()).map(lambda at: at.isoformat()),
    "memberRef": st.sampled_from(["m-1", "m-2", "m-3"]),
    "amount": prices,
    "currency": st.sampled_from(["USD", "USD", "USD", "EUR"]),
    "category": st.sampled_from(["dining", "travel", "unknown"]),
    "mcc": st.sampled_from(["5812", "4511", "0000"]),
    "lineItems": st.lists(
        st.fixed_dictionaries(
            {"amount": st.decimals(min_value="0.01", max_value=1, places=2).map(str)},
            optional={"sku": st.text(max_size=10), "category": st.just("dining"), "mcc": st.just("5812")},
        ),
        max_size=4,
    ),
    "channel": st.sampled_from(["web", "store"]),
    "originalEventId": pool_ids,
    "locale": st.sampled_from(["en", "pt-BR", "", "en_US"]),
    "attributes": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    "actionCode": st.sampled_from(["app.login", "review.posted"]),
    "payload": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
}
SHAPES = {
    "transaction.created": (
        ("memberRef", "amount", "currency"),
        ("occurredAt", "category", "mcc", "lineItems", "channel"),
    ),
    "transaction.refunded": (("originalEventId",), ("amount", "memberRef", "occurredAt")),
    "member.created": (("memberRef",), ("locale", "attributes", "occurredAt")),
    "action": (("memberRef", "actionCode"), ("payload", "occurredAt")),
}


@st.composite
def event_bodies(draw) -> object:
    """A well-formed event, one with a few fields broken or missing, one of random fields,
    or not an object at all."""
    mode = draw(st.sampled_from(["valid"] * 3 + ["broken"] * 4 + ["random"] * 2 + ["not an object"]))
    if mode == "not an object":
        return draw(json_values)
    if mode == "random":
        names = draw(st.lists(st.sampled_from(FIELDS), unique=True))
        body = {name: draw(st.one_of(PLAUSIBLE[name], json_values)) for name in names}
    else:
        kind = draw(st.sampled_from(TYPES))
        required, optional = SHAPES[kind]
        body = {"type": kind, "eventId": draw(VALID["eventId"])}
        for name in (*required, *draw(st.lists(st.sampled_from(optional), unique=True))):
            body[name] = draw(VALID[name])
        if mode == "broken":
            for name in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True)):
                change = draw(st.sampled_from(["drop", "plausible", "anything"]))
                if change == "drop":
                    body.pop(name, None)
                else:
                    body[name] = draw(PLAUSIBLE[name] if change == "plausible" else json_values)
    if mode != "valid":
        body.update(draw(st.dictionaries(odd_text, json_values, max_size=2)))
    return body


def _encoded(body) -> str:
    # ensure_ascii keeps lone surrogates as escapes, the way a client would send them.
    return json.dumps(body, ensure_ascii=True)


raw_bodies = st.one_of(
    event_bodies().map(_encoded),
    event_bodies().map(_encoded),
    event_bodies().map(_encoded),
    st.sampled_from(["", "{", "[1,", "NaN", '{"amount": NaN}', '{"a": Infinity}', "[" * 100 + "]" * 100, "\ufeff{}"]),
    # Raw text as bytes: a lone surrogate becomes bytes that are not UTF-8, as a broken client sends.
    odd_text.map(lambda text: text.encode("utf-8", "surrogatepass")),
)


def _storable(value) -> bool:
    """No NUL and no lone surrogate in any key or string: the API refuses those outright."""
    if isinstance(value, str):
        return not re.search("[\x00\ud800-\udfff]", value)
    if isinstance(value, dict):
        return all(_storable(k) and _storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_storable(v) for v in value)
    return True


def _attr_names_a_field(error: dict, *, batch: bool = False) -> bool:
    """`attr` in the API's camelCase spelling, naming a field of the event (or the body as a
    whole): `amount`, `lineItems.0.amount`, `lineItems.nonFieldErrors`, `nonFieldErrors`...
    For a batch as a whole: `events` or `events.3`."""
    attr = error["attr"]
    if not isinstance(attr, str) or not attr:
        return False
    if error["code"] in UNSTORABLE:
        # Named by the key the character hides in, which may be a key the client made up.
        return True
    head, *rest = attr.split(".")
    if head == "nonFieldErrors":
        return not rest
    if batch:
        return head == "events" and (
            not rest or (len(rest) == 1 and (rest[0].isdigit() or rest[0] == "nonFieldErrors"))
        )
    if head not in FIELDS:
        return False
    if head in FREE_FORM or not rest:
        return True
    if head != "lineItems" or not all(CAMEL_SEGMENT.match(part) for part in rest):
        return False
    if rest == ["nonFieldErrors"]:
        return True
    return rest[0].isdigit() and (len(rest) == 1 or (len(rest) == 2 and rest[1] in (*ITEM_FIELDS, "nonFieldErrors")))


def _assert_errors_shape(errors: list) -> None:
    assert isinstance(errors, list) and errors, errors
    for error in errors:
        assert set(error) == {"code", "detail", "attr"}, error
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["detail"], str) and error["detail"]


def assert_well_formed(response, *, batch: bool = False) -> None:
    """No 5xx; every 4xx in the one error shape, validation errors naming their field."""
    assert response.status_code < 500, response.content[:2000]
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"type", "errors", "requestId"}, body
    assert body["type"] in ("validation_error", "client_error"), body
    assert isinstance(body["requestId"], str) and body["requestId"], body
    _assert_errors_shape(body["errors"])
    if body["type"] == "validation_error":
        for error in body["errors"]:
            assert _attr_names_a_field(error, batch=batch), error


def test_random_events_never_break_the_api(api_client, tenant):
    statuses = Counter()

    @settings(max_examples=EVENTS_EXAMPLES, **HYPOTHESIS)
    @given(raw=raw_bodies, dry_run=st.sampled_from(["", "", "", "?dryRun=true"]))
    def run(raw, dry_run):
        response = api_client.post(f"/api/v1/events{dry_run}", data=raw, content_type="application/json")
        assert_well_formed(response)
        statuses[response.status_code] += 1

    run()
    print(f"/events: {statuses.total()} bodies, by status {dict(sorted(statuses.items()))}")
    # Bodies reached the engine and were applied, replayed and refused, not only rejected at the door.
    assert {200, 201, 400, 409, 422} <= statuses.keys(), statuses
    report = ledger_verify(tenant=tenant)
    assert report.ok, report


batch_bodies = st.one_of(
    st.fixed_dictionaries({"events": st.lists(event_bodies(), min_size=1, max_size=6)}),
    st.fixed_dictionaries({"events": st.lists(event_bodies(), min_size=1, max_size=6)}),
    st.fixed_dictionaries({"events": st.lists(event_bodies(), min_size=1, max_size=6)}),
    st.fixed_dictionaries({"events": json_values}),
    json_values,
    st.just({"events": [{}] * 1001}),
)


def test_random_batches_never_break_the_api(api_client, tenant):
    outcomes = Counter()

    @settings(max_examples=BATCH_EXAMPLES, **HYPOTHESIS)
    @given(body=batch_bodies)
    def run(body):
        response = api_client.post("/api/v1/events:batch", data=_encoded(body), content_type="application/json")
        assert_well_formed(response, batch=True)
        events = body.get("events") if isinstance(body, dict) else None
        if not (
            isinstance(events, list)
            and 1 <= len(events) <= 1000
            and all(isinstance(e, dict) for e in events)
            and _storable(body)
        ):
            assert response.status_code == 400, response.json()
            return
        # A list of objects is always taken: each event gets its own result, whatever the others did.
        assert response.status_code == 200, response.json()
        answer = response.json()
        assert [r["index"] for r in answer["results"]] == list(range(len(events)))
        assert sum(answer["summary"].values()) == len(events)
        for result in answer["results"]:
            outcomes[result["status"]] += 1
            assert result["status"] in ("applied", "duplicate", "rejected", "invalid"), result
            if result["status"] == "invalid":
                assert result["httpStatus"] == 400
                _assert_errors_shape(result["errors"])
                assert all(_attr_names_a_field(error) for error in result["errors"]), result
            elif result["status"] == "applied":
                assert result["httpStatus"] == 201
            elif result["status"] == "duplicate" and result["httpStatus"] == 200:
                assert result["result"]["eventId"] == result["eventId"]
            else:
                # Refused now, or the replay of an earlier refusal.
                assert 400 <= result["httpStatus"] < 500
                _assert_errors_shape(result["result"]["errors"])

    run()
    print(f"/events:batch: {outcomes.total()} events in batches, by outcome {dict(outcomes)}")
    assert {"applied", "duplicate", "rejected", "invalid"} <= outcomes.keys(), outcomes
    report = ledger_verify(tenant=tenant)
    assert report.ok, report
