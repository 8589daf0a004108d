"""Cohorts (seed 001 §1.4): sets of a tenant's members, listed by hand (STATIC) or selected
by a condition over their attributes, tier, cohorts and activity (DYNAMIC).

A dynamic cohort's rule (see campaigns.conditions) is compiled to one SQL query,
`cohort_queryset`, that means exactly what `condition_evaluate` means over `member_facts`;
a property test holds the two together. A recompute is set-based: for each chunk of
members (a range of ids) one statement inserts the members that now match and deletes
those that no longer do, and the run records its progress as each chunk commits.

The SQL compile needs PostgreSQL (jsonb); elsewhere a recompute fails with a clear error.
"""

import itertools
import json
import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, NotSupportedError, connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    CharField,
    Count,
    DecimalField,
    Exists,
    Expression,
    F,
    JSONField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
    Window,
)
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from campaigns.conditions import ACTIVITY, COHORT, ORDERING, ConditionError, condition_check, condition_vars
from campaigns.models import Cohort, CohortMember, CohortRun
from campaigns.rules import RuleInvalid
from core.exceptions import Conflict, DomainError, NotFound
from rewards.models import InboundEvent, Member
from tenants.models import Tenant

logger = logging.getLogger(__name__)

TRANSACTION_CREATED = "transaction.created"
TRANSACTION_REFUNDED = "transaction.refunded"
MEASURES = ("spend", "transactions", "points")

# A recompute works through the members in chunks of about CHUNK_SIZE ids, never more than
# MAX_CHUNKS of them: the number of statements stays bounded whatever the tenant's size.
CHUNK_SIZE = 10_000
MAX_CHUNKS = 20
# Static member lists are read and written this many rows per statement.
BATCH_SIZE = 5_000
# A dynamic cohort is recomputed when its last result is older than this.
RECOMPUTE_EVERY = timedelta(hours=24)


class CohortNotFound(NotFound):
    default_code = "cohort_not_found"
    default_message = "Cohort not found."


class CohortAlreadyExists(Conflict):
    default_code = "cohort_exists"
    default_message = "A cohort with this code already exists."


class CohortStatic(Conflict):
    default_code = "cohort_static"
    default_message = "A static cohort lists its members: it has no rule to recompute."


class CohortDynamic(Conflict):
    default_code = "cohort_dynamic"
    default_message = "A dynamic cohort's members follow from its rule: they cannot be set by hand."


class UnknownMember(DomainError):
    """A member list names a memberRef the tenant does not have (a 400, like any other
    reference to something that does not exist in a request body)."""

    status_code = 400
    default_code = "unknown_member"
    default_message = "No member with this memberRef in the tenant."


# The rule ------------------------------------------------------------------------------


def _rule_field(path: Iterable) -> str:
    return ".".join(["rule_json", *(str(p) for p in path)])


def _operations(node, path: list) -> Iterator[tuple[str, list, list]]:
    """Every comparison in a (valid) condition: (operator, operands, path to it)."""
    if isinstance(node, bool):
        return
    ((op, args),) = node.items()
    if op in ("and", "or"):
        for i, child in enumerate(args):
            yield from _operations(child, [*path, op, i])
    elif op == "!":
        if isinstance(args, list):
            yield from _operations(args[0], [*path, op, 0])
        else:
            yield from _operations(args, [*path, op])
    else:
        yield op, args, [*path, op]


def cohort_rule_check(rule) -> dict | bool:
    """Raise RuleInvalid (field `rule_json.<path>`) unless `rule` is a condition a cohort may
    use (member and activity variables, no event ones); return it."""
    try:
        condition_check(rule, context=COHORT)
    except ConditionError as exc:
        raise RuleInvalid(exc.message, field=_rule_field(exc.path)) from None
    for _, args, path in _operations(rule, []):
        for i, operand in enumerate(args):
            items = operand if isinstance(operand, list) else [operand]
            for j, item in enumerate(items):
                if isinstance(item, str) and "\x00" in item:
                    where = [*path, i, j] if isinstance(operand, list) else [*path, i]
                    raise RuleInvalid("NUL characters are not allowed.", field=_rule_field(where))
    return rule


def _self_reference(rule, code: str) -> list | None:
    """Where a rule tests membership of the cohort it defines (which would make each
    recompute undo the last), or None."""
    for op, args, path in _operations(rule, []):
        if op == "in" and isinstance(args[1], dict) and args[0] == code:
            return [*path, 0]
    return None


