"""A small, declarative condition language (a subset of JSON Logic), for campaign rules and
dynamic cohorts. Data only, never code: a condition is checked against the variables its
context allows, evaluated in Python against one event and member, and (for cohorts)
compiled to SQL by `campaigns.cohorts`, with the same meaning in both.

    true | false
    {"and": [c, ...]}  {"or": [c, ...]}  {"!": c}
    {"==": [{"var": "event.category"}, "dining"]}       also "!=" (any JSON scalar on the right)
    {">=": [{"var": "event.amount"}, 50]}               also "<", "<=", ">" (numbers only)
    {"in": [{"var": "event.mcc"}, ["5812", "5814"]]}    the variable is one of these scalars
    {"in": ["lapsed", {"var": "member.cohorts"}]}       this scalar is in the list variable

Meaning, chosen so that SQL can say the same: a missing variable equals nothing (only
`null` matches it); values of different types are never equal (`1` is not `"1"`, `true`
is not `1`); ordering compares numbers with numbers exactly (Decimal) and is false
otherwise; `!` and `!=` are the plain negations of what they wrap.

Variables (camelCase, as on the wire):
  event.type, event.amount, event.currency, event.category, event.mcc, event.channel,
  event.actionCode, event.attributes.<key>..., event.payload.<key>...   (campaigns only)
  member.attributes.<key>..., member.locale, member.tier, member.cohorts (list),
  member.createdDaysAgo
  activity.spend.<N>d, activity.transactions.<N>d, activity.points.<N>d  (cohorts only;
      money spent, purchases made and points earned in the last N days, 1 <= N <= 3650)
"""

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

LOGIC = ("and", "or", "!")
EQUALITY = ("==", "!=")
ORDERING = ("<", "<=", ">", ">=")
OPERATORS = (*LOGIC, *EQUALITY, *ORDERING, "in")
MAX_DEPTH = 12
MAX_NODES = 200
MAX_LIST = 1000

EVENT_VARS = ("type", "amount", "currency", "category", "mcc", "channel", "actionCode")
EVENT_OBJECTS = ("attributes", "payload")
MEMBER_VARS = ("locale", "tier", "cohorts", "createdDaysAgo")
ACTIVITY = re.compile(r"^activity\.(spend|transactions|points)\.([1-9][0-9]{0,3})d$")
KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LIST_VARS = ("member.cohorts",)

CAMPAIGN = "campaign"
COHORT = "cohort"


class ConditionError(ValueError):
    """`path` is where in the condition it went wrong, e.g. ["and", 1, ">=", 0]."""

    def __init__(self, message: str, path: list):
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True)
class Var:
    name: str

    @property
    def parts(self) -> list[str]:
        return self.name.split(".")


def var_check(name, *, context: str, path: list) -> Var:
    if not isinstance(name, str) or not name:
        raise ConditionError("A variable is a non-empty string such as event.amount.", path)
    parts = name.split(".")
    head = parts[0]
    if head == "event":
        if context != CAMPAIGN:
            raise ConditionError("Cohort rules cannot use event variables: they are about members.", path)
        if len(parts) == 2 and parts[1] in EVENT_VARS:
            return Var(name)
        if len(parts) >= 3 and parts[1] in EVENT_OBJECTS and all(KEY.match(p) for p in parts[2:]):
            return Var(name)
    elif head == "member":
        if len(parts) == 2 and parts[1] in MEMBER_VARS:
            return Var(name)
        if len(parts) >= 3 and parts[1] == "attributes" and all(KEY.match(p) for p in parts[2:]):
            return Var(name)
    elif head == "activity":
        if context != COHORT:
            raise ConditionError(
                "Campaign conditions cannot use activity variables: select those members with a dynamic cohort.",
                path,
            )
        match = ACTIVITY.match(name)
        if match and int(match.group(2)) <= 3650:
            return Var(name)
    raise ConditionError(f"Unknown variable {name!r}.", path)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _scalar(value) -> bool:
    return value is None or isinstance(value, (str, bool)) or _is_number(value)


def _number(value) -> Decimal:
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:  # pragma: no cover - callers pass numbers
        raise
    if not number.is_finite():
        raise InvalidOperation(value)
    return number


def _var_operand(node, *, context: str, path: list) -> Var | None:
    if isinstance(node, dict) and set(node) == {"var"}:
        return var_check(node["var"], context=context, path=[*path, "var"])
    return None


