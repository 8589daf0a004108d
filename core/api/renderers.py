from djangorestframework_camel_case.render import CamelCaseJSONRenderer as _CamelCaseJSONRenderer


class CamelCaseJSONRenderer(_CamelCaseJSONRenderer):
    """snake_case in Python, camelCase on the wire."""
