"""Tenant isolation, generated from the OpenAPI schema the API serves: every documented
operation is called with tenant A's credentials (its API key and a member token of one of its
members) and tenant B's ids, and without credentials.

- An operation whose path names B's objects (all of them, or B's child under A's parent) answers
  404 to the caller the operation is for, and 403 or 404 to the other; the same call with A's own
  ids first shows that the URL, method and body do reach the object, so the 404 is the tenant wall.
- Lists, and lists filtered by B's memberRef, item, partner and so on, show nothing of B's.
- Writes to collections whose bodies name B's objects are refused, or create A's own rows.
- No response carries anything of B's: no UUID held in B's rows, no name, code or memberRef
  (every one of B's carries the word "bravo"), no secret.
- B's rows, in every tenant table, are unchanged after each operation.
- Every operation the schema does not mark public answers 401 without credentials.
- A raw query as the application role narrowed to A sees none of B's rows, and a member socket
  of A's cannot join B's groups.

A new operation is covered as soon as it is in the schema; a new kind of path parameter fails
`test_every_path_parameter_has_a_provider_of_tenant_b_ids` until PATH_KINDS names it.
"""

import json
import re
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from rest_framework.test import APIClient

from core import rls
from tests.factories import MemberFactory
from tests.security.isolation_fixtures import populate, tenant_snapshot, uuids_of

# The schema as /api/schema/ serves it, built at collection time (no database needed).
SCHEMA = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # as the schema spells it, e.g. /api/v1/members/{member_ref}
    query: tuple[str, ...]
    public: bool

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def slots(self) -> list[tuple[str, str]]:
        """Each path parameter with the path up to and including it, which says what it names."""
        return [(self.path[: m.end()], m.group(1)) for m in PARAMETER.finditer(self.path)]


def operations(schema: dict) -> list[Operation]:
    found = []
    for path, item in schema["paths"].items():
        for method in HTTP_METHODS:
            if method not in item:
                continue
            op = item[method]
            parameters = [*item.get("parameters", []), *op.get("parameters", [])]
            security = op.get("security", schema.get("security"))
            found.append(
                Operation(
                    method=method,
                    path=path,
                    query=tuple(p["name"] for p in parameters if p["in"] == "query"),
                    # no requirement at all, or an empty one among the alternatives: anyone may call
                    public=not security or {} in security,
                )
            )
    return found


OPERATIONS = operations(SCHEMA)
WITH_PATH_PARAMETERS = [op for op in OPERATIONS if op.slots]
LISTS = [op for op in OPERATIONS if not op.slots and op.method == "get"]
COLLECTION_WRITES = [op for op in OPERATIONS if not op.slots and op.method != "get"]

# What each path parameter names, by the path up to it: the key of the tenant's row in World.ids.
PATH_KINDS = {
    "/api/v1/tenants/{tenant_id}": "tenant_id",
    "/api/v1/tenants/{tenant_id}/api-keys/{key_id}": "key_id",
    "/api/v1/members/{member_ref}": "member_ref",
    "/api/v1/categories/{code}": "category_code",
    "/api/v1/categories/{code}/multipliers/{multiplier_id}": "multiplier_id",
    "/api/v1/catalog/categories/{code}": "shelf_code",
    "/api/v1/catalog/items/{item_id}": "item_id",
    "/api/v1/coupon-pools/{code}": "pool_code",
    "/api/v1/credit-packages/{package_id}": "package_id",
    "/api/v1/credit-purchases/{purchase_id}": "purchase_id",
    "/api/v1/redemptions/{redemption_id}": "redemption_id",
    "/api/v1/tiers/{tier_id}": "tier_id",
    "/api/v1/webhooks/{webhook_id}": "webhook_id",
    "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}": "delivery_id",
    "/api/v1/campaigns/{campaign_id}": "campaign_id",
    "/api/v1/cohorts/{cohort_id}": "cohort_id",
}

# Query parameters that name a tenant's objects: each is tried alone with B's value.
QUERY_KINDS = {
    "memberRef": "member_ref",
    "memberRefPrefix": "member_ref",
    "itemId": "item_id",
    "partner": "partner_code",
    "category": "shelf_code",
    "action": "action_code",
    "after": "outbound_event_id",
    "q": "tag",
}

