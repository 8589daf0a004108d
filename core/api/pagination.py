from rest_framework.pagination import CursorPagination, PageNumberPagination


class PagePagination(PageNumberPagination):
    """Page pagination for lists: `?page=2&pageSize=100`."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500


class LedgerCursorPagination(CursorPagination):
    """Cursor pagination for ledgers and logs: stable while new rows arrive."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
    ordering = ("-created_at", "-id")
