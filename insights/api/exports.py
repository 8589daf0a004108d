"""The analytics export: `GET /api/v1/exports/transfers` and `GET /api/v1/exports/incentives`.

A warehouse loader (tenant API key) reads JSON Lines after a cursor, page by page, and gets
every row once, in order, even while writes keep arriving. The next cursor travels in the
`X-Next-Cursor` header, so the body is nothing but rows; errors keep the API's JSON shape.
"""

import json
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_standardized_errors.openapi_validation_errors import extend_validation_errors
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer

from campaigns.models import Incentive
from core.api.renderers import CamelCaseJSONRenderer
from core.api.schema import AutoSchema
from core.api.views import TenantAPIView
from core.changefeed import InvalidCursor
from insights.exports import INCENTIVES, TRANSFERS, Feed, export_cursor_read, export_page
from rewards.models import Account, Transfer

DEFAULT_LIMIT = 1000
JSON_LINES = "application/x-ndjson"


class JSONLinesRenderer(BaseRenderer):
    """One compact JSON object per line, UTF-8, each line ending in a newline."""

    media_type = JSON_LINES
    format = "jsonl"
    charset = None  # JSON is UTF-8 by definition

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return "".join(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n" for row in data).encode()


class ExportAutoSchema(AutoSchema):
    """Rows are JSON Lines; the errors stay `application/json`, as the view answers them."""

    def _get_format_parameters(self):
        # A `format` override would only choose how errors render, and they are always JSON.
        return []

    def _get_response_for_code(self, serializer, status_code, media_types=None, direction="response"):
        if media_types is None and str(status_code) != "200":
            media_types = ["application/json"]
        return super()._get_response_for_code(serializer, status_code, media_types, direction)


class ExportQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Where to read on from: the `X-Next-Cursor` of the previous page. "
        "Left out (or empty), the feed is read from its start.",
    )

    def __init__(self, *args, feed: Feed | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.feed = feed

    def get_fields(self):
        # The page size's bound is a setting: read it when the fields are built, not at import.
        fields = super().get_fields()
        most = settings.EXPORT_PAGE_MAX
        fields["limit"] = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=most,
            default=min(DEFAULT_LIMIT, most),
            help_text=f"Rows per page, at most {most}.",
        )
        return fields

    def validate_cursor(self, value: str):
        try:
            return export_cursor_read(feed=self.feed, value=value)
        except InvalidCursor as error:
            raise serializers.ValidationError(str(error), code="invalid") from error


class ExportAccountSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text=f"One of {', '.join(Account.Kind.values)}.")
    member_ref = serializers.CharField(allow_null=True, help_text="The member's, for a member's account.")


# The row serializers document the lines; insights.exports maps the rows (no serializer per row).


class TransferExportRowSerializer(serializers.Serializer):
    """One line of the transfers export: a ledger transfer, immutable once written."""

    id = serializers.UUIDField()
    kind = serializers.CharField(help_text=f"One of {', '.join(Transfer.Kind.values)}.")
    amount = serializers.IntegerField(help_text="Points moved, always positive: from debit to credit.")
    debit_account = ExportAccountSerializer()
    credit_account = ExportAccountSerializer()
    member_ref = serializers.CharField(allow_null=True, help_text="The member on either side, if any.")
    reason = serializers.CharField()
    reference_type = serializers.CharField(help_text="What caused it: event, incentive, redemption, ...")
    reference_id = serializers.CharField()
    idempotency_key = serializers.CharField()
    explanation = serializers.JSONField(help_text="How the amount was computed.")
    created_at = serializers.DateTimeField()
    debit_balance_after = serializers.IntegerField(allow_null=True, help_text="Null for a system account.")
    credit_balance_after = serializers.IntegerField(allow_null=True, help_text="Null for a system account.")


class IncentiveExportRowSerializer(serializers.Serializer):
    """One line of the incentives export: an incentive a campaign issued, as it stood when read."""

    id = serializers.UUIDField()
    campaign_id = serializers.UUIDField()
    member_ref = serializers.CharField()
    type = serializers.CharField(help_text=f"One of {', '.join(Incentive.Type.values)}.")
    reward_currency = serializers.CharField(help_text="POINTS, COUPON, or the tenant's currency.")
    reward_amount = serializers.DecimalField(max_digits=18, decimal_places=4)
    reversed_amount = serializers.DecimalField(max_digits=18, decimal_places=4)
    status = serializers.CharField(help_text=f"One of {', '.join(Incentive.Status.values)}, when the page was read.")
    event_id = serializers.CharField(help_text="The inbound event that caused it.")
    coupon_code = serializers.CharField(allow_null=True)
    explanation = serializers.JSONField()
    issued_at = serializers.DateTimeField()
    reversed_at = serializers.DateTimeField(allow_null=True)