# Bodies that let a write reach its object ("{kind}" is the id of the tenant named in the path).
# An operation left out is sent no body; the call with A's own ids says when one is needed.
BODIES = {
    "PUT /api/v1/campaigns/{campaign_id}": {
        "name": "{tag} renamed",
        "type": "SIMPLE",
        "startAt": "2031-01-01T00:00:00Z",
        "ruleJson": {"trigger": {"eventTypes": ["action"]}, "reward": {"type": "POINTS", "points": 5}},
    },
    "PATCH /api/v1/catalog/categories/{code}": {"name": "{tag} renamed"},
    "PUT /api/v1/catalog/items/{item_id}": {"name": "{tag} renamed", "pointCost": 1, "version": 1},
    "PATCH /api/v1/catalog/items/{item_id}": {"pointCost": 1, "version": 1},
    "POST /api/v1/catalog/items/{item_id}/stock-movements": {"kind": "ADJUST", "quantity": -1},
    "PATCH /api/v1/categories/{code}": {"name": "{tag} renamed"},
    "POST /api/v1/categories/{code}/multipliers": {"factor": "9"},
    "PATCH /api/v1/categories/{code}/multipliers/{multiplier_id}": {"factor": "9"},
    "POST /api/v1/coupon-pools/{code}/codes": {"codes": ["{tag}-coupon-2"]},
    "PATCH /api/v1/credit-packages/{package_id}": {"rewardPoints": 1},
    "PATCH /api/v1/members/{member_ref}": {"attributes": {"changed": True}},
    "POST /api/v1/members/{member_ref}/adjustments": {"points": -1, "reason": "taken"},
    "POST /api/v1/redemptions/{redemption_id}:cancel": {},
    "POST /api/v1/tenants/{tenant_id}/api-keys": {"name": "extra"},
    "POST /api/v1/tenants/{tenant_id}/limits": {"scope": "GLOBAL", "maxPerDay": 1},
    "POST /api/v1/tenants/{tenant_id}/user-limits": {"memberRef": "{member_ref}", "maxPerDay": 1},
    "PUT /api/v1/tiers/{tier_id}": {"names": {"en": "{tag} renamed"}, "minPoints": 1},
    "PATCH /api/v1/tiers/{tier_id}": {"minPoints": 1},
    "PATCH /api/v1/webhooks/{webhook_id}": {"url": "http://127.0.0.1:9/renamed"},
}

