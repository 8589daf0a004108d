from rest_framework import serializers

from tenants.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

EVENT_TYPES_HELP = 'Event types to send, e.g. ["incentive.generated", "points.credited"]; empty or ["*"]: all.'


class WebhookEventTypeField(serializers.CharField):
    """A string, never a number turned into one: event types are names."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WebhookEventTypesField(serializers.ListField):
    child = WebhookEventTypeField(max_length=64, allow_blank=False, trim_whitespace=True)


class WebhookEndpointWriteSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, help_text="http(s); must resolve to public addresses only.")
    description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    event_types = WebhookEventTypesField(required=False, default=list, max_length=100, help_text=EVENT_TYPES_HELP)
    is_active = serializers.BooleanField(required=False, default=True)


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.URLField(max_length=2000, required=False)
    description = serializers.CharField(max_length=200, required=False, allow_blank=True)
    event_types = WebhookEventTypesField(required=False, max_length=100, help_text=EVENT_TYPES_HELP)
    is_active = serializers.BooleanField(required=False)


class WebhookEndpointSerializer(serializers.ModelSerializer):
    webhook_id = serializers.UUIDField(source="id", read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["webhook_id", "url", "description", "event_types", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The signing secret. Shown only in this response (create, rotate-secret); store it now.",
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["at", "status_code", "error", "response_body", "duration_ms"]
        read_only_fields = fields


class WebhookDeliverySerializer(serializers.ModelSerializer):
    delivery_id = serializers.UUIDField(source="id", read_only=True)
    webhook_id = serializers.UUIDField(source="endpoint_id", read_only=True)
    log = WebhookAttemptSerializer(
        source="attempt_log", many=True, read_only=True, help_text="Every attempt, oldest first."
    )

    class Meta:
        model = WebhookDelivery
        fields = [
            "delivery_id",
            "webhook_id",
            "event_id",
            "event_type",
            "position",
            "status",
            "attempts",
            "replays",
            "next_attempt_at",
            "first_attempt_at",
            "last_attempt_at",
            "last_status_code",
            "last_error",
            "delivered_at",
            "dead_lettered_at",
            "created_at",
            "payload",
            "log",
        ]
        read_only_fields = fields


class WebhookDeliveryQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices, required=False)


class WebhookReplayedSerializer(serializers.Serializer):
    replayed = serializers.IntegerField(help_text="Dead letters put back in the queue.")