RESPONSE_HEADERS = [
    OpenApiParameter(
        "X-Next-Cursor",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        description="Send as `cursor` for the next page. When the page is empty it is the cursor "
        "that was sent (empty from the start): poll again with it later.",
    ),
    OpenApiParameter(
        "X-Has-More",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        enum=["true", "false"],
        description="`true` when more rows were ready beyond this page: read on at once. `false`: "
        "the feed is drained for now; rows still being written appear on a later poll.",
    ),
    OpenApiParameter(
        "Link",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200],
        description='`<url>; rel="next"`, the next page\'s URL, present only with `X-Has-More: true`.',
    ),
]

DESCRIPTION = (
    "JSON Lines (`{media}`): one JSON object per line, nothing else, oldest first. Read from the "
    "start without `cursor`, then send each page's `X-Next-Cursor` as `cursor`. Pages hold only rows "
    "whose transactions had all finished, in commit-safe order, so a loader that follows the cursor "
    "gets every {what} exactly once, even while they keep being written. A row shows once every "
    "transaction older than it has finished, so a long transaction on the database server delays "
    "the feed; it never drops a row."
)


class ExportApi(TenantAPIView):
    """A change feed export; subclasses name the feed. The tenant's API key or an operator
    reads it (IsTenantClient, the default); a member token is refused."""

    feed: Feed
    schema = ExportAutoSchema()
    # JSON Lines is what a successful page is; listed so that `Accept: application/x-ndjson`
    # negotiates. Errors are JSON whatever the client accepts (see handle_exception).
    renderer_classes = [CamelCaseJSONRenderer, JSONLinesRenderer]

    def get(self, request):
        query = ExportQuerySerializer(data=request.query_params.dict(), feed=self.feed)
        query.is_valid(raise_exception=True)
        limit = query.validated_data["limit"]
        page = export_page(feed=self.feed, tenant=self.tenant, cursor=query.validated_data.get("cursor"), limit=limit)

        next_cursor = page.cursor.encode() if page.cursor is not None else ""
        headers = {
            "X-Next-Cursor": next_cursor,
            "X-Has-More": "true" if page.has_more else "false",
            # Each page's content depends on the moment it is read: never serve it from a cache.
            "Cache-Control": "no-store",
        }
        if page.has_more:
            url = request.build_absolute_uri(request.path) + "?" + urlencode({"cursor": next_cursor, "limit": limit})
            headers["Link"] = f'<{url}>; rel="next"'
        return HttpResponse(JSONLinesRenderer().render(page.rows), content_type=JSON_LINES, headers=headers)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = CamelCaseJSONRenderer()
        self.request.accepted_media_type = CamelCaseJSONRenderer.media_type
        return response


def _schema(*, operation_id: str, summary: str, what: str, row: type[serializers.Serializer]):
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        description=DESCRIPTION.format(media=JSON_LINES, what=what),
        parameters=[ExportQuerySerializer, *RESPONSE_HEADERS],
        responses={(200, JSON_LINES): OpenApiResponse(row, description=f"One {what} per line.")},
    )


def _validation_errors(view):
    view = extend_validation_errors(["invalid", "max_length"], field_name="cursor", methods=["get"])(view)
    return extend_validation_errors(["invalid", "min_value", "max_value"], field_name="limit", methods=["get"])(view)


@_validation_errors
class TransferExportApi(ExportApi):
    feed = TRANSFERS

    @_schema(
        operation_id="exports_transfers",
        summary="Export ledger transfers",
        what="transfer",
        row=TransferExportRowSerializer,
    )
    def get(self, request):
        return super().get(request)


@_validation_errors
class IncentiveExportApi(ExportApi):
    feed = INCENTIVES

    @_schema(
        operation_id="exports_incentives",
        summary="Export campaign incentives",
        what="incentive",
        row=IncentiveExportRowSerializer,
    )
    def get(self, request):
        return super().get(request)


urlpatterns = [
    path("exports/transfers", TransferExportApi.as_view(), name="export-transfers"),
    path("exports/incentives", IncentiveExportApi.as_view(), name="export-incentives"),
]