def _activity_windows(rule) -> set[tuple[str, int]]:
    """The (measure, days) pairs a rule reads, e.g. {("spend", 30)}."""
    windows = set()
    for name in condition_vars(rule):
        match = ACTIVITY.match(name)
        if match:
            windows.add((match.group(1), int(match.group(2))))
    return windows


# Facts, in Python ----------------------------------------------------------------------


def member_tier(member: Member) -> str:
    """The member's tier code, as a cohort rule's `member.tier` reads it: "" for everyone, for
    now. Tiers live in a sibling app campaigns may not import, so the SQL side (`_tier_sql`)
    has nothing to join; when rewards.contributions offers a tier expression, answer from it
    here and in `_tier_sql` alike (the property test holds the two together). Campaign
    conditions read the real tier through the engine's tier provider."""
    return ""


def member_cohort_codes(*, member: Member) -> list[str]:
    """Codes of the cohorts the member belongs to, as `member.cohorts` reads them."""
    return list(
        CohortMember.objects.filter(member=member).order_by("cohort__code").values_list("cohort__code", flat=True)
    )


def _in_window(occurred_at: datetime, *, now: datetime, days: int) -> bool:
    return now - timedelta(days=days) < occurred_at <= now


def member_facts(member: Member, now: datetime, *, rule=None) -> dict:
    """The variables a cohort rule reads, for one member at `now`, computed in Python: the
    meaning `cohort_queryset` has in SQL. Activity covers the last 30 days and every window
    `rule` reads; a window of N days is (now - N days, now]. For tests and explanations, not
    for selecting members."""
    windows = {(measure, 30) for measure in MEASURES} | _activity_windows(rule if rule is not None else True)
    events = list(
        InboundEvent.objects.filter(
            tenant_id=member.tenant_id, member_ref=member.external_ref, status=InboundEvent.Status.APPLIED
        ).values_list("type", "amount", "points", "occurred_at")
    )
    activity: dict[str, dict] = {measure: {} for measure in MEASURES}
    for measure, days in windows:
        recent = [e for e in events if _in_window(e[3], now=now, days=days)]
        if measure == "spend":
            value = sum((e[1] or Decimal(0) for e in recent if e[0] == TRANSACTION_CREATED), Decimal(0)) - sum(
                (e[1] or Decimal(0) for e in recent if e[0] == TRANSACTION_REFUNDED), Decimal(0)
            )
        elif measure == "transactions":
            value = sum(1 for e in recent if e[0] == TRANSACTION_CREATED)
        else:
            value = sum(e[2] for e in recent if e[2] > 0)
        activity[measure][f"{days}d"] = value
    return {
        "member": {
            "attributes": member.attributes,
            "locale": member.locale,
            "tier": member_tier(member),
            "cohorts": member_cohort_codes(member=member),
            "createdDaysAgo": (now - member.created_at).days,
        },
        "activity": activity,
    }


# The same, in SQL ----------------------------------------------------------------------


class _Param:
    """A query parameter inside `_Sql`."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _Sql(Expression):
    """SQL assembled from text, parameters (`_Param`) and expressions compiled in place."""

    def __init__(self, *parts, output_field=None):
        super().__init__(output_field=output_field or BooleanField())
        self.parts = parts

    def get_source_expressions(self):
        return [part for part in self.parts if hasattr(part, "resolve_expression")]

    def set_source_expressions(self, exprs):
        given = iter(exprs)
        self.parts = tuple(next(given) if hasattr(part, "resolve_expression") else part for part in self.parts)

    def as_sql(self, compiler, connection):
        if connection.vendor != "postgresql":
            raise NotSupportedError("Dynamic cohorts need PostgreSQL.")
        sql, params = [], []
        for part in self.parts:
            if isinstance(part, str):
                sql.append(part)
            elif isinstance(part, _Param):
                sql.append("%s")
                params.append(part.value)
            else:
                part_sql, part_params = compiler.compile(part)
                sql.append(part_sql)
                params.extend(part_params)
        return "".join(sql), params


TRUE = "TRUE"
FALSE = "FALSE"


@dataclass(frozen=True)
class _Operand:
    """A compiled variable. `json`: a jsonb value, SQL NULL when missing; `number` and
    `string`: never NULL; `cohorts`: the member's cohort codes, tested with `in` only."""

    kind: str
    sql: Expression | None = None


