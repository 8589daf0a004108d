"""The campaign rule JSON: its published JSON Schema and its validation.

    {
      "trigger":    {"eventTypes": ["transaction.created", "action"], "actionCodes": ["app.login"]},
      "conditions": <a condition, see campaigns.conditions>,
      "reward":     {"type": "POINTS", "points": 500}
                  | {"type": "POINTS", "multiplier": "2", "maxPoints": 1000}
                  | {"type": "CASHBACK", "amount": "5.00"}
                  | {"type": "CASHBACK", "percent": "10", "maxAmount": "20.00"}
                  | {"type": "COUPON", "pool": "welcome-10"},
      "quest":      {"steps": [{"actionCode": "app.open", "count": 3, "withinDays": 7},
                               {"eventType": "transaction.created", "count": 1}]}
    }

A structural check against the schema (jsonschema), then the checks a schema cannot make
(variables allowed in a condition, action codes the tenant knows, coupon pools that
exist, the reward fitting the trigger). Every error names the failing part as a dotted path
under `ruleJson`.
"""

import copy
from dataclasses import dataclass
from decimal import Decimal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from campaigns.conditions import CAMPAIGN, ConditionError, condition_check
from core.exceptions import DomainError

TRANSACTION_CREATED = "transaction.created"
ACTION = "action"
TRIGGER_EVENT_TYPES = (TRANSACTION_CREATED, ACTION)
DECIMAL_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,4})?$"
ACTION_CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"

_decimal = {
    "description": "A non-negative decimal, as a string (exact) or a number.",
    "anyOf": [
        {"type": "string", "pattern": DECIMAL_PATTERN},
        {"type": "number", "minimum": 0, "maximum": 999999999999},
    ],
}

CONDITION_SCHEMA = {
    "description": "A condition (a subset of JSON Logic): true, false, or one operator.",
    "anyOf": [
        {"type": "boolean"},
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "and": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
                "or": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}},
                "!": {"$ref": "#/$defs/condition"},
                "==": {"$ref": "#/$defs/comparison"},
                "!=": {"$ref": "#/$defs/comparison"},
                "<": {"$ref": "#/$defs/ordering"},
                "<=": {"$ref": "#/$defs/ordering"},
                ">": {"$ref": "#/$defs/ordering"},
                ">=": {"$ref": "#/$defs/ordering"},
                "in": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 2,
                    "description": "[{var}, [values]] or [value, {var: member.cohorts}]",
                },
            },
            "additionalProperties": False,
        },
    ],
}

