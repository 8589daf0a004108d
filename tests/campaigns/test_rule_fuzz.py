"""Fuzzed campaign rules posted to POST /api/v1/campaigns: never a server error; every 400
names the failing part of `ruleJson`.

Documents are mostly near-valid: a valid rule (SIMPLE or QUEST, with random conditions)
mutated at one spot (a wrong type, an unknown key, a missing key, a bad operator, a bad
variable, a huge number, deep nesting, a wide list, an odd string), plus valid rules (which
must be accepted) and arbitrary JSON. For a mutated document the error's `attr` must lie on
the mutated spot's own line: the spot itself, one of its parents, or inside what was put
there. Replacement values never spell a word the rule language knows (an event type, a
reward type, a catalog code): a valid-but-different word changes what the rule means, and
its error may rightly name another part (`reward.type: CASHBACK` makes `reward.points` the
unknown field).
"""

import copy
import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from campaigns import services
from campaigns.conditions import EVENT_VARS, OPERATORS
from core.api.casing import camel
from tests.core.shapes import assert_error_shape

pytestmark = pytest.mark.django_db

EXAMPLES = 2_400
HYPOTHESIS = {
    "deadline": None,
    "database": None,
    # Each example is an HTTP request against the database: a failure is reported unshrunk
    # rather than shrunk past the test timeout.
    "phases": [Phase.explicit, Phase.generate],
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}

ACTIONS = ("app.login", "app.open", "review.posted", "store.checkin")
POOL = "welcome-10"
TRANSACTION = "transaction.created"
# Words the rule language gives a meaning to: replacements never use them (see above).
KNOWN = {
    TRANSACTION,
    "action",
    "POINTS",
    "CASHBACK",
    "COUPON",
    POOL,
    *ACTIONS,
    *OPERATORS,
    "var",
    "type",
    "points",
    "multiplier",
    "maxPoints",
    "amount",
    "percent",
    "maxAmount",
    "pool",
    "trigger",
    "eventTypes",
    "actionCodes",
    "conditions",
    "reward",
    "quest",
    "steps",
    "actionCode",
    "eventType",
    "count",
    "withinDays",
}
# The parser refuses JSON nested deeper than 64 levels before any field is looked at (a 400
# naming no field): deep documents here stay below that, the condition language's own limit
# (12) is what they test.
MAX_JSON_DEPTH = 58


def mentions_known(value) -> bool:
    if isinstance(value, str):
        return value in KNOWN
    if isinstance(value, dict):
        return any(mentions_known(k) or mentions_known(v) for k, v in value.items())
    if isinstance(value, list):
        return any(mentions_known(v) for v in value)
    return False


# Values ------------------------------------------------------------------------------------------

# Any character: NUL and lone surrogates too (the parser refuses those, naming where they are).
odd_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=()), max_size=30)
odd_strings = st.one_of(
    odd_text,
    st.sampled_from(
        [
            "",
            " ",
            "\t\n",
            "\x00",
            "\ud800",
            "null",
            "true",
            "0",
            "-1",
            "1e400",
            "NaN",
            "Infinity",
            "2.5.1",
            "POINTS ",
            " action",
            "Action",
            "transaction.Created",
            "app login",
            "\u202eevil",
            "😀" * 40,
            "x" * 600,
            "a" * 65,
            "'; DROP TABLE campaigns_campaign; --",
            "{{var}}",
            "$ref",
            "__proto__",
            "event.amount",
            "member.cohorts",
        ]
    ),
).filter(lambda s: s not in KNOWN)
huge_numbers = st.one_of(
    st.sampled_from([10**15, 10**20, -(10**20), 2**31, 2**63, 2**64 + 1, 1e300, -1e300, 1e-7, 0.1 + 0.2, -1, 0, -0.0]),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.none(), st.booleans(), huge_numbers, odd_strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_strings, inner, max_size=4),
    max_leaves=10,
).filter(lambda v: not mentions_known(v))
keys = st.one_of(
    odd_strings,
    st.sampled_from(["extra", "Trigger", "REWARD", "action_codes", "max_points", "step", "$schema", "var2"]),
)


