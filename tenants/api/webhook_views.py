from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response

from core.api.pagination import LedgerCursorPagination
from core.api.schema import domain_errors
from core.api.views import TenantAPIView
from tenants import selectors
from tenants.api.webhook_serializers import (
    WebhookDeliveryQuerySerializer,
    WebhookDeliverySerializer,
    WebhookEndpointSerializer,
    WebhookEndpointUpdateSerializer,
    WebhookEndpointWithSecretSerializer,
    WebhookEndpointWriteSerializer,
    WebhookReplayedSerializer,
)
from tenants.models import WebhookDelivery, WebhookEndpoint
from tenants.webhooks import (
    webhook_dead_letters_replay,
    webhook_delivery_replay,
    webhook_endpoint_create,
    webhook_endpoint_deactivate,
    webhook_endpoint_secret_rotate,
    webhook_endpoint_update,
)

SSRF_NOTE = (
    "The URL must be http(s) and its host must resolve only to public addresses (private, "
    "loopback, link-local, multicast and reserved addresses are a 400 on `url`)."
)


class WebhookEndpointListCreateApi(TenantAPIView, ListAPIView):
    serializer_class = WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.none()  # for the schema; requests use get_queryset
    filter_backends = []

    def get_queryset(self):
        return selectors.webhook_endpoint_list(tenant=self.tenant)

    @extend_schema(summary="List webhook endpoints (secrets are never shown again)")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Create a webhook endpoint",
        description='Events of the listed types (all when `eventTypes` is empty or `["*"]`) are POSTed '
        "to the URL, signed with the secret in this response (shown once). " + SSRF_NOTE,
        request=WebhookEndpointWriteSerializer,
        responses={201: WebhookEndpointWithSecretSerializer},
    )
    def post(self, request):
        serializer = WebhookEndpointWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_create(tenant=self.tenant, **serializer.validated_data)
        return Response(WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookEndpointDetailApi(TenantAPIView):
    def endpoint(self) -> WebhookEndpoint:
        return selectors.webhook_endpoint_get(tenant=self.tenant, endpoint_id=self.kwargs["webhook_id"])

    @extend_schema(summary="Get a webhook endpoint", responses=WebhookEndpointSerializer)
    def get(self, request, webhook_id):
        return Response(WebhookEndpointSerializer(self.endpoint()).data)

    @extend_schema(
        summary="Change a webhook endpoint",
        description="Only the fields sent change. " + SSRF_NOTE,
        request=WebhookEndpointUpdateSerializer,
        responses=WebhookEndpointSerializer,
    )
    def patch(self, request, webhook_id):
        endpoint = self.endpoint()
        serializer = WebhookEndpointUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(endpoint=endpoint, **serializer.validated_data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Deactivate a webhook endpoint",
        description="Nothing more is sent to it; it and its delivery log are kept, and deliveries still "
        'pending wait (`PATCH {"isActive": true}` resumes them).',
        request=None,
        responses={204: None},
    )
    def delete(self, request, webhook_id):
        webhook_endpoint_deactivate(endpoint=self.endpoint())
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointRotateSecretApi(TenantAPIView):
    @extend_schema(
        summary="Rotate a webhook endpoint's secret",
        description="The old secret stops at once: attempts from now on are signed with the new one, "
        "shown in this response only.",
        operation_id="webhook_rotate_secret",
        request=None,
        responses=WebhookEndpointWithSecretSerializer,
    )
    def post(self, request, webhook_id):
        endpoint = selectors.webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        return Response(WebhookEndpointWithSecretSerializer(webhook_endpoint_secret_rotate(endpoint=endpoint)).data)


class WebhookDeadLettersReplayApi(TenantAPIView):
    @extend_schema(
        summary="Replay a webhook endpoint's dead letters",
        description="Every dead-lettered delivery goes back in the queue, due now, with a fresh retry budget.",
        operation_id="webhook_replay_dead_letters",
        request=None,
        responses=WebhookReplayedSerializer,
    )
    def post(self, request, webhook_id):
        endpoint = selectors.webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        return Response(WebhookReplayedSerializer({"replayed": webhook_dead_letters_replay(endpoint=endpoint)}).data)


class WebhookDeliveryListApi(TenantAPIView, ListAPIView):
    serializer_class = WebhookDeliverySerializer
    pagination_class = LedgerCursorPagination
    queryset = WebhookDelivery.objects.none()  # for the schema; requests use get_queryset
    filter_backends = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        endpoint = selectors.webhook_endpoint_get(tenant=self.tenant, endpoint_id=self.kwargs["webhook_id"])
        query = WebhookDeliveryQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.webhook_delivery_list(
            tenant=self.tenant, endpoint=endpoint, status=query.validated_data.get("status")
        )

    @extend_schema(
        summary="A webhook endpoint's delivery log (cursor-paginated, newest first)",
        description="Each delivery with its attempts: when, the status code or the error, the first "
        "kilobyte of the answer and how long it took.",
        parameters=[WebhookDeliveryQuerySerializer],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class WebhookDeliveryReplayApi(TenantAPIView):
    @extend_schema(
        summary="Replay a dead-lettered webhook delivery",
        description="Back in the queue, due now, as a new series of attempts with the full retry budget.",
        operation_id="webhook_delivery_replay",
        request=None,
        responses={200: WebhookDeliverySerializer, **domain_errors(e409="not_dead_lettered")},
    )
    def post(self, request, webhook_id, delivery_id):
        endpoint = selectors.webhook_endpoint_get(tenant=self.tenant, endpoint_id=webhook_id)
        delivery = selectors.webhook_delivery_get(tenant=self.tenant, endpoint=endpoint, delivery_id=delivery_id)
        webhook_delivery_replay(delivery=delivery)
        delivery = selectors.webhook_delivery_get(tenant=self.tenant, endpoint=endpoint, delivery_id=delivery_id)
        return Response(WebhookDeliverySerializer(delivery).data)