RULE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://loyalty.example/schemas/campaign-rule.json",
    "title": "Campaign rule",
    "type": "object",
    "properties": {
        "trigger": {
            "type": "object",
            "properties": {
                "eventTypes": {
                    "type": "array",
                    "items": {"enum": list(TRIGGER_EVENT_TYPES)},
                    "minItems": 1,
                    "uniqueItems": True,
                },
                "actionCodes": {
                    "type": "array",
                    "items": {"type": "string", "pattern": ACTION_CODE_PATTERN},
                    "maxItems": 100,
                    "uniqueItems": True,
                    "description": "For 'action' events: which action codes trigger (all when absent).",
                },
            },
            "required": ["eventTypes"],
            "additionalProperties": False,
        },
        "conditions": {"$ref": "#/$defs/condition"},
        "reward": {
            "type": "object",
            "properties": {"type": {"enum": ["POINTS", "CASHBACK", "COUPON"]}},
            "required": ["type"],
            "allOf": [
                {
                    "if": {"properties": {"type": {"const": "POINTS"}}},
                    "then": {
                        "properties": {
                            "type": True,
                            "points": {"type": "integer", "minimum": 1, "maximum": 100000000},
                            "multiplier": {**_decimal, "description": "Extra points: base points x (multiplier - 1)."},
                            "maxPoints": {"type": "integer", "minimum": 1, "maximum": 100000000},
                        },
                        "oneOf": [{"required": ["points"]}, {"required": ["multiplier"]}],
                        "additionalProperties": False,
                    },
                },
                {
                    "if": {"properties": {"type": {"const": "CASHBACK"}}},
                    "then": {
                        "properties": {
                            "type": True,
                            "amount": _decimal,
                            "percent": _decimal,
                            "maxAmount": _decimal,
                        },
                        "oneOf": [{"required": ["amount"]}, {"required": ["percent"]}],
                        "additionalProperties": False,
                    },
                },
                {
                    "if": {"properties": {"type": {"const": "COUPON"}}},
                    "then": {
                        "properties": {"type": True, "pool": {"type": "string", "pattern": r"^[-a-zA-Z0-9_]{1,64}$"}},
                        "required": ["pool"],
                        "additionalProperties": False,
                    },
                },
            ],
        },
        "quest": {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 20,
                    "items": {
                        "type": "object",
                        "properties": {
                            "actionCode": {"type": "string", "pattern": ACTION_CODE_PATTERN},
                            "eventType": {"enum": list(TRIGGER_EVENT_TYPES)},
                            "count": {"type": "integer", "minimum": 1, "maximum": 1000},
                            "withinDays": {"type": "integer", "minimum": 1, "maximum": 366},
                        },
                        "required": ["count"],
                        "additionalProperties": False,
                    },
                },
            },
            "required": ["steps"],
            "additionalProperties": False,
        },
    },
    "required": ["reward"],
    "additionalProperties": False,
    "$defs": {
        "condition": CONDITION_SCHEMA,
        "variable": {
            "type": "object",
            "properties": {"var": {"type": "string", "minLength": 1}},
            "required": ["var"],
            "additionalProperties": False,
        },
        "comparison": {
            "type": "array",
            "prefixItems": [{"$ref": "#/$defs/variable"}, {"type": ["string", "number", "boolean", "null"]}],
            "minItems": 2,
            "maxItems": 2,
        },
        "ordering": {
            "type": "array",
            "prefixItems": [{"$ref": "#/$defs/variable"}, {"type": "number"}],
            "minItems": 2,
            "maxItems": 2,
        },
    },
}

# The structure is checked with the schema; conditions by campaigns.conditions, whose errors
# point at the exact operand (a schema's anyOf can only say "none of these matched").
_STRUCTURE = copy.deepcopy(RULE_SCHEMA)
_STRUCTURE["properties"]["conditions"] = True
_VALIDATOR = Draft202012Validator(_STRUCTURE)
Draft202012Validator.check_schema(RULE_SCHEMA)


class RuleInvalid(DomainError):
    status_code = 400
    default_code = "invalid_rule"
    default_message = "The campaign rule is not valid."


def _path(parts) -> str:
    return ".".join(["rule_json", *(str(p) for p in parts)])


def _fail(message: str, parts) -> RuleInvalid:
    return RuleInvalid(message, field=_path(parts))


def _structure_error(error) -> RuleInvalid:
    parts = list(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in instance if k not in allowed)
        if extra:
            return _fail(f"Unknown field {extra[0]!r}; allowed: {', '.join(sorted(allowed))}.", [*parts, extra[0]])
    if error.validator == "required" and isinstance(instance, dict):
        missing = [k for k in error.validator_value if k not in instance]
        if missing:
            return _fail(f"This field is required: {missing[0]!r}.", [*parts, missing[0]])
    if error.validator == "oneOf" and isinstance(instance, dict):
        choices = [next(iter(s["required"])) for s in error.validator_value if "required" in s]
        present = [c for c in choices if c in instance]
        where = [*parts, present[1]] if len(present) > 1 else parts
        return _fail(f"Give exactly one of: {', '.join(choices)}.", where)
    message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
    return _fail(message, parts)


@dataclass(frozen=True)
class RuleContext:
    """What the tenant knows, for the checks beyond structure. None skips that check."""

    action_codes: frozenset[str] | None = None
    coupon_pools: frozenset[str] | None = None


