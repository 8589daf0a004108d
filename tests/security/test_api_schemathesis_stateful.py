"""Multi-step scenarios over the documented API, in-process with a tenant's API key: Schemathesis'
state machine chains operations along the schema's OpenAPI `links` (core/api/schema.py,
RESPONSE_LINKS): create a member, then read, change, delete it and read it again; create a
catalog item, then replace or delete it; create a campaign and activate it, and so on. Every step
must answer as documented: no 5xx, the documented status, content type, headers and body;
schema-violating requests refused; a created resource readable at once and a deleted one gone;
credentials enforced; and what one tenant can read, another tenant gets a 404 for."""

import copy
import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    use_after_free,
)

from config.wsgi import application
from core.api.schema import RESPONSE_LINKS

# The schema as /api/schema/ serves it, built at collection time (no database needed then).
RAW_SCHEMA = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))


def load_schema(*, inferred_links: bool):
    """The schema for Schemathesis. `inferred_links` adds the links Schemathesis infers from
    matching field names (e.g. a `memberRef` in one response feeding a `{member_ref}`) to the
    documented ones; without it the scenarios follow only the documented links."""
    config = SchemathesisConfig.from_dict(
        {
            # The API refuses NUL characters in any string (400 `null_characters`: PostgreSQL
            # text cannot hold them), so a request carrying one is not schema-valid data.
            "generation": {"allow-x00": False},
            "phases": {"stateful": {"inference": {"algorithms": ["dependency-analysis"] if inferred_links else []}}},
        }
    )
    schema = schemathesis.openapi.from_dict(copy.deepcopy(RAW_SCHEMA), config=config)
    schema.app = application
    return schema


class Tenants:
    """The API keys the scenarios call with (set by the test, as the state machine is a class)."""

    own_key = ""
    other_key = ""
    # (operation, status) of every step that followed a link with the values it carried.
    followed: list[tuple[str, int]] = []


def other_tenant_is_refused(ctx, response, case):
    """A resource one tenant reads is a 404 for another tenant, not its data nor a 403."""
    if case.method != "GET" or not case.path_parameters or not 200 <= response.status_code < 300:
        return None
    answer = case.call(headers={"X-API-Key": Tenants.other_key})
    assert answer.status_code == 404, (
        f"{case.method} {case.formatted_path} is {response.status_code} for its tenant and "
        f"{answer.status_code} for another tenant, not 404"
    )
    return None


# Whether an operation refuses missing and invalid credentials is a property of the operation, so
# it is probed once per operation (the probes are five more requests), as `schemathesis run` does.
AUTH_ENFORCED: set[str] = set()


def ignored_auth_once(ctx, response, case):
    ctx.auth_enforced_operations = AUTH_ENFORCED
    return ignored_auth(ctx, response, case)


# Every check that applies to a stateful step. Not here: missing_required_header and
# unsupported_method judge the coverage phase's cases, allow_header_conformance OPTIONS requests,
# object_level_authorization needs Schemathesis' identity configuration (other_tenant_is_refused is
# this API's own object-level check), and positive_data_acceptance wants every schema-valid body
# accepted, while the serializers refuse with a 400 naming the field what the schema does not
# spell out: a reference to an object that does not exist, an MCC that is not four digits, a
# decimal string below its minimum, a locale key that is not a BCP 47 tag, a campaign rule's shape.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    use_after_free,
    ensure_resource_availability,
    ignored_auth_once,
    other_tenant_is_refused,
]


def workflow(schema):
    class Workflow(schema.as_state_machine()):
        # Each scenario starts from the same database, so a failing one replays as it ran.
        def setup(self):
            super().setup()
            self.savepoint = transaction.savepoint()

        def teardown(self):
            transaction.savepoint_rollback(self.savepoint)
            super().teardown()

        def step(self, input):
            output = super().step(input)
            if input.transition is not None and input.is_applied:
                Tenants.followed.append((output.case.operation.label, output.response.status_code))
            return output

        def get_call_kwargs(self, case):
            return {"headers": {"X-API-Key": Tenants.own_key}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            # The key is named as the caller's own header, so ignored_auth knows it for valid
            # credentials and probes without it and with invalid ones.
            case.validate_response(
                response,
                checks=CHECKS,
                headers=kwargs["headers"],
                transport_kwargs=kwargs,
                recorder=self.recorder,
            )

    return Workflow


DocumentedWorkflow = workflow(load_schema(inferred_links=False))
DocumentedAndInferredWorkflow = workflow(load_schema(inferred_links=True))


@pytest.fixture
def in_process_app(db, settings, tenant, other_tenant):
    # As in test_api_schemathesis.py: no admin lockout for the invalid-credential probes, and the
    # test's transaction kept across requests.
    settings.AXES_ENABLED = False
    # The invalid HTTP Basic probe hashes a password; the production hasher takes most of a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    Tenants.own_key, Tenants.other_key = tenant.raw_api_key, other_tenant.raw_api_key
    AUTH_ENFORCED.clear()
    Tenants.followed = []
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def scenario_settings(max_examples: int, steps: int):
    return settings(
        max_examples=max_examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def test_every_documented_link_names_an_operation_and_its_path_parameters():
    operations = {
        operation["operationId"]: operation
        for path_item in RAW_SCHEMA["paths"].values()
        for operation in path_item.values()
        if isinstance(operation, dict)
    }
    published = 0
    for (source_id, status), links in RESPONSE_LINKS.items():
        assert status in operations[source_id]["responses"], (source_id, status)
        assert operations[source_id]["responses"][status]["links"] == links
        for name, link in links.items():
            target = operations[link["operationId"]]
            path_parameters = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
            assert set(link["parameters"]) == path_parameters, name
            published += 1
    assert published >= 40


def test_documented_workflows(in_process_app):
    DocumentedWorkflow.run(settings=scenario_settings(max_examples=40, steps=8))
    # The scenarios went past the creates: links were followed to what they created.
    reached = {operation for operation, status in Tenants.followed if 200 <= status < 300}
    assert len(reached) >= 3, Tenants.followed


# `make test-slow`: more and longer scenarios, along the inferred links too (about 280 in all).
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_documented_and_inferred_workflows_thoroughly(in_process_app):
    DocumentedAndInferredWorkflow.run(settings=scenario_settings(max_examples=150, steps=10))
