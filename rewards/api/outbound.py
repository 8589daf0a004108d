"""The event log: what the platform emitted, for audit and for rebuilding a consumer's state."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from core.api.views import TenantAPIView
from rewards import selectors
from rewards.relay import envelope


class OutboundEventSerializer(serializers.Serializer):
    event_id = serializers.UUIDField()
    type = serializers.CharField()
    tenant_id = serializers.UUIDField()
    occurred_at = serializers.DateTimeField()
    schema_version = serializers.IntegerField()
    correlation_id = serializers.CharField(help_text="The request id of what caused it.")
    member_ref = serializers.CharField(allow_blank=True)
    position = serializers.IntegerField(help_text="The platform's order of events.")
    data = serializers.JSONField()


class OutboundEventPageSerializer(serializers.Serializer):
    results = OutboundEventSerializer(many=True)
    last_event_id = serializers.UUIDField(allow_null=True, help_text="Send as `after` for the next page.")


class OutboundEventQuerySerializer(serializers.Serializer):
    type = serializers.CharField(required=False, max_length=64, help_text="Only events of this type.")
    memberRef = serializers.CharField(required=False, max_length=128, help_text="Only this member's events.")  # noqa: N815
    after = serializers.UUIDField(required=False, help_text="Only events after this one (its eventId).")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=100)


class OutboundEventListApi(TenantAPIView):
    @extend_schema(
        summary="The event log",
        description="Outbound events of the tenant in the order they were emitted (`position`), as "
        "webhooks carry them. Page with `after` = the last `eventId` seen (`lastEventId`).",
        parameters=[OutboundEventQuerySerializer],
        responses=OutboundEventPageSerializer,
    )
    def get(self, request):
        query = OutboundEventQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        data = query.validated_data
        events = selectors.outbound_event_list(
            tenant=self.tenant,
            type=data.get("type"),
            member_ref=data.get("memberRef"),
            after=data.get("after"),
            limit=data["limit"],
        )
        results = [envelope(event) for event in events]
        return Response({"results": results, "last_event_id": results[-1]["eventId"] if results else None})
