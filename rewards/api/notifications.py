"""The member's missed notifications: `GET /api/v1/me/notifications?after={eventId}&limit=`.

The same frames the WebSocket (`/ws`) sends, oldest first, for an app that was offline. A
member token only: this is the member's own feed, so a tenant API key is refused (403).
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.permissions import IsMember
from core.api.renderers import CamelCaseJSONRenderer
from core.api.schema import domain_errors
from rewards.notifications import FRAMES, member_notifications

DEFAULT_LIMIT = 100
MAX_LIMIT = 500


class FrameRenderer(CamelCaseJSONRenderer):
    """Frames are already spelled as the WebSocket sends them: keys inside `results` are kept."""

    json_underscoreize = {
        **settings.JSON_CAMEL_CASE["JSON_UNDERSCOREIZE"],
        "ignore_fields": (*settings.JSON_CAMEL_CASE["JSON_UNDERSCOREIZE"]["ignore_fields"], "results"),
    }


class NotificationQuerySerializer(serializers.Serializer):
    after = serializers.CharField(
        required=False, allow_blank=True, help_text="The id of the last event received (its `eventId`)."
    )
    limit = serializers.IntegerField(
        required=False, default=DEFAULT_LIMIT, min_value=1, max_value=MAX_LIMIT, help_text="At most 500."
    )


class NotificationFrameSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=sorted(set(FRAMES.values())))
    event_id = serializers.UUIDField(help_text="The outbound event's id: de-duplicate and resume by it.")


class NotificationPageSerializer(serializers.Serializer):
    results = NotificationFrameSerializer(
        many=True,
        help_text=(
            "Frames, oldest first. INCENTIVE_NOTIFICATION: incentiveId, campaignId, reward {currency, amount}, "
            "issuedAt. POINTS_UPDATED: points (negative for a debit or expiry), balance, reason, occurredAt. "
            "POINTS_EXPIRING: points, expiresAt. REDEMPTION_STATUS: redemptionId, status, and the "
            "redemption's details. TIER_CHANGED: tierId, previousTierId, reason, assignedAt."
        ),
    )
    last_event_id = serializers.CharField(
        allow_null=True, help_text="The `after` of the next call: the last frame's eventId, or `after` when none."
    )


class MeNotificationListApi(APIView):
    permission_classes = [IsMember]
    renderer_classes = [FrameRenderer]

    @extend_schema(
        summary="The member's notifications after an event (what the WebSocket sent while offline)",
        description=(
            "Without `after`, the member's first notifications. Call again with `after=lastEventId` "
            "until `results` is empty. A member token only."
        ),
        parameters=[NotificationQuerySerializer],
        responses={
            200: NotificationPageSerializer,
            **domain_errors(e404="`after` is not the id of one of the member's events"),
        },
        examples=[
            OpenApiExample(
                "Two frames",
                response_only=True,
                value={
                    "results": [
                        {
                            "type": "POINTS_UPDATED",
                            "eventId": "5b0f3d1e-8a57-4a43-9a7e-0d5c2b1f6a10",
                            "points": 120,
                            "balance": 1520,
                            "reason": "Purchase",
                            "occurredAt": "2025-05-01T09:30:00+00:00",
                        },
                        {
                            "type": "INCENTIVE_NOTIFICATION",
                            "eventId": "0a4c6f7e-2d1b-4f5e-8c3a-9b8d7e6f5a41",
                            "incentiveId": "3f2c1b0a-9e8d-4c7b-a6f5-e4d3c2b1a090",
                            "campaignId": "7e6d5c4b-3a29-4180-9f8e-7d6c5b4a3928",
                            "reward": {"currency": "POINTS", "amount": 50},
                            "issuedAt": "2025-05-01T09:30:00Z",
                        },
                    ],
                    "lastEventId": "0a4c6f7e-2d1b-4f5e-8c3a-9b8d7e6f5a41",
                },
            )
        ],
    )
    def get(self, request):
        query = NotificationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data.get("after") or None
        frames = member_notifications(member=request.user.member, after=after, limit=query.validated_data["limit"])
        return Response({"results": frames, "last_event_id": frames[-1]["eventId"] if frames else after})