def condition_check(node, *, context: str, path: list | None = None, _depth: int = 0, _count=None) -> None:
    """Raise ConditionError at the first part of `node` that is not a valid condition."""
    path = path or []
    count = _count if _count is not None else [0]
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ConditionError(f"A condition may have at most {MAX_NODES} parts.", path)
    if _depth > MAX_DEPTH:
        raise ConditionError(f"A condition may nest at most {MAX_DEPTH} levels.", path)
    if isinstance(node, bool):
        return
    if not isinstance(node, dict) or len(node) != 1:
        raise ConditionError(
            "A condition is true, false, or an object with exactly one operator: " + ", ".join(OPERATORS) + ".",
            path,
        )
    ((op, args),) = node.items()
    here = [*path, op]
    if op not in OPERATORS:
        raise ConditionError(f"Unknown operator {op!r}; use one of " + ", ".join(OPERATORS) + ".", path)
    if op in ("and", "or"):
        if not isinstance(args, list) or not args:
            raise ConditionError(f"{op!r} takes a non-empty list of conditions.", here)
        for i, child in enumerate(args):
            condition_check(child, context=context, path=[*here, i], _depth=_depth + 1, _count=count)
        return
    if op == "!":
        child = args[0] if isinstance(args, list) and len(args) == 1 else args
        if isinstance(args, list) and len(args) != 1:
            raise ConditionError("'!' takes one condition.", here)
        condition_check(
            child,
            context=context,
            path=[*here, 0] if isinstance(args, list) else here,
            _depth=_depth + 1,
            _count=count,
        )
        return
    if not isinstance(args, list) or len(args) != 2:
        raise ConditionError(f"{op!r} takes two operands: a variable and a value.", here)
    left, right = args
    if op == "in":
        var = _var_operand(left, context=context, path=[*here, 0])
        if var is not None:
            if var.name in LIST_VARS:
                raise ConditionError(f"{var.name} is a list: write {{'in': [value, {{'var': ...}}]}}.", [*here, 0])
            if not isinstance(right, list) or len(right) > MAX_LIST:
                raise ConditionError(f"The second operand of 'in' is a list of at most {MAX_LIST} values.", [*here, 1])
            for i, item in enumerate(right):
                _literal_check(item, path=[*here, 1, i])
            return
        var = _var_operand(right, context=context, path=[*here, 1])
        if var is None:
            raise ConditionError("'in' needs a variable: [{'var': ...}, [values]] or [value, {'var': list}].", here)
        if var.name not in LIST_VARS:
            raise ConditionError(f"{var.name} is not a list variable (one of {', '.join(LIST_VARS)}).", [*here, 1])
        _literal_check(left, path=[*here, 0])
        return
    var = _var_operand(left, context=context, path=[*here, 0])
    if var is None:
        raise ConditionError(f"The first operand of {op!r} is a variable: {{'var': 'event.amount'}}.", [*here, 0])
    if var.name in LIST_VARS:
        raise ConditionError(f"{var.name} is a list: test it with 'in'.", [*here, 0])
    _literal_check(right, path=[*here, 1])
    if op in ORDERING and not _is_number(right):
        raise ConditionError(f"{op!r} compares numbers: the value must be a number.", [*here, 1])


def _literal_check(value, *, path: list) -> None:
    if not _scalar(value):
        raise ConditionError("A value is a string, number, boolean or null.", path)
    if isinstance(value, str) and len(value) > 500:
        raise ConditionError("A string value may be at most 500 characters.", path)
    if _is_number(value):
        try:
            number = _number(value)
        except (InvalidOperation, ValueError):
            raise ConditionError("Numbers must be finite.", path) from None
        if abs(number) >= Decimal(10) ** 15 or number.as_tuple().exponent < -6:
            raise ConditionError("Numbers must be below 10^15 with at most 6 decimal places.", path)


def condition_vars(node) -> set[str]:
    """Every variable a (valid) condition reads."""
    if isinstance(node, dict):
        if set(node) == {"var"}:
            return {node["var"]}
        return set().union(*(condition_vars(v) for v in node.values())) if node else set()
    if isinstance(node, list):
        return set().union(*(condition_vars(v) for v in node)) if node else set()
    return set()


# Evaluation --------------------------------------------------------------------------

_MISSING = object()


def var_get(facts: dict, name: str):
    """The value of a variable in `facts` (nested dicts keyed by the variable's parts), or
    _MISSING when any part of the path is absent."""
    value = facts
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def values_equal(a, b) -> bool:
    """Same type and same value; numbers compare exactly, whatever their spelling (1 == 1.0)."""
    if a is _MISSING:
        return b is None
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        try:
            return _number(a) == _number(b)
        except (InvalidOperation, ValueError):
            return False
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return False


def _compare(op: str, a, b) -> bool:
    if not (_is_number(a) and _is_number(b)):
        return False
    try:
        x, y = _number(a), _number(b)
    except (InvalidOperation, ValueError):
        return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def condition_evaluate(node, facts: dict) -> bool:
    """Whether a valid condition holds for `facts`."""
    if isinstance(node, bool):
        return node
    ((op, args),) = node.items()
    if op == "and":
        return all(condition_evaluate(child, facts) for child in args)
    if op == "or":
        return any(condition_evaluate(child, facts) for child in args)
    if op == "!":
        return not condition_evaluate(args[0] if isinstance(args, list) else args, facts)
    left, right = args
    if op == "in":
        if isinstance(left, dict):
            value = var_get(facts, left["var"])
            return any(values_equal(value, item) for item in right)
        values = var_get(facts, right["var"])
        return isinstance(values, list) and any(values_equal(item, left) for item in values)
    value = var_get(facts, left["var"])
    if op == "==":
        return values_equal(value, right)
    if op == "!=":
        return not values_equal(value, right)
    return _compare(op, value, right)