def of_another_type(value):
    """Values whose JSON type differs from `value`'s."""
    if isinstance(value, bool):
        return st.one_of(st.none(), huge_numbers, odd_strings, st.lists(scalars, max_size=3))
    if isinstance(value, (int, float)):
        return st.one_of(st.none(), st.booleans(), odd_strings, st.dictionaries(keys, scalars, max_size=2))
    if isinstance(value, str):
        return st.one_of(st.none(), st.booleans(), huge_numbers, st.lists(scalars, max_size=3))
    if isinstance(value, list):
        return st.one_of(
            st.none(), st.booleans(), huge_numbers, odd_strings, st.dictionaries(keys, scalars, max_size=2)
        )
    if isinstance(value, dict):
        return st.one_of(st.none(), st.booleans(), huge_numbers, odd_strings, st.lists(scalars, max_size=3))
    return st.one_of(st.booleans(), huge_numbers, odd_strings, st.lists(scalars, max_size=3), st.just({}))


# Valid rules ------------------------------------------------------------------------------------

plain_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
attribute_keys = st.from_regex(r"\A[A-Za-z0-9_-]{1,12}\Z")
variables = st.one_of(
    st.sampled_from([f"event.{name}" for name in EVENT_VARS]),
    st.sampled_from(["member.locale", "member.tier", "member.createdDaysAgo"]),
    st.builds(lambda obj, key: f"{obj}.{key}", st.sampled_from(["event.attributes", "event.payload"]), attribute_keys),
    attribute_keys.map(lambda key: f"member.attributes.{key}"),
)
numbers = st.one_of(st.integers(min_value=-(10**9), max_value=10**9), st.sampled_from([0.5, 12.25, -3.75, 99.99]))
literals = st.one_of(st.none(), st.booleans(), numbers, plain_text)


def var(name: str) -> dict:
    return {"var": name}


condition_leaves = st.one_of(
    st.booleans(),
    st.builds(lambda op, v, x: {op: [var(v), x]}, st.sampled_from(["==", "!="]), variables, literals),
    st.builds(lambda op, v, x: {op: [var(v), x]}, st.sampled_from(["<", "<=", ">", ">="]), variables, numbers),
    st.builds(lambda v, xs: {"in": [var(v), xs]}, variables, st.lists(literals, max_size=4)),
    st.builds(lambda x: {"in": [x, var("member.cohorts")]}, plain_text),
)
conditions = st.recursive(
    condition_leaves,
    lambda inner: st.one_of(
        st.builds(lambda op, cs: {op: cs}, st.sampled_from(["and", "or"]), st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"!": c}, inner),
        st.builds(lambda c: {"!": [c]}, inner),
    ),
    max_leaves=6,
)
positive = st.decimals(min_value="0.01", max_value="100", places=2)
amounts = st.one_of(
    st.decimals(min_value="0.01", max_value="100000", places=2).map(str),
    st.integers(min_value=1, max_value=10**6),
)
percents = st.one_of(positive.map(str), st.integers(min_value=1, max_value=100), st.just(12.5))
points = st.integers(min_value=1, max_value=100_000_000)


