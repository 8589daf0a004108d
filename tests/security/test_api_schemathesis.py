"""Every documented operation, fuzzed in-process from the OpenAPI schema with a tenant's API
key: no 5xx, every response as documented (status, content type, headers, body), requests that
violate the schema refused, and no operation that answers without credentials or with invalid
ones. Derandomized, so a failure reproduces. Multi-step scenarios along the schema's links:
test_api_schemathesis_stateful.py."""

import json

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from config.wsgi import application

# The schema as /api/schema/ serves it, built at collection time (no database needed then).
# schemathesis.pytest.from_fixture would load it per test, but does not run on pytest 9.
schema = schemathesis.openapi.from_dict(
    json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(request=None, public=True)))
)
schema.app = application


@pytest.fixture
def in_process_app(db, settings):
    # Schemathesis' invalid-credential probes are failed HTTP Basic logins; the lockout after a
    # few of them (429) has its own tests and would hide what the probes are for.
    settings.AXES_ENABLED = False
    # The invalid HTTP Basic probe hashes a password; the production hasher takes most of a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # As Django's test client does: the WSGI handler would otherwise close the connection that
    # holds the test's transaction at the end of each request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


# Generated cases only: the coverage phase (boundary values of every parameter) takes three times
# as long; `schemathesis run` against a server runs it (README).
@schema.parametrize()
@settings(
    max_examples=8, deadline=None, derandomize=True, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
)
def test_api_is_as_documented(case, in_process_app, tenant):
    case.call_and_validate(
        headers={"X-API-Key": tenant.raw_api_key},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
            negative_data_rejection,
            ignored_auth,
        ],
    )