def _is_number(value) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


def _numeric(value) -> _Param:
    return _Param(str(Decimal(str(value)) if isinstance(value, float) else Decimal(value)))


def _jsonb(value) -> _Param:
    if isinstance(value, Decimal):
        return _Param(str(value))
    return _Param(json.dumps(value, ensure_ascii=False))


def _tier_sql() -> Expression:
    """`member.tier` in SQL: "" for every member until the tiers app exists (`member_tier`)."""
    return Value("", output_field=CharField())


def _activity_alias(measure: str, days: int) -> str:
    return f"activity_{measure}_{days}d"


def _activity_sql(measure: str, days: int, *, now: datetime) -> Expression:
    """A member's spend, purchases or points earned in (now - days, now], from the applied
    inbound events that name it: a correlated subquery, 0 when there are none."""
    events = InboundEvent.objects.filter(
        tenant_id=OuterRef("tenant_id"),
        member_ref=OuterRef("external_ref"),
        status=InboundEvent.Status.APPLIED,
        occurred_at__gt=now - timedelta(days=days),
        occurred_at__lte=now,
    ).order_by()
    if measure == "spend":
        field = DecimalField(max_digits=20, decimal_places=2)
        events = events.filter(type__in=[TRANSACTION_CREATED, TRANSACTION_REFUNDED])
        total = Sum(Case(When(type=TRANSACTION_REFUNDED, then=-F("amount")), default=F("amount"), output_field=field))
        zero = Value(Decimal(0), output_field=field)
    elif measure == "transactions":
        field, total, zero = DecimalField(), Count("pk"), Value(0)
        events = events.filter(type=TRANSACTION_CREATED)
    else:
        field, total, zero = DecimalField(), Sum("points"), Value(0)
        events = events.filter(points__gt=0)
    per_member = events.values("member_ref").annotate(total=total).values("total")
    return Coalesce(Subquery(per_member), zero, output_field=field)


def _operand(name: str, *, now: datetime) -> _Operand:
    parts = name.split(".")
    if parts[0] == "activity":
        match = ACTIVITY.match(name)
        return _Operand("number", F(_activity_alias(match.group(1), int(match.group(2)))))
    if parts[1] == "attributes":
        # `->` with text keys, one level at a time: it never indexes into an array (a key "0"
        # of a list is missing, as in Python), and a missing level gives SQL NULL.
        path: list = ["(", F("attributes")]
        for key in parts[2:]:
            path += [" -> ", _Param(key), "::text"]
        return _Operand("json", _Sql(*path, ")", output_field=JSONField()))
    if parts[1] == "locale":
        return _Operand("string", F("locale"))
    if parts[1] == "tier":
        return _Operand("string", _tier_sql())
    if parts[1] == "createdDaysAgo":
        # Whole days, floored, as Python's timedelta.days: exact (extract gives numeric).
        days = _Sql(
            "floor(extract(epoch from (",
            _Param(now),
            "::timestamptz - ",
            F("created_at"),
            ")) / 86400)",
            output_field=DecimalField(),
        )
        return _Operand("number", days)
    return _Operand("cohorts")


def _joined(word: str, conditions: list) -> _Sql:
    parts: list = ["("]
    for i, condition in enumerate(conditions):
        parts += [f" {word} " if i else "", condition]
    return _Sql(*parts, ")")


def _equals(operand: _Operand, value) -> _Sql | str:
    """operand == value, never SQL NULL (so that NOT is the plain negation)."""
    j = operand.sql
    if operand.kind == "json":
        if value is None:
            return _Sql("(", j, " IS NULL OR jsonb_typeof(", j, ") = 'null')")
        # jsonb equality: same type and value, numbers numerically (1 = 1.0), "1" is not 1.
        return _Sql("COALESCE(", j, " = ", _jsonb(value), "::jsonb, false)")
    if operand.kind == "number":
        return _Sql("(", j, " = ", _numeric(value), "::numeric)") if _is_number(value) else FALSE
    return _Sql("(", j, " = ", _Param(value), ")") if isinstance(value, str) else FALSE