# Writes to collections whose bodies name B's objects ("{b.kind}") beside A's ("{a.kind}"):
# "refused" must be a 4xx; "own" must succeed for one of A's callers at least, creating A's own
# row under the same code or ref.
CROSS_BODIES = {
    "POST /api/v1/actions": [("own", {"code": "{b.action_code}", "description": "x"})],
    "POST /api/v1/ai/recommendation": [("refused", {"memberRef": "{b.member_ref}"})],
    "POST /api/v1/campaigns": [
        (
            "refused",
            {
                "name": "x",
                "type": "SIMPLE",
                "startAt": "2031-01-01T00:00:00Z",
                "ruleJson": {
                    "trigger": {"eventTypes": ["action"], "actionCodes": ["{b.action_code}"]},
                    "reward": {"type": "POINTS", "points": 5},
                },
            },
        ),
        (
            "refused",
            {
                "name": "x",
                "type": "SIMPLE",
                "startAt": "2031-01-01T00:00:00Z",
                "ruleJson": {
                    "trigger": {"eventTypes": ["action"]},
                    "reward": {"type": "COUPON", "pool": "{b.pool_code}"},
                },
            },
        ),
    ],
    "POST /api/v1/catalog/categories": [("own", {"code": "{b.shelf_code}", "name": "x"})],
    "POST /api/v1/catalog/items": [("refused", {"name": "x", "pointCost": 1, "category": "{b.shelf_code}"})],
    "POST /api/v1/categories": [
        ("own", {"code": "{b.category_code}", "name": "x"}),
        ("refused", {"code": "x-new", "name": "x", "parent": "{b.category_code}"}),
    ],
    "POST /api/v1/cohorts": [
        ("own", {"name": "x", "code": "{b.tag}-vips", "kind": "STATIC"}),
        ("refused", {"name": "x", "code": "x-vips", "kind": "STATIC", "memberRefs": ["{b.member_ref}"]}),
    ],
    "POST /api/v1/coupon-pools": [("own", {"code": "{b.pool_code}", "name": "x"})],
    "POST /api/v1/credit-packages": [
        ("own", {"code": "{b.tag}-pack", "name": "x", "price": "1.00", "rewardPoints": 10}),
    ],
    "POST /api/v1/credit-purchases": [
        ("refused", {"packageId": "{b.package_id}", "paymentToken": "tok_approve", "memberRef": "{a.member_ref}"}),
        ("refused", {"packageId": "{a.package_id}", "paymentToken": "tok_approve", "memberRef": "{b.member_ref}"}),
        ("refused", {"packageId": "{b.package_id}", "paymentToken": "tok_approve"}),  # the member app's own
    ],
    "POST /api/v1/events": [
        (
            "own",
            {
                "type": "transaction.created",
                "eventId": "{b.inbound_event_id}",
                "memberRef": "{b.member_ref}",
                "amount": "10.00",
                "currency": "USD",
            },
        ),
        ("refused", {"type": "transaction.refunded", "eventId": "x-refund", "originalEventId": "{b.inbound_event_id}"}),
    ],
    "POST /api/v1/events:batch": [
        (
            "own",
            {"events": [{"type": "transaction.refunded", "eventId": "x-2", "originalEventId": "{b.inbound_event_id}"}]},
        ),
    ],
    "POST /api/v1/members": [("own", {"memberRef": "{b.member_ref}"})],
    "POST /api/v1/redemptions": [
        ("refused", {"itemId": "{b.item_id}", "memberRef": "{a.member_ref}"}),
        ("refused", {"itemId": "{a.item_id}", "memberRef": "{b.member_ref}"}),
        ("refused", {"itemId": "{b.item_id}"}),
    ],
    "POST /api/v1/tiers": [("own", {"tierId": "{b.tier_id}", "names": {"en": "x"}})],
    # Writes naming nothing of B's, that read or change the caller's tenant as a whole.
    "POST /api/v1/simulations": [("own", {"from": "{a.since}", "to": "{a.until}", "changes": {"earnRate": "2"}})],
    "PUT /api/v1/tier-policy": [("own", {"qualification": "ROLLING", "windowMonths": 1})],
    "POST /api/v1/webhooks": [("own", {"url": "http://127.0.0.1:9/{b.tag}", "eventTypes": ["*"]})],
}

PLACEHOLDER = re.compile(r"\{(?:(a|b)\.)?(\w+)\}")
# Answers to a call with A's own ids that show the object was found (a state conflict at most).
REACHED = {409, 412, 422}


def fill(template, default, worlds):
    """The template with "{kind}" from `default`'s ids and "{a.kind}"/"{b.kind}" from A's/B's."""
    if isinstance(template, dict):
        return {key: fill(value, default, worlds) for key, value in template.items()}
    if isinstance(template, list):
        return [fill(value, default, worlds) for value in template]
    if not isinstance(template, str):
        return template

    def value(match):
        world = {"a": worlds.a, "b": worlds.b}.get(match.group(1), default)
        return world.tag if match.group(2) == "tag" else str(world[match.group(2)])

    return PLACEHOLDER.sub(value, template)


def path_with(op: Operation, choose) -> str:
    """The operation's path, each parameter filled from the world `choose(slot)` returns."""
    path = op.path
    for slot, name in reversed(op.slots):
        world = choose(slot)
        path = path[: len(slot) - len(name) - 2] + str(world[PATH_KINDS[slot]]) + path[len(slot) :]
    return path


