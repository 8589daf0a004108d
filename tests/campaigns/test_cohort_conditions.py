"""A dynamic cohort's rule compiled to SQL (`cohort_queryset`) selects exactly the members
for whom the Python evaluator (`condition_evaluate` over `member_facts`) says it holds:
typed JSON comparisons, missing values, negation under SQL's three-valued logic, cohorts,
tier and activity windows."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from campaigns.cohorts import cohort_queryset, cohort_rule_check, member_facts
from campaigns.conditions import condition_evaluate
from campaigns.models import Cohort
from campaigns.rules import RuleInvalid
from rewards.models import InboundEvent, Member
from tests.campaigns.cohort_helpers import event_row, members_insert, memberships_insert

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CREATED = "transaction.created"
REFUNDED = "transaction.refunded"


def selected(tenant, rule, now=NOW) -> set[str]:
    return set(cohort_queryset(tenant=tenant, rule=rule, now=now).values_list("external_ref", flat=True))


def evaluated(tenant, rule, now=NOW) -> set[str]:
    members = Member.objects.filter(tenant=tenant)
    return {m.external_ref for m in members if condition_evaluate(rule, member_facts(m, now, rule=rule))}


@pytest.fixture
def cohorts(tenant):
    return {code: Cohort.objects.create(tenant=tenant, name=code, code=code, kind="STATIC") for code in ("c1", "c2")}


# The traps, one by one -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # a string is never a number: "20" is not below 18, nor above it
        ({"<": [{"var": "member.attributes.age"}, 18]}, {"num-10"}),
        ({">=": [{"var": "member.attributes.age"}, 18]}, {"num-20.5"}),
        # numbers compare exactly whatever their spelling; types never mix
        ({"==": [{"var": "member.attributes.age"}, 10.0]}, {"num-10"}),
        ({"==": [{"var": "member.attributes.age"}, "20"]}, {"str-20"}),
        ({"==": [{"var": "member.attributes.vip"}, True]}, {"bool"}),
        ({"==": [{"var": "member.attributes.vip"}, 1]}, set()),
        # a missing value (or JSON null) equals only null, and != keeps it (no SQL NULL lost)
        ({"==": [{"var": "member.attributes.age"}, None]}, {"null", "missing", "bool"}),
        ({"!=": [{"var": "member.attributes.age"}, 10]}, {"str-20", "num-20.5", "null", "missing", "bool", "list"}),
        (
            {"!": {"<": [{"var": "member.attributes.age"}, 18]}},
            {"str-20", "num-20.5", "null", "missing", "bool", "list"},
        ),
        ({"in": [{"var": "member.attributes.age"}, [None, "20"]]}, {"str-20", "null", "missing", "bool"}),
        # a list attribute is not indexed by a key "0", and is not equal to its element
        ({"==": [{"var": "member.attributes.age.0"}, 1]}, set()),
        ({"==": [{"var": "member.attributes.age"}, 1]}, set()),
        # tier is "" for everyone until the tiers app exists
        ({"==": [{"var": "member.tier"}, ""]}, {"num-10", "str-20", "num-20.5", "null", "missing", "bool", "list"}),
    ],
)
def test_typed_comparisons_and_missing_values(tenant, rule, expected):
    members_insert(
        tenant,
        [
            {"ref": "num-10", "attributes": {"age": 10}},
            {"ref": "str-20", "attributes": {"age": "20"}},
            {"ref": "num-20.5", "attributes": {"age": 20.5}},
            {"ref": "null", "attributes": {"age": None}},
            {"ref": "missing", "attributes": {}},
            {"ref": "bool", "attributes": {"vip": True}},
            {"ref": "list", "attributes": {"age": [1]}},
        ],
    )

    assert selected(tenant, rule) == expected
    assert evaluated(tenant, rule) == expected


def test_activity_windows_cohorts_and_age(tenant, cohorts):
    # given two members: one bought 120.00 (20.00 refunded) eight days ago and 5.00 just now, in c1
    alice, _ = members_insert(
        tenant,
        [
            {"ref": "alice", "created_at": NOW - timedelta(days=30)},
            {"ref": "bob", "created_at": NOW - timedelta(days=30) + timedelta(seconds=1)},
        ],
    )
    InboundEvent.objects.bulk_create(
        [
            event_row(
                tenant, member_ref="alice", type=CREATED, occurred_at=NOW - timedelta(days=8), amount=Decimal(120)
            ),
            event_row(
                tenant, member_ref="alice", type=REFUNDED, occurred_at=NOW - timedelta(days=8), amount=Decimal(20)
            ),
            event_row(tenant, member_ref="alice", type=CREATED, occurred_at=NOW, amount=Decimal(5), points=50),
            # rejected events and events that are exactly 7 days old do not count in 7 days
            event_row(tenant, member_ref="bob", type=CREATED, occurred_at=NOW, amount=Decimal(999), status="REJECTED"),
            event_row(tenant, member_ref="bob", type=CREATED, occurred_at=NOW - timedelta(days=7), amount=Decimal(1)),
        ]
    )
    memberships_insert(cohorts["c1"], [alice])

    cases = [
        ({"==": [{"var": "activity.spend.30d"}, 105]}, {"alice"}),
        ({"==": [{"var": "activity.spend.7d"}, 5]}, {"alice"}),
        ({"==": [{"var": "activity.spend.7d"}, 0]}, {"bob"}),
        ({">=": [{"var": "activity.transactions.30d"}, 2]}, {"alice"}),
        ({"==": [{"var": "activity.points.1d"}, 50]}, {"alice"}),
        ({"in": ["c1", {"var": "member.cohorts"}]}, {"alice"}),
        ({"!": {"in": ["c2", {"var": "member.cohorts"}]}}, {"alice", "bob"}),
        ({"==": [{"var": "member.createdDaysAgo"}, 30]}, {"alice"}),
        ({"==": [{"var": "member.createdDaysAgo"}, 29]}, {"bob"}),
        ({"==": [{"var": "member.locale"}, "en"]}, {"alice", "bob"}),
    ]
    for rule, expected in cases:
        assert selected(tenant, rule) == expected, rule
        assert evaluated(tenant, rule) == expected, rule


def test_only_the_tenants_own_members_are_selected(tenant, other_tenant):
    members_insert(tenant, [{"ref": "mine"}])
    members_insert(other_tenant, [{"ref": "theirs"}])

    assert selected(tenant, True) == {"mine"}


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"and": [{">=": [{"var": "member.attributes.age"}, "18"]}]}, "rule_json.and.0.>=.1"),
        ({"==": [{"var": "event.amount"}, 1]}, "rule_json.==.0.var"),
        ({"or": [True, {"==": [{"var": "member.locale"}, "a\x00b"]}]}, "rule_json.or.1.==.1"),
        ({"in": [{"var": "member.locale"}, ["en", "\x00"]]}, "rule_json.in.1.1"),
        ({"oops": []}, "rule_json"),
    ],
)
def test_invalid_rules_name_the_failing_part(rule, field):
    with pytest.raises(RuleInvalid) as caught:
        cohort_rule_check(rule)

    assert caught.value.field == field


# Random members and random rules -------------------------------------------------------

KEYS = ("age", "plan", "vip", "0", "n")
strings = st.sampled_from(["", "a", "gold", "Gold", "1", "20", "true", "null", "en", "fr", "é ü", 'it\'s "x"'])
# Numbers near the ones members hold (ages in days, sums of the amounts and points below),
# so that comparisons often split the members.
literal_numbers = st.integers(-1, 8) | st.sampled_from(
    [0.5, 2.5, -1.5, 10, 12.5, 17.5, 20.0, 29, 30, 31, 100, 107, Decimal("12.50"), Decimal("0.01"), 999_999_999_999_999]
)
literals = st.none() | st.booleans() | literal_numbers | strings
attribute_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1, 8) | st.sampled_from([0.5, 2.5, 20.0, 1e16, 10**20]) | strings,
    lambda children: st.lists(children, max_size=2) | st.dictionaries(st.sampled_from(KEYS), children, max_size=2),
    max_leaves=4,
)
VARIABLES = [
    "member.attributes.age",
    "member.attributes.plan",
    "member.attributes.vip",
    "member.attributes.plan.vip",
    "member.attributes.plan.0",
    "member.attributes.n.age",
    "member.locale",
    "member.tier",
    "member.createdDaysAgo",
    "activity.spend.7d",
    "activity.spend.30d",
    "activity.transactions.7d",
    "activity.transactions.30d",
    "activity.points.1d",
    "activity.points.30d",
]
variables = st.sampled_from(VARIABLES).map(lambda name: {"var": name})
comparisons = st.one_of(
    st.tuples(st.sampled_from(["==", "!="]), variables, literals).map(lambda t: {t[0]: [t[1], t[2]]}),
    st.tuples(st.sampled_from(["<", "<=", ">", ">="]), variables, literal_numbers).map(lambda t: {t[0]: [t[1], t[2]]}),
    st.tuples(variables, st.lists(literals, max_size=3)).map(lambda t: {"in": [t[0], t[1]]}),
    st.sampled_from(["c1", "c2", "c3", 1, None]).map(lambda value: {"in": [value, {"var": "member.cohorts"}]}),
)
# Mostly comparisons: a constant leaf makes many rules select everyone or no one.
conditions = st.recursive(
    st.one_of(comparisons, comparisons, comparisons, comparisons, st.booleans()),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"and": items}),
        st.lists(children, min_size=1, max_size=3).map(lambda items: {"or": items}),
        children.map(lambda child: {"!": child}),
        children.map(lambda child: {"!": [child]}),
    ),
    max_leaves=6,
)
events = st.fixed_dictionaries(
    {
        "type": st.sampled_from([CREATED, REFUNDED, "action"]),
        "amount": st.sampled_from([None, Decimal("5.00"), Decimal("12.50"), Decimal("0.01")]),
        "points": st.sampled_from([-10, 0, 7, 100]),
        # on, just inside and just outside each window's edge (and a second in the future)
        "days": st.sampled_from([0, 1, 7, 30, 31]),
        "seconds": st.sampled_from([0, 0, 1, -1]),
        "applied": st.booleans(),
    }
)
member_specs = st.lists(
    st.fixed_dictionaries(
        {
            "attributes": st.dictionaries(st.sampled_from(KEYS), attribute_values, max_size=4),
            "locale": st.sampled_from(["en", "fr", ""]),
            "age": st.tuples(st.sampled_from([-1, 0, 1, 2, 6, 7, 29, 30]), st.sampled_from([0, 1, 43_200, 86_399, -1])),
            "cohorts": st.sets(st.sampled_from(["c1", "c2"])),
            "events": st.lists(events, max_size=4),
        }
    ),
    min_size=2,
    max_size=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(
    specs=member_specs,
    rules=st.lists(conditions, min_size=1, max_size=4),
    probes=st.lists(comparisons, min_size=6, max_size=12),
)
@example(
    specs=[
        {"attributes": {"age": "20"}, "locale": "en", "age": (0, 0), "cohorts": set(), "events": []},
        {"attributes": {}, "locale": "fr", "age": (3, 1), "cohorts": {"c1"}, "events": []},
    ],
    rules=[
        {"!": {"<": [{"var": "member.attributes.age"}, 18]}},
        {"!=": [{"var": "member.attributes.age"}, None]},
        {"or": [{"!": [{"in": ["c1", {"var": "member.cohorts"}]}]}, {">": [{"var": "activity.spend.7d"}, 0]}]},
    ],
    probes=[{">": [{"var": "activity.points.30d"}, 0]}],
)
def test_the_sql_selects_exactly_the_members_the_evaluator_accepts(tenant, cohorts, specs, rules, probes):
    # given a fresh set of random members, with memberships and activity
    Member.objects.filter(tenant=tenant).delete()
    InboundEvent.objects.filter(tenant=tenant).delete()
    members = members_insert(
        tenant,
        [
            {
                "ref": f"m{i}",
                "attributes": spec["attributes"],
                "locale": spec["locale"],
                "created_at": NOW - timedelta(days=spec["age"][0], seconds=spec["age"][1]),
            }
            for i, spec in enumerate(specs)
        ],
    )
    InboundEvent.objects.bulk_create(
        [
            event_row(
                tenant,
                member_ref=f"m{i}",
                type=event["type"],
                occurred_at=NOW - timedelta(days=event["days"]) + timedelta(seconds=event["seconds"]),
                amount=event["amount"],
                points=event["points"],
                status=InboundEvent.Status.APPLIED if event["applied"] else InboundEvent.Status.REJECTED,
            )
            for i, spec in enumerate(specs)
            for event in spec["events"]
        ]
    )
    for code, cohort in cohorts.items():
        memberships_insert(cohort, [m for m, spec in zip(members, specs, strict=True) if code in spec["cohorts"]])

    # then each rule (and each single comparison) selects in SQL exactly whom the evaluator
    # accepts in Python
    everything = [*rules, *probes]
    facts = {
        m.external_ref: member_facts(m, NOW, rule={"and": everything}) for m in Member.objects.filter(tenant=tenant)
    }
    for rule in everything:
        chosen = selected(tenant, rule)
        assert chosen == {ref for ref, known in facts.items() if condition_evaluate(rule, known)}, rule
        event("selects none" if not chosen else "selects all" if len(chosen) == len(specs) else "selects some")
