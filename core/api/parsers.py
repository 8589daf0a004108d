import re

from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from core.api.casing import camel

# Characters that cannot be stored: PostgreSQL refuses NUL in text and jsonb, and an
# unpaired surrogate (JSON allows "\ud800") cannot be encoded as UTF-8 at all.
UNSTORABLE = [
    (re.compile("\x00"), "null_characters", "NUL characters are not allowed."),
    (re.compile("[\ud800-\udfff]"), "surrogate_characters", "Unpaired surrogate characters are not allowed."),
]

# Deeper JSON would exhaust Python's recursion limit somewhere down the line (a server error).
MAX_DEPTH = 64


def _too_deep(value) -> bool:
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return False


def _path_of(pattern: re.Pattern, value, path: str = "") -> str | None:
    """Where a string matching `pattern` hides in parsed JSON."""
    if isinstance(value, str):
        return path if pattern.search(value) else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and pattern.search(key):
            return path or "non_field_errors"
        if isinstance(key, str) and any(other.search(key) for other, _, _ in UNSTORABLE):
            # A key that cannot be written back either: name where it is, not the key itself.
            inner = _path_of(pattern, item, path)
            if inner is not None:
                return path or "non_field_errors"
            continue
        found = _path_of(pattern, item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


class CamelCaseJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity), then camelCase keys to snake_case.
    Strings holding characters that cannot be stored are refused here, naming the field."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON must not nest deeper than {MAX_DEPTH} levels.") from exc
        if _too_deep(data):
            raise ParseError(f"JSON must not nest deeper than {MAX_DEPTH} levels.")
        data = underscoreize(data, **camel_settings.JSON_UNDERSCOREIZE)
        for pattern, code, message in UNSTORABLE:
            path = _path_of(pattern, data)
            if path is not None:
                raise ValidationError({camel(path): [message]}, code=code)
        return data
