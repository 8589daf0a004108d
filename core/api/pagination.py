from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination


class StrictPageSizeMixin:
    """A `pageSize` that is not a whole number from 1 up is a 400 naming it, not silently the
    default; above the maximum it is capped."""

    def get_page_size(self, request):
        value = request.query_params.get(self.page_size_query_param)
        if value is None:
            return self.page_size
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1:
            raise ValidationError({self.page_size_query_param: ["Use a whole number from 1."]}, code="invalid")
        return min(size, self.max_page_size)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
                parameter["description"] = f"Results per page, 1 to {self.max_page_size} (larger is capped)."
        return parameters


class PagePagination(StrictPageSizeMixin, PageNumberPagination):
    """Page pagination for lists: `?page=2&pageSize=100`."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500


class LedgerCursorPagination(StrictPageSizeMixin, CursorPagination):
    """Cursor pagination for ledgers and logs: stable while new rows arrive."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
    ordering = ("-created_at", "-id")
