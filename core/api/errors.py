"""One error shape for every endpoint.

    {"type": "validation_error" | "client_error" | "server_error",
     "errors": [{"code": "...", "detail": "...", "attr": "fieldName" | null}],
     "requestId": "..."}

`attr` names the offending field in the API's own (camelCase) spelling.
"""

from dataclasses import asdict

from django.core.exceptions import ValidationError as DjangoValidationError
from django_guid import get_guid
from drf_standardized_errors.formatter import ExceptionFormatter as BaseFormatter
from drf_standardized_errors.handler import ExceptionHandler as BaseHandler
from rest_framework import exceptions
from rest_framework.exceptions import ErrorDetail
from rest_framework.serializers import as_serializer_error

from core.api.casing import camel
from core.exceptions import DomainError


class DomainAPIException(exceptions.APIException):
    def __init__(self, error: DomainError):
        self.status_code = error.status_code
        detail = ErrorDetail(error.message, code=error.code)
        super().__init__(detail={error.field: [detail]} if error.field else detail, code=error.code)


class ExceptionHandler(BaseHandler):
    def convert_known_exceptions(self, exc: Exception) -> Exception:
        if isinstance(exc, DomainError):
            return DomainAPIException(exc)
        if isinstance(exc, DjangoValidationError):
            return exceptions.ValidationError(as_serializer_error(exc))
        return super().convert_known_exceptions(exc)

    def report_exception(self, exc, response) -> None:
        # A domain refusal answered with a 5xx (503: the payment gateway is down) is an answer,
        # not a crash: the service logs it; it is not reported as an unhandled exception.
        if isinstance(exc, DomainAPIException):
            return
        super().report_exception(exc, response)


class ExceptionFormatter(BaseFormatter):
    def format_error_response(self, error_response):
        for error in error_response.errors:
            if error.attr:
                error.attr = camel(error.attr)
        body = asdict(error_response)
        body["request_id"] = get_guid()
        return body
