import io
import re

from django.conf import settings
from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, ValidationError
from rest_framework.parsers import JSONParser

from core.api.casing import camel

# Characters that cannot be stored: PostgreSQL refuses NUL in text and jsonb, and an
# unpaired surrogate (JSON allows "\ud800") cannot be encoded as UTF-8 at all.
UNSTORABLE = [
    (re.compile("\x00"), "null_characters", "NUL characters are not allowed."),
    (re.compile("[\ud800-\udfff]"), "surrogate_characters", "Unpaired surrogate characters are not allowed."),
]


class RequestBodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "request_too_large"
    default_detail = "The request body is too large."


def _too_deep(value, max_depth: int) -> bool:
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > max_depth:
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


def _body_within_limit(stream, parser_context, limit: int) -> io.BytesIO:
    """The body, read at most one byte past `limit`: a client that declares or sends more gets a
    413 before the JSON decoder (or memory) pays for it."""
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestBodyTooLarge(f"The request body must not exceed {limit} bytes.")
    body = stream.read(limit + 1)
    if len(body) > limit:
        raise RequestBodyTooLarge(f"The request body must not exceed {limit} bytes.")
    return io.BytesIO(body)


class CamelCaseJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity), then camelCase keys to snake_case.
    Hostile bodies stop here, once for every endpoint: larger than API_MAX_BODY_BYTES is a 413,
    nested deeper than API_MAX_JSON_DEPTH a 400 (deeper JSON would exhaust Python's recursion
    limit somewhere down the line, a server error), and strings holding characters that cannot
    be stored are refused naming the field."""

    def parse(self, stream, media_type=None, parser_context=None):
        max_depth = settings.API_MAX_JSON_DEPTH
        # A view that takes larger bodies by design says so (`max_body_bytes`); none does yet.
        view = (parser_context or {}).get("view")
        limit = getattr(view, "max_body_bytes", None) or settings.API_MAX_BODY_BYTES
        stream = _body_within_limit(stream, parser_context, limit)
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(f"JSON must not nest deeper than {max_depth} levels.") from exc
        if _too_deep(data, max_depth):
            raise ParseError(f"JSON must not nest deeper than {max_depth} levels.")
        data = underscoreize(data, **camel_settings.JSON_UNDERSCOREIZE)
        for pattern, code, message in UNSTORABLE:
            path = _path_of(pattern, data)
            if path is not None:
                # "" is the body itself (a bare JSON string): the request as a whole.
                raise ValidationError({camel(path or "non_field_errors"): [message]}, code=code)
        return data
