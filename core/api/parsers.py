from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import JSONParser

from core.api.casing import camel


def _nul_path(value, path: str = "") -> str | None:
    """Where a NUL character hides in parsed JSON (PostgreSQL refuses it in text and jsonb)."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and "\x00" in key:
            return path or "non_field_errors"
        found = _nul_path(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class CamelCaseJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity), then camelCase keys to snake_case.
    Strings holding NUL characters are refused here, naming the field."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = underscoreize(super().parse(stream, media_type, parser_context), **camel_settings.JSON_UNDERSCOREIZE)
        path = _nul_path(data)
        if path is not None:
            raise ValidationError({camel(path): ["NUL characters are not allowed."]}, code="null_characters")
        return data
