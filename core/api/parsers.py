from djangorestframework_camel_case.settings import api_settings as camel_settings
from djangorestframework_camel_case.util import underscoreize
from rest_framework.parsers import JSONParser


class CamelCaseJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity), then camelCase keys to snake_case."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        return underscoreize(data, **camel_settings.JSON_UNDERSCOREIZE)