def _one_of(operand: _Operand, values: list) -> _Sql | str:
    if operand.kind == "json":
        found = [v for v in values if v is not None]
        tests = []
        if found:
            listed: list = []
            for i, v in enumerate(found):
                listed += [", " if i else "", _jsonb(v), "::jsonb"]
            tests.append(_Sql("COALESCE(", operand.sql, " IN (", *listed, "), false)"))
        if len(found) < len(values):
            tests.append(_equals(operand, None))
        return _joined("OR", tests) if tests else FALSE
    tests = [t for t in (_equals(operand, v) for v in values) if t != FALSE]
    return _joined("OR", tests) if tests else FALSE


def _ordered(op: str, operand: _Operand, value) -> _Sql | str:
    """operand <op> number: numbers only (a JSON "20" is never below 18), never SQL NULL."""
    if operand.kind == "json":
        j = operand.sql
        compared = [f")::numeric {op} ", _numeric(value), "::numeric ELSE false END)"]
        return _Sql("(CASE WHEN jsonb_typeof(", j, ") = 'number' THEN (", j, *compared)
    if operand.kind == "number":
        return _Sql("(", operand.sql, f" {op} ", _numeric(value), "::numeric)")
    return FALSE


def _member_in_cohort(code) -> _Sql | str:
    if not isinstance(code, str):
        return FALSE
    memberships = CohortMember.objects.filter(
        member_id=OuterRef("pk"), cohort__tenant_id=OuterRef("tenant_id"), cohort__code=code
    )
    return _Sql("(", Exists(memberships), ")")


def _compile(node, *, now: datetime) -> _Sql | str:
    """A (checked) condition as SQL that is TRUE or FALSE for every member, never NULL."""
    if isinstance(node, bool):
        return TRUE if node else FALSE
    ((op, args),) = node.items()
    if op in ("and", "or"):
        return _joined(op.upper(), [_compile(child, now=now) for child in args])
    if op == "!":
        return _Sql("(NOT ", _compile(args[0] if isinstance(args, list) else args, now=now), ")")
    left, right = args
    if op == "in" and not isinstance(left, dict):
        return _member_in_cohort(left)
    operand = _operand(left["var"], now=now)
    if op == "in":
        return _one_of(operand, right)
    if op == "==":
        return _equals(operand, right)
    if op == "!=":
        return _Sql("(NOT ", _equals(operand, right), ")")
    assert op in ORDERING, op
    return _ordered(op, operand, right)


# Selectors -----------------------------------------------------------------------------


def cohort_queryset(*, tenant: Tenant, rule, now: datetime) -> QuerySet[Member]:
    """The tenant's members for whom `rule` holds at `now`, as one query (PostgreSQL): the
    same answer as `condition_evaluate(rule, member_facts(member, now))` for each member.
    Activity is a correlated subquery per window the rule reads, and no other."""
    rule = cohort_rule_check(rule)
    members = Member.objects.filter(tenant=tenant)
    windows = _activity_windows(rule)
    if windows:
        members = members.alias(
            **{_activity_alias(measure, days): _activity_sql(measure, days, now=now) for measure, days in windows}
        )
    condition = _compile(rule, now=now)
    return members.filter(condition if isinstance(condition, _Sql) else _Sql(condition))


def cohort_get(*, tenant: Tenant, cohort_id) -> Cohort:
    """The tenant's cohort; another tenant's is not found."""
    cohort = Cohort.objects.filter(tenant=tenant, pk=cohort_id).first()
    if cohort is None:
        raise CohortNotFound(field="cohort_id")
    return cohort


def cohort_list(*, tenant: Tenant) -> QuerySet[Cohort]:
    return Cohort.objects.filter(tenant=tenant).order_by("code", "pk")


def cohort_member_rows(*, tenant: Tenant, cohort: Cohort) -> QuerySet:
    """(cohort code, memberRef, joined at) of the cohort's members by memberRef, for an export;
    nothing when the cohort is not `tenant`'s."""
    return (
        CohortMember.objects.filter(tenant=tenant, cohort=cohort, cohort__tenant=tenant)
        .order_by("member__external_ref", "pk")
        .values_list("cohort__code", "member__external_ref", "added_at")
    )


def cohort_run_list(*, tenant: Tenant, cohort: Cohort) -> QuerySet[CohortRun]:
    """The cohort's recomputes, newest first."""
    return CohortRun.objects.filter(tenant=tenant, cohort=cohort).order_by("-created_at", "-pk")


def cohort_run_latest(*, tenant: Tenant, cohort: Cohort) -> CohortRun | None:
    return cohort_run_list(tenant=tenant, cohort=cohort).first()