def strings_in(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


@pytest.fixture(scope="module")
def worlds(django_db_setup, django_db_blocker):
    """Tenants A ("alpha") and B ("bravo"), built once for the module inside a transaction that
    is rolled back after it; each test runs in a savepoint of its own."""
    with (
        django_db_blocker.unblock(),
        override_settings(
            WEBHOOK_ALLOW_PRIVATE_TARGETS=True, OUTBOX_RELAY_ON_COMMIT=False, REDEMPTION_FULFIL_ON_COMMIT=False
        ),
        transaction.atomic(),
    ):
        a, b = populate("alpha"), populate("bravo")
        # B also has a member under A's memberRef: the same ref in two tenants is two members.
        twin = MemberFactory(tenant=b.tenant, external_ref=a["member_ref"])
        yield SimpleNamespace(
            a=a,
            b=b,
            b_twin=twin,
            b_tokens=(uuids_of(b.tenant) - uuids_of(a.tenant)) | set(b.secrets),
        )
        transaction.set_rollback(True)


@pytest.fixture
def callers(worlds, db):
    key, token = APIClient(), APIClient()
    key.credentials(HTTP_X_API_KEY=worlds.a.raw_api_key)
    token.credentials(HTTP_AUTHORIZATION=f"Bearer {worlds.a.member_token}")
    return {"api key": key, "member token": token}


def call(client: APIClient, method: str, path: str, body=None):
    headers = {}
    if method != "get":
        headers["HTTP_IDEMPOTENCY_KEY"] = uuid.uuid4().hex
    data = "" if body is None else json.dumps(body)
    return client.generic(method.upper(), path, data, content_type="application/json", **headers)


def text_of(response) -> str:
    """The body, streamed ones (exports) included, read once and kept on the response."""
    if not hasattr(response, "text_read"):
        raw = b"".join(response.streaming_content) if response.streaming else response.content
        response.text_read = raw.decode(errors="replace")
    return response.text_read


def leaks(response, worlds, sent=()) -> list[str]:
    """What of B's the response shows: B's tag, a UUID of B's rows, a secret of B's. Values the
    caller sent itself (a memberRef of its own chosen to be B's too) are not counted."""
    text = text_of(response)
    for value in sorted(sent, key=len, reverse=True):
        if value:
            text = text.replace(value, "")
    found = [token for token in worlds.b_tokens if token in text]
    found += [text[max(0, m.start() - 40) : m.end() + 40] for m in re.finditer(worlds.b.tag, text, re.IGNORECASE)]
    return found


def describe(response) -> str:
    return f"{response.status_code} {text_of(response)[:300]!r}"


# The schema ---------------------------------------------------------------------------------


def test_the_served_schema_has_the_operations_tested(client):
    response = client.get("/api/schema/?format=json")

    assert response.status_code == 200
    assert {op.id for op in operations(response.json())} == {op.id for op in OPERATIONS}
    assert len(OPERATIONS) > 90 and WITH_PATH_PARAMETERS and LISTS and COLLECTION_WRITES


def test_every_path_parameter_has_a_provider_of_tenant_b_ids():
    slots = {slot for op in OPERATIONS for slot, _ in op.slots}

    assert slots, "no operation has a path parameter"
    assert slots - PATH_KINDS.keys() == set(), "name what these path parameters are in PATH_KINDS"
    assert PATH_KINDS.keys() - slots == set(), "PATH_KINDS names paths the schema no longer has"


def test_every_templated_body_belongs_to_an_operation():
    ids = {op.id for op in OPERATIONS}

    assert BODIES.keys() - ids == set()
    assert CROSS_BODIES.keys() - ids == set()


# Every operation with A's credentials and B's ids -------------------------------------------


@pytest.mark.parametrize("op", WITH_PATH_PARAMETERS, ids=[op.id for op in WITH_PATH_PARAMETERS])
def test_another_tenants_ids_in_the_path_are_not_found(op, worlds, callers):
    # given B's rows, and each way of putting B's ids in the path: all of them, or B's under A's
    before = tenant_snapshot(worlds.b.tenant)
    slots = [slot for slot, _ in op.slots]
    combinations = [{slot for i, slot in enumerate(slots) if mask >> i & 1} for mask in range(1, 2 ** len(slots))]
    template = BODIES.get(op.id)

    # when A calls with them, as its backend and as its member app
    answers = {}
    for b_slots in combinations:
        path = path_with(op, lambda slot, b_slots=b_slots: worlds.b if slot in b_slots else worlds.a)
        body = None if template is None else fill(template, worlds.b, worlds)
        for name, client in callers.items():
            response = call(client, op.method, path, body)
            answers[name, path] = response
            # then nothing of B's shows and nothing is done
            assert response.status_code in (403, 404), f"{name} {op.method.upper()} {path}: {describe(response)}"
            assert leaks(response, worlds) == [], f"{name} {op.method.upper()} {path}"
    assert tenant_snapshot(worlds.b.tenant) == before

    # and the same call with A's own ids reaches A's object, so the 404 above is the tenant wall:
    # each caller the operation is for (the member app first: it may do less, and a delete by
    # the backend would leave it nothing to find) was told 404, as for an object that does not exist
    own = path_with(op, lambda slot: worlds.a)
    body = None if template is None else fill(template, worlds.a, worlds)
    entitled = []
    for name in reversed(callers):
        response = call(callers[name], op.method, own, body)
        if response.status_code == 403:
            continue
        assert response.status_code < 400 or response.status_code in REACHED or entitled, (
            f"{name} {op.method.upper()} {own} with A's own ids: {describe(response)}"
        )
        assert leaks(response, worlds) == []
        entitled.append(name)
    assert entitled, f"neither of A's callers may call {op.method.upper()} {own}"
    for (name, path), answer in answers.items():
        if name in entitled:
            assert answer.status_code == 404, f"{name} {op.method.upper()} {path}: {describe(answer)}"


# Lists and collection writes ----------------------------------------------------------------


@pytest.mark.parametrize("op", LISTS, ids=[op.id for op in LISTS])
def test_lists_show_nothing_of_another_tenant(op, worlds, callers):
    queries = [""] + [
        f"?{name}={fill('{' + QUERY_KINDS[name] + '}', worlds.b, worlds)}" for name in op.query if name in QUERY_KINDS
    ]
    answered = []
    for name, client in callers.items():
        for query in queries:
            response = client.get(op.path + query)
            assert response.status_code < 500, f"{name} GET {op.path}{query}: {describe(response)}"
            assert leaks(response, worlds) == [], f"{name} GET {op.path}{query}"
            answered.append(response.status_code)
    # one of A's callers at least is let in (or the list is the platform admin's alone)
    assert 200 in answered or op.path == "/api/v1/tenants", answered


@pytest.mark.parametrize("op", COLLECTION_WRITES, ids=[op.id for op in COLLECTION_WRITES])
def test_writes_naming_another_tenants_objects_change_nothing_of_it(op, worlds, callers):
    before = tenant_snapshot(worlds.b.tenant)
    # refusals first: a body creating A's own row under B's code would make a later one valid
    cases = sorted(CROSS_BODIES.get(op.id) or [("any", {})], key=lambda case: case[0] != "refused")

    for expect, template in cases:
        body = fill(template, worlds.a, worlds)
        statuses = []
        for name, client in callers.items():
            response = call(client, op.method, op.path, body)
            where = f"{name} {op.method.upper()} {op.path} {body}: {describe(response)}"
            assert response.status_code < 500, where
            if expect == "refused":
                assert 400 <= response.status_code < 500, where
            assert leaks(response, worlds, sent=strings_in(body)) == [], where
            statuses.append(response.status_code)
        if expect == "own":
            assert any(200 <= status < 300 for status in statuses), f"{op.id} {body}: {statuses}"

    assert tenant_snapshot(worlds.b.tenant) == before


# Without credentials ------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPERATIONS, ids=[op.id for op in OPERATIONS])
def test_every_operation_not_public_wants_credentials(op, worlds, db):
    path = path_with(op, lambda slot: worlds.b) if op.slots else op.path
    body = fill(BODIES.get(op.id, {}), worlds.b, worlds) if op.method != "get" else None

    response = call(APIClient(), op.method, path, body)

    if op.public:
        assert response.status_code < 500
    else:
        assert response.status_code == 401, describe(response)
    assert leaks(response, worlds) == []


# Under the API ------------------------------------------------------------------------------


def test_a_raw_query_as_the_application_role_narrowed_to_a_sees_no_row_of_b(worlds, db):
    tables = rls.tenant_tables()
    quote = connection.ops.quote_name

    def rows_of_b() -> dict[str, int]:
        with connection.cursor() as cursor:
            counts = {}
            for table in tables:
                cursor.execute(f"SELECT count(*) FROM {quote(table)} WHERE tenant_id = %s", [worlds.b.tenant.pk])
                counts[table] = cursor.fetchone()[0]
            return counts

    # as the platform, B has rows in many tables (the check below is not vacuous)
    assert sum(1 for n in rows_of_b().values() if n) >= 25

    rls.tenant_scope_enter(worlds.a.tenant.pk)
    try:
        seen = rows_of_b()
    finally:
        rls.tenant_scope_exit()

    assert {table: n for table, n in seen.items() if n} == {}


# WebSocket groups ---------------------------------------------------------------------------


@pytest.fixture
def sockets(worlds, db, settings, monkeypatch):
    """The member socket in-process on the in-memory channel layer, reading the module's rows:
    the consumer's database calls run on this thread's connection, which must stay open."""
    import channels.db

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    monkeypatch.setattr(channels.db, "close_old_connections", lambda: None)


def test_a_member_socket_of_a_cannot_join_or_hear_another_tenants_groups(worlds, sockets):
    from channels.layers import get_channel_layer

    from rewards.notifications import GROUP_MESSAGE_TYPE, frame, member_group
    from tests.realtime.conftest import connected, group_send, points_events, run

    b_member, twin = worlds.b.member, worlds.b_twin  # the twin has A's memberRef, in B
    (b_event,) = points_events(b_member, 1)
    (twin_event,) = points_events(twin, 1)
    (own_event,) = points_events(worlds.a.member, 1)
    b_groups = [
        member_group(b_member.tenant_id, b_member.external_ref),
        member_group(twin.tenant_id, twin.external_ref),
    ]

    async def scenario():
        ws = await connected(worlds.a.member_token)
        # asking by any frame to join B's groups, or to replay B's events, is refused
        for group in b_groups:
            for kind in ("subscribe", "join", "group_add"):
                await ws.send_json_to({"type": kind, "group": group, "tenantId": str(worlds.b.tenant.pk)})
                refused = await ws.receive_json_from()
                assert (refused["type"], refused["code"]) == ("error", "unknown_frame"), refused
        for event in (b_event, twin_event):
            await ws.send_json_to({"type": "resume", "after": str(event.event_id)})
            refused = await ws.receive_json_from()
            assert (refused["code"], refused["field"]) == ("notification_not_found", "after"), refused

        # what B's groups are sent never reaches A's socket: the first frame it gets is its own,
        # sent after them
        layer = get_channel_layer()
        for event, group in ((b_event, b_groups[0]), (twin_event, b_groups[1])):
            await layer.group_send(group, {"type": GROUP_MESSAGE_TYPE, "frame": frame(event), "position": 1})
        await group_send(worlds.a.member, own_event)
        received = await ws.receive_json_from(timeout=30)
        assert received["eventId"] == str(own_event.event_id), received
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize("claims", ["A's tenant, B's member", "B's tenant, A's member"])
def test_a_token_naming_a_member_of_another_tenant_is_refused_on_the_socket(claims, worlds, sockets):
    from tests.realtime.conftest import closed_with, communicator, forged_token, run

    # a token signed with the platform's key whose tenant and member are not of one tenant
    if claims == "A's tenant, B's member":
        token = forged_token(worlds.b.member, tid=str(worlds.a.tenant.pk))
    else:
        token = forged_token(worlds.a.member, tid=str(worlds.b.tenant.pk))

    async def scenario():
        ws = communicator(token=token)
        assert await ws.connect() == (True, "bearer")
        assert await closed_with(ws) == 4401
        await ws.disconnect()

    run(scenario)
