"""The schema documents error codes as open sets, and the 400 `validation_error` of a GET whose
query parameters are validated."""

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def test_error_codes_are_open_strings_not_closed_enums(schema):
    schemas = schema["components"]["schemas"]

    for name in ("ErrorCode404Enum", "ParseErrorCodeEnum"):
        assert schemas[name]["type"] == "string" and "enum" not in schemas[name]
    assert "member_not_found" in schemas["ErrorCode404Enum"]["description"]


def test_a_field_error_names_any_field_and_code(schema):
    error = schema["components"]["schemas"]["ApiV1CatalogItemsPartialUpdateError"]

    assert "oneOf" not in error and "discriminator" not in error
    assert error["properties"]["code"]["type"] == error["properties"]["attr"]["type"] == "string"
    assert "`pointCost`" in error["properties"]["attr"]["description"]


def test_a_get_with_query_parameters_documents_its_validation_error(schema):
    ref = schema["paths"]["/api/v1/catalog/items"]["get"]["responses"]["400"]["content"]["application/json"]["schema"]
    response400 = schema["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]

    assert set(response400["discriminator"]["mapping"]) == {"client_error", "validation_error"}