# Services ------------------------------------------------------------------------------


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@transaction.atomic
def cohort_create(
    *,
    tenant: Tenant,
    name: str,
    code: str,
    kind: str,
    rule_json=None,
    member_refs: list[str] | None = None,
    requested_by: str = "",
) -> Cohort:
    """Create a cohort: STATIC with its members (every memberRef must be the tenant's, else
    a 400 naming `member_refs.N`), or DYNAMIC with its rule, first computed in the background
    once this commits."""
    if kind == Cohort.Kind.STATIC:
        if rule_json not in (None, {}):
            raise DomainError("A static cohort lists its members; it has no rule.", field="rule_json")
        rule = {}
    elif kind == Cohort.Kind.DYNAMIC:
        if member_refs:
            raise DomainError(
                "A dynamic cohort's members follow from its rule; leave memberRefs out.", field="member_refs"
            )
        if rule_json is None:
            raise DomainError("A dynamic cohort needs its rule.", field="rule_json", code="required")
        rule = cohort_rule_check(rule_json)
        where = _self_reference(rule, code)
        if where is not None:
            raise RuleInvalid("A cohort's rule cannot test membership of the cohort itself.", field=_rule_field(where))
    else:
        raise DomainError("Use STATIC or DYNAMIC.", field="kind", code="invalid_choice")
    cohort = Cohort(tenant=tenant, name=name, code=code, kind=kind, rule_json=rule)
    cohort.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            cohort.save(force_insert=True)
    except IntegrityError as exc:
        raise CohortAlreadyExists(field="code") from exc
    if kind == Cohort.Kind.STATIC:
        refs = list(member_refs or [])
        unknown = cohort_members_set(tenant=tenant, cohort=cohort, member_refs=refs)["unknown"]
        if unknown:
            raise UnknownMember(field=f"member_refs.{refs.index(unknown[0])}")
        cohort.refresh_from_db()
    else:
        cohort_recompute_request(tenant=tenant, cohort=cohort, requested_by=requested_by)
    return cohort


@transaction.atomic
def cohort_update(
    *, tenant: Tenant, cohort: Cohort, name: str | None = None, rule_json=None, requested_by: str = ""
) -> tuple[Cohort, CohortRun | None]:
    """Rename a cohort, or change a DYNAMIC cohort's rule (checked as on create), which queues
    a recompute. The code and kind stay: campaigns and conditions name the cohort by its code."""
    if cohort.tenant_id != tenant.pk:
        raise CohortNotFound(field="cohort_id")
    fields = ["updated_at"]
    if name is not None and name != cohort.name:
        cohort.name = name
        fields.append("name")
    rule_changed = rule_json is not None and rule_json != cohort.rule_json
    if rule_changed:
        if cohort.kind != Cohort.Kind.DYNAMIC:
            raise DomainError("A static cohort lists its members; it has no rule.", field="rule_json")
        rule = cohort_rule_check(rule_json)
        where = _self_reference(rule, cohort.code)
        if where is not None:
            raise RuleInvalid("A cohort's rule cannot test membership of the cohort itself.", field=_rule_field(where))
        cohort.rule_json = rule
        fields.append("rule_json")
    cohort.full_clean(exclude=["tenant"], validate_unique=False, validate_constraints=False)
    cohort.save(update_fields=fields)
    run = cohort_recompute_request(tenant=tenant, cohort=cohort, requested_by=requested_by) if rule_changed else None
    return cohort, run


