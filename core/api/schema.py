from drf_spectacular.utils import OpenApiParameter
from drf_standardized_errors.openapi import AutoSchema as StandardizedErrorsAutoSchema

from core.api.casing import camel

IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description=(
        "Makes a retry safe: the same key with the same body replays the first response "
        "(`Idempotent-Replayed: true`); with another body it is a 422; while the first "
        "request is still running, a 409. Keys are kept at least 24 hours."
    ),
)


class AutoSchema(StandardizedErrorsAutoSchema):
    """Documents the standard error responses of every endpoint."""


def camelize_error_attrs(result, generator, request, public):
    """The error `attr` names fields as the wire spells them (camelCase)."""
    for name, schema in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("AttrEnum") and "enum" in schema:
            schema["enum"] = [camel(value) if isinstance(value, str) else value for value in schema["enum"]]
        attr = schema.get("properties", {}).get("attr")
        if isinstance(attr, dict) and "enum" in attr:
            attr["enum"] = [camel(value) if isinstance(value, str) else value for value in attr["enum"]]
    return result