def reward_of(draw, *, purchase_only: bool, quest: bool) -> dict:
    kinds = ["points", "cashback", "coupon"] + (["multiplier", "percent"] if purchase_only and not quest else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "points":
        reward = {"type": "POINTS", "points": draw(points)}
        if draw(st.booleans()):
            reward["maxPoints"] = draw(points)
    elif kind == "multiplier":
        reward = {"type": "POINTS", "multiplier": draw(st.one_of(positive.map(str), st.sampled_from([2, 1.5])))}
        if draw(st.booleans()):
            reward["maxPoints"] = draw(points)
    elif kind == "cashback":
        reward = {"type": "CASHBACK", "amount": draw(amounts)}
    elif kind == "percent":
        reward = {"type": "CASHBACK", "percent": draw(percents)}
    else:
        reward = {"type": "COUPON", "pool": POOL}
    if reward["type"] == "CASHBACK" and draw(st.booleans()):
        reward["maxAmount"] = draw(amounts)
    return reward


@st.composite
def valid_rules(draw, *, with_conditions: bool = False) -> tuple[str, dict]:
    """A campaign type and a rule the API must accept."""
    if draw(st.booleans()):
        event_types = draw(
            st.sampled_from([[TRANSACTION], ["action"], ["action", TRANSACTION], [TRANSACTION, "action"]])
        )
        rule = {"trigger": {"eventTypes": event_types}}
        if "action" in event_types and draw(st.booleans()):
            rule["trigger"]["actionCodes"] = draw(st.lists(st.sampled_from(ACTIONS), unique=True, max_size=3))
        campaign_type, purchase_only = "SIMPLE", event_types == [TRANSACTION]
    else:
        codes = draw(st.lists(st.sampled_from(ACTIONS), unique=True, max_size=3))
        steps = []
        for code in codes:
            step = {"actionCode": code, "count": draw(st.integers(1, 1000))}
            if draw(st.booleans()):
                step["withinDays"] = draw(st.integers(1, 366))
            if draw(st.booleans()):
                step["eventType"] = "action"
            steps.append(step)
        if not steps or draw(st.booleans()):
            steps.insert(
                draw(st.integers(0, len(steps))), {"eventType": TRANSACTION, "count": draw(st.integers(1, 50))}
            )
        rule = {"quest": {"steps": steps}}
        campaign_type, purchase_only = "QUEST", False
    if with_conditions or draw(st.booleans()):
        rule["conditions"] = draw(conditions)
    rule["reward"] = reward_of(draw, purchase_only=purchase_only, quest=campaign_type == "QUEST")
    # Key order is not meaning: shuffle it, so that no check relies on it.
    return campaign_type, dict(draw(st.permutations(list(rule.items()))))


# Mutations --------------------------------------------------------------------------------------


def spots(value, path=(), *, condition=False):
    """Every (path, value, is_condition_node) in a document, the root included."""
    yield path, value, condition
    if isinstance(value, dict):
        for key, child in value.items():
            is_node = isinstance(child, (dict, bool))
            child_condition = (not path and key == "conditions") or (condition and key == "!" and is_node)
            yield from spots(child, (*path, key), condition=child_condition)
    elif isinstance(value, list):
        # The items of a condition's "and", "or" or "!" list are conditions themselves.
        listed = len(path) > 1 and path[0] == "conditions" and path[-1] in ("and", "or", "!")
        for i, child in enumerate(value):
            yield from spots(child, (*path, i), condition=listed)


def depth_of(value) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def put(doc, path, value):
    if not path:
        return value
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def get(doc, path):
    for part in path:
        doc = doc[part]
    return doc


def nested(depth: int, inner, *, condition: bool):
    for _ in range(depth):
        inner = {"!": inner} if condition else [inner]
    return inner


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# mutation -> which spots (path, value, is_condition_node) it applies to
MUTATIONS = {
    "wrong type": lambda path, value, condition: bool(path),
    "odd string": lambda path, value, condition: bool(path),
    "huge number": lambda path, value, condition: _is_number(value),
    "deep": lambda path, value, condition: bool(path),
    "unknown key": lambda path, value, condition: isinstance(value, dict),
    "drop key": lambda path, value, condition: isinstance(value, dict) and bool(value),
    "bad operator": lambda path, value, condition: condition and isinstance(value, dict),
    "bad variable": lambda path, value, condition: bool(path) and path[-1] == "var",
    "deep condition": lambda path, value, condition: condition,
    "wide condition": lambda path, value, condition: condition,
    "long list": lambda path, value, condition: isinstance(value, list) and path[-2:] == ("in", 1),
}
CONDITION_MUTATIONS = {"bad operator", "bad variable", "deep condition", "wide condition", "long list"}


@st.composite
def mutated_rules(draw) -> tuple[str, dict, tuple, str]:
    """A valid rule broken at one spot: (type, rule, the spot's path, how). The kind of
    mutation is drawn first, then a spot it applies to."""
    how = draw(st.sampled_from(list(MUTATIONS)))
    campaign_type, rule = draw(valid_rules(with_conditions=how in CONDITION_MUTATIONS))
    rule = copy.deepcopy(rule)
    fits = [
        (path, value, condition) for path, value, condition in spots(rule) if MUTATIONS[how](path, value, condition)
    ]
    if not fits:
        how = "wrong type"
        fits = [spot for spot in spots(rule) if MUTATIONS[how](*spot)]
    path, value, _ = draw(st.sampled_from(fits))
    depth_left = MAX_JSON_DEPTH - len(path)

    if how == "wrong type":
        rule = put(rule, path, draw(of_another_type(value)))
    elif how == "odd string":
        rule = put(rule, path, draw(odd_strings))
    elif how == "huge number":
        rule = put(rule, path, draw(huge_numbers))
    elif how == "deep":
        rule = put(rule, path, nested(draw(st.integers(2, depth_left)), draw(scalars), condition=False))
    elif how == "unknown key":
        key = draw(keys.filter(lambda k, v=value: k not in v))
        get(rule, path)[key] = draw(json_values)
    elif how == "drop key":
        del get(rule, path)[draw(st.sampled_from(sorted(value)))]
    elif how == "bad operator":
        ((_, args),) = value.items()
        operator = draw(st.one_of(odd_strings, st.sampled_from(["===", "AND", "&&", "not", "if", "in ", "<>", "!!"])))
        rule = put(rule, path, {operator: args})
    elif how == "bad variable":
        names = st.sampled_from(
            [
                "",
                "event",
                "event.",
                ".amount",
                "event..amount",
                "event.amount.cents",
                "event.colour",
                "event.attributes",
                "event.attributes.a b",
                "event.payload." + "k" * 65,
                "member",
                "member.attributes.",
                "member.email",
                "activity.spend.30d",
                "activity.points.9999d",
                "Event.amount",
                "member.cohorts",
            ]
        )
        rule = put(rule, path, draw(st.one_of(names, odd_strings, of_another_type(value))))
    elif how == "deep condition":
        inner = draw(st.sampled_from([value, True, {">": [var("event.amount"), 1]}]))
        levels = draw(st.integers(13, max(13, depth_left - depth_of(inner))))
        rule = put(rule, path, nested(levels, inner, condition=True))
    elif how == "wide condition":
        # Past the 200-part limit within this spot alone, so the error is inside it.
        rule = put(rule, path, {"or": [True] * draw(st.integers(210, 400))})
    elif how == "long list":
        rule = put(rule, path, list(range(draw(st.integers(1001, 1500)))))
    return campaign_type, rule, path, how


@st.composite
def arbitrary_rules(draw) -> tuple[str, object]:
    """Any JSON, or an object with the rule's keys holding anything."""
    campaign_type = draw(st.sampled_from(["SIMPLE", "QUEST"]))
    shaped = st.fixed_dictionaries(
        {},
        optional={
            "trigger": st.one_of(json_values, st.fixed_dictionaries({}, optional={"eventTypes": json_values})),
            "conditions": json_values,
            "reward": st.one_of(
                json_values, st.fixed_dictionaries({"type": json_values}, optional={"points": scalars})
            ),
            "quest": st.one_of(json_values, st.fixed_dictionaries({"steps": st.lists(json_values, max_size=3)})),
        },
    )
    return campaign_type, draw(st.one_of(json_values, shaped, st.dictionaries(keys, json_values, max_size=4)))


@st.composite
def documents(draw) -> tuple:
    """(kind, campaign type, rule, mutated spot, mutation): mostly near-valid rules."""
    kind = draw(st.sampled_from(["valid"] * 15 + ["mutated"] * 65 + ["arbitrary"] * 20))
    if kind == "valid":
        return (kind, *draw(valid_rules()), None, None)
    if kind == "mutated":
        return (kind, *draw(mutated_rules()))
    return (kind, *draw(arbitrary_rules()), None, None)


# The test --------------------------------------------------------------------------------------


def attr_of_spot(path) -> str:
    return camel(".".join(["rule_json", *(str(part) for part in path)]))


def relation(attr: str, spot: str) -> str | None:
    """Where `attr` lies from the mutated spot: at it, above it, inside it, or elsewhere (None)."""
    if attr == spot:
        return "at"
    if spot.startswith(attr + "."):
        return "above"
    if attr.startswith(spot + "."):
        return "inside"
    return None


def post(api_client, campaign_type: str, rule) -> object:
    body = {
        "name": "Fuzzed",
        "type": campaign_type,
        "startAt": "2030-01-01T00:00:00Z",
        "endAt": "2030-02-01T00:00:00Z",
        "ruleJson": rule,
    }
    # ensure_ascii keeps lone surrogates as escapes, the way a client would send them.
    return api_client.post("/api/v1/campaigns", json.dumps(body, ensure_ascii=True), content_type="application/json")


@pytest.fixture
def catalog(tenant):
    for code in ACTIONS:
        services.action_upsert(tenant=tenant, code=code)
    services.coupon_pool_create(tenant=tenant, code=POOL, name="Welcome")


def test_fuzzed_rules_are_201_or_a_400_naming_the_failing_part(api_client, tenant, catalog):
    statuses, modes, ways, relations, shown = Counter(), Counter(), Counter(), Counter(), {}

    @settings(max_examples=EXAMPLES, **HYPOTHESIS)
    @given(document=documents())
    # Near the parser's nesting limit; a null rule.
    @example(document=("arbitrary", "SIMPLE", nested(MAX_JSON_DEPTH, 1, condition=False), None, None))
    @example(document=("arbitrary", "QUEST", None, None, None))
    def run(document):
        mode, campaign_type, rule, path, how = document
        response = post(api_client, campaign_type, rule)
        statuses[response.status_code] += 1
        modes[mode] += 1
        assert response.status_code in (201, 400), (response.status_code, response.content[:2000], rule)
        if mode == "valid":
            assert response.status_code == 201, (response.json(), rule)
        if response.status_code == 201:
            assert response.json()["ruleJson"] == rule
            return
        body = response.json()
        assert_error_shape(body)
        attr = body["errors"][0]["attr"]
        assert isinstance(attr, str) and (attr == "ruleJson" or attr.startswith("ruleJson.")), (body, rule)
        if mode == "mutated":
            ways[how] += 1
            where = relation(attr, attr_of_spot(path))
            assert where is not None, (how, attr_of_spot(path), body, rule)
            relations[where] += 1
            shown.setdefault(how, (attr, body["errors"][0]["detail"][:100]))

    run()
    print(
        f"\nPOST /campaigns: {statuses.total()} fuzzed rules, by status {dict(sorted(statuses.items()))}; "
        f"by kind {dict(modes)}"
    )
    print(f"400s of mutated rules by mutation {dict(ways.most_common())}; attr vs the spot {dict(relations)}")
    for how, (attr, detail) in sorted(shown.items()):
        print(f"  {how:15} e.g. {attr}: {detail}")
    assert statuses.total() >= 2_000
    assert set(statuses) <= {201, 400}
    assert statuses[201] > 100 and statuses[400] > 1_000, statuses


@pytest.mark.parametrize(
    ("rule", "attr"),
    [
        ('{"trigger": {"eventTypes": ["action"]}, "reward": {"type": "POINTS", "points": 1e400}}', "reward.points"),
        (
            '{"trigger": {"eventTypes": ["transaction.created"]}, "reward": {"type": "CASHBACK", "percent": -1e400}}',
            "reward.percent",
        ),
        (
            '{"trigger": {"eventTypes": ["action"]}, "conditions": {">": [{"var": "event.amount"}, 1e400]},'
            ' "reward": {"type": "POINTS", "points": 1}}',
            "conditions.>.1",
        ),
        (
            '{"trigger": {"eventTypes": ["action"]}, "conditions": {"in": [{"var": "event.mcc"}, [1, -1e999]]},'
            ' "reward": {"type": "POINTS", "points": 1}}',
            "conditions.in.1.1",
        ),
    ],
)
def test_numbers_beyond_a_float_are_400s_naming_them(api_client, catalog, rule, attr):
    """JSON can spell 1e400; Python reads it as infinity, which no rule accepts."""
    body = '{"name": "Huge", "type": "SIMPLE", "startAt": "2030-01-01T00:00:00Z", "ruleJson": ' + rule + "}"
    response = api_client.post("/api/v1/campaigns", body, content_type="application/json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["attr"] == f"ruleJson.{attr}"