@transaction.atomic
def cohort_members_set(*, tenant: Tenant, cohort: Cohort, member_refs: list[str], replace: bool = True) -> dict:
    """Make a STATIC cohort's members the listed ones (`replace`), or add them. Returns
    {"added", "removed", "unknown"}: counts, and the memberRefs the tenant does not have
    (skipped), in the order given. Reads and writes BATCH_SIZE rows per statement."""
    if cohort.tenant_id != tenant.pk:
        raise CohortNotFound(field="cohort_id")
    if cohort.kind != Cohort.Kind.STATIC:
        raise CohortDynamic()
    # Uploads to one cohort take turns, so `current` below stays true until the writes.
    Cohort.objects.select_for_update().filter(pk=cohort.pk).values_list("pk", flat=True).get()
    refs = list(dict.fromkeys(member_refs))
    found: dict[str, object] = {}
    # No memberRef holds NUL, and PostgreSQL refuses it in a query.
    for batch in _batches([r for r in refs if isinstance(r, str) and "\x00" not in r], BATCH_SIZE):
        found.update(Member.objects.filter(tenant=tenant, external_ref__in=batch).values_list("external_ref", "pk"))
    wanted = set(found.values())
    current = set(CohortMember.objects.filter(cohort=cohort).values_list("member_id", flat=True))
    new = wanted - current
    gone = current - wanted if replace else set()
    CohortMember.objects.bulk_create(
        [CohortMember(tenant=tenant, cohort=cohort, member_id=pk) for pk in new], batch_size=BATCH_SIZE
    )
    for batch in _batches(sorted(gone), BATCH_SIZE):
        CohortMember.objects.filter(cohort=cohort, member_id__in=batch).delete()
    count = len(current) + len(new) - len(gone)
    Cohort.objects.filter(pk=cohort.pk).update(member_count=count, computed_at=timezone.now())
    return {"added": len(new), "removed": len(gone), "unknown": [r for r in refs if r not in found]}


def _enqueue(run_id: str) -> None:
    from campaigns.tasks import cohort_recompute_run

    try:
        cohort_recompute_run.delay(run_id)
    except Exception:  # after commit: the run stays QUEUED, and asking again re-sends it
        logger.exception("cohort recompute not enqueued", extra={"run": run_id})


@transaction.atomic
def cohort_recompute_request(*, tenant: Tenant, cohort: Cohort, requested_by: str = "") -> CohortRun:
    """Queue a recompute of a DYNAMIC cohort (a STATIC one is a 409 `cohort_static`); the
    task is sent once this commits. A run already queued is sent again and returned."""
    if cohort.tenant_id != tenant.pk:
        raise CohortNotFound(field="cohort_id")
    if cohort.kind != Cohort.Kind.DYNAMIC:
        raise CohortStatic()
    run = CohortRun.objects.filter(cohort=cohort, status=CohortRun.Status.QUEUED).order_by("created_at").first()
    if run is None:
        run = CohortRun.objects.create(tenant=tenant, cohort=cohort, requested_by=requested_by[:150])
    run_id = str(run.pk)
    transaction.on_commit(lambda: _enqueue(run_id))
    return run


def cohorts_recompute_due(*, now: datetime) -> list[CohortRun]:
    """Queue a recompute of every DYNAMIC cohort (all tenants) not computed in the last 24
    hours and with no run queued or running since then."""
    since = now - RECOMPUTE_EVERY
    pending = CohortRun.objects.filter(
        cohort=OuterRef("pk"),
        status__in=[CohortRun.Status.QUEUED, CohortRun.Status.RUNNING],
        created_at__gte=since,
    )
    due = (
        Cohort.objects.filter(kind=Cohort.Kind.DYNAMIC)
        .filter(Q(computed_at__isnull=True) | Q(computed_at__lt=since))
        .exclude(Exists(pending))
        .select_related("tenant")
        .order_by("computed_at", "pk")
    )
    return [cohort_recompute_request(tenant=c.tenant, cohort=c, requested_by="schedule") for c in due]