def rule_check(rule, *, campaign_type: str, context: RuleContext | None = None) -> dict:
    """Raise RuleInvalid at the first failing part of `rule`; return it when valid."""
    context = context or RuleContext()
    if not isinstance(rule, dict):
        raise RuleInvalid("The rule is a JSON object.", field="rule_json")
    error = best_match(_VALIDATOR.iter_errors(rule))
    if error is not None:
        raise _structure_error(error)
    if "conditions" in rule:
        try:
            condition_check(rule["conditions"], context=CAMPAIGN)
        except ConditionError as exc:
            raise _fail(exc.message, ["conditions", *exc.path]) from None

    trigger, quest, reward = rule.get("trigger"), rule.get("quest"), rule["reward"]
    if campaign_type == "QUEST":
        if quest is None:
            raise _fail("A QUEST campaign has steps.", ["quest"])
        if trigger is not None:
            raise _fail("A QUEST campaign is triggered by its steps; leave trigger out.", ["trigger"])
        for i, step in enumerate(quest["steps"]):
            event_type = step.get("eventType") or (ACTION if "actionCode" in step else None)
            if event_type is None:
                raise _fail("A step names an actionCode or an eventType.", ["quest", "steps", i, "actionCode"])
            if event_type == ACTION and "actionCode" not in step:
                raise _fail("An 'action' step names its actionCode.", ["quest", "steps", i, "actionCode"])
            if event_type == TRANSACTION_CREATED and "actionCode" in step:
                raise _fail("A purchase step has no actionCode.", ["quest", "steps", i, "actionCode"])
            _known_action(step.get("actionCode"), context, ["quest", "steps", i, "actionCode"])
        keys = [(s.get("eventType") or ACTION, s.get("actionCode")) for s in quest["steps"]]
        if len(set(keys)) != len(keys):
            raise _fail("Each step counts a different action.", ["quest", "steps"])
        if reward["type"] == "POINTS" and "multiplier" in reward:
            raise _fail("A quest gives fixed points: a multiplier needs one purchase.", ["reward", "multiplier"])
        if reward["type"] == "CASHBACK" and "percent" in reward:
            raise _fail("A quest gives a fixed cashback amount.", ["reward", "percent"])
    else:
        if quest is not None:
            raise _fail("Only a QUEST campaign has steps.", ["quest"])
        if trigger is None:
            raise _fail("A SIMPLE campaign has a trigger.", ["trigger"])
        for i, code in enumerate(trigger.get("actionCodes", [])):
            _known_action(code, context, ["trigger", "actionCodes", i])
        if trigger.get("actionCodes") and ACTION not in trigger["eventTypes"]:
            raise _fail("actionCodes apply to 'action' events: add it to eventTypes.", ["trigger", "actionCodes"])
        purchase_only = trigger["eventTypes"] == [TRANSACTION_CREATED]
        if reward["type"] == "POINTS" and "multiplier" in reward and not purchase_only:
            raise _fail("A points multiplier applies to purchases only.", ["reward", "multiplier"])
        if reward["type"] == "CASHBACK" and "percent" in reward and not purchase_only:
            raise _fail("Percent cashback applies to purchases only.", ["reward", "percent"])
    for name in ("multiplier", "percent", "amount", "maxAmount"):
        if name in reward:
            value = Decimal(str(reward[name]))
            if value <= 0:
                raise _fail("Must be greater than zero.", ["reward", name])
            if name == "percent" and value > 100:
                raise _fail("At most 100 percent.", ["reward", name])
            if name == "multiplier" and value > 100:
                raise _fail("At most 100.", ["reward", name])
    if reward["type"] == "COUPON" and context.coupon_pools is not None and reward["pool"] not in context.coupon_pools:
        raise _fail(f"No coupon pool {reward['pool']!r}.", ["reward", "pool"])
    return rule


def _known_action(code, context: RuleContext, parts) -> None:
    if code is not None and context.action_codes is not None and code not in context.action_codes:
        raise _fail(f"Unknown action code {code!r}: add it to the tenant's actions first.", parts)
