import re

from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# PostgreSQL cannot store NUL in text or jsonb, and a lone surrogate cannot be encoded as
# UTF-8: either would fail later as a server error, so the body is refused up front.
UNSTORABLE_CHARACTERS = re.compile("[\x00\ud800-\udfff]")


def _has_unstorable_string(data) -> bool:
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if UNSTORABLE_CHARACTERS.search(value):
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


class CamelCaseJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity), then camelCase keys to snake_case."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        if _has_unstorable_string(data):
            raise ParseError("JSON strings must not contain NUL characters or unpaired surrogates.")
        return underscoreize(data, **camel_settings.JSON_UNDERSCOREIZE)