def _ranges(tenant_id) -> tuple[int, list[tuple]]:
    """The tenant's member count, and id ranges [low, high) splitting its members into
    equal chunks; the first is open below and the last above, so that members created
    meanwhile fall in one of them."""
    members = Member.objects.filter(tenant_id=tenant_id)
    total = members.count()
    chunks = max(1, min(MAX_CHUNKS, math.ceil(total / CHUNK_SIZE)))
    if chunks == 1:
        return total, [(None, None)]
    size = math.ceil(total / chunks)
    starts = list(
        members.annotate(position=Window(RowNumber(), order_by=F("pk").asc()))
        .filter(position__in=[1 + size * k for k in range(1, chunks)])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    bounds = [None, *starts, None]
    return total, list(itertools.pairwise(bounds))


def _recompute_chunk(*, cohort: Cohort, matching: QuerySet[Member], low, high, now: datetime) -> tuple[int, int]:
    """Within [low, high): add the members that match, remove the members that do not. One
    statement, so the rule is evaluated once. Returns (added, removed)."""
    if low is not None:
        matching = matching.filter(pk__gte=low)
    if high is not None:
        matching = matching.filter(pk__lt=high)
    select_sql, select_params = matching.values("pk").query.sql_with_params()
    in_range, range_params = "", []
    if low is not None:
        in_range += " AND cm.member_id >= %s"
        range_params.append(low)
    if high is not None:
        in_range += " AND cm.member_id < %s"
        range_params.append(high)
    table = connection.ops.quote_name(CohortMember._meta.db_table)
    # Only a table name from the model and fixed text are interpolated; values are parameters.
    sql = f"""
        WITH matching (id) AS MATERIALIZED ({select_sql}),
        added AS (
            INSERT INTO {table} (tenant_id, cohort_id, member_id, added_at)
            SELECT %s, %s, matching.id, %s FROM matching
            ON CONFLICT (cohort_id, member_id) DO NOTHING
            RETURNING 1
        ),
        removed AS (
            DELETE FROM {table} AS cm
            WHERE cm.cohort_id = %s{in_range}
              AND NOT EXISTS (SELECT 1 FROM matching WHERE matching.id = cm.member_id)
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM removed)
    """  # noqa: S608
    params = [*select_params, cohort.tenant_id, cohort.pk, now, cohort.pk, *range_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        added, removed = cursor.fetchone()
    return added, removed


def _recompute(run: CohortRun, *, now: datetime) -> None:
    cohort = run.cohort
    if cohort.kind != Cohort.Kind.DYNAMIC:
        raise CohortStatic()
    matching = cohort_queryset(tenant=cohort.tenant, rule=cohort.rule_json, now=now)
    with transaction.atomic():
        total, ranges = _ranges(cohort.tenant_id)
        CohortRun.objects.filter(pk=run.pk).update(members_total=total, stage=f"matching: 0 of {len(ranges)} chunks")
    for done, (low, high) in enumerate(ranges, start=1):
        # Each chunk commits with its progress, so a reader sees both move together.
        with transaction.atomic():
            added, removed = _recompute_chunk(cohort=cohort, matching=matching, low=low, high=high, now=now)
            CohortRun.objects.filter(pk=run.pk).update(
                added=F("added") + added,
                removed=F("removed") + removed,
                progress=min(99, done * 100 // len(ranges)),
                stage=f"matching: {done} of {len(ranges)} chunks",
            )
    with transaction.atomic():
        count = CohortMember.objects.filter(cohort=cohort).count()
        Cohort.objects.filter(pk=cohort.pk).update(member_count=count, computed_at=now)
        CohortRun.objects.filter(pk=run.pk).update(
            status=CohortRun.Status.SUCCEEDED,
            progress=100,
            stage="done",
            members_after=count,
            finished_at=timezone.now(),
        )


def cohort_recompute(*, run_id) -> CohortRun | None:
    """Carry out a queued recompute: RUNNING, then the cohort's members made exactly those
    its rule selects now, chunk by chunk with progress, then SUCCEEDED (or FAILED, with the
    error). Safe to run twice: a finished run is left alone, an interrupted one starts over,
    and each chunk's statement is idempotent. Returns the run (None if there is no such run)."""
    now = timezone.now()
    claimed = CohortRun.objects.filter(
        pk=run_id, status__in=[CohortRun.Status.QUEUED, CohortRun.Status.RUNNING]
    ).update(
        status=CohortRun.Status.RUNNING,
        started_at=now,
        finished_at=None,
        progress=0,
        stage="counting members",
        added=0,
        removed=0,
        error="",
    )
    run = CohortRun.objects.select_related("cohort__tenant").filter(pk=run_id).first()
    if run is None:
        logger.warning("cohort recompute: no such run", extra={"run": str(run_id)})
        return None
    if not claimed:
        return run
    try:
        _recompute(run, now=now)
    except Exception as exc:  # the run records why it failed; the task does not retry
        logger.exception("cohort recompute failed", extra={"run": str(run.pk), "cohort": str(run.cohort_id)})
        with transaction.atomic():
            count = CohortMember.objects.filter(cohort_id=run.cohort_id).count()
            Cohort.objects.filter(pk=run.cohort_id).update(member_count=count)
            CohortRun.objects.filter(pk=run.pk).update(
                status=CohortRun.Status.FAILED,
                stage="failed",
                error=(str(exc) or exc.__class__.__name__)[:2000],
                members_after=count,
                finished_at=timezone.now(),
            )
    run.refresh_from_db()
    return run
