from django.urls import path

from tenants.api import webhook_views as views

# The uuid converter keeps `{id}:action` from matching the detail route.
urlpatterns = [
    path("webhooks", views.WebhookEndpointListCreateApi.as_view(), name="webhook-list"),
    path("webhooks/<uuid:webhook_id>", views.WebhookEndpointDetailApi.as_view(), name="webhook-detail"),
    path(
        "webhooks/<uuid:webhook_id>:rotate-secret",
        views.WebhookEndpointRotateSecretApi.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "webhooks/<uuid:webhook_id>:replay-dead-letters",
        views.WebhookDeadLettersReplayApi.as_view(),
        name="webhook-replay-dead-letters",
    ),
    path("webhooks/<uuid:webhook_id>/deliveries", views.WebhookDeliveryListApi.as_view(), name="webhook-deliveries"),
    path(
        "webhooks/<uuid:webhook_id>/deliveries/<uuid:delivery_id>:replay",
        views.WebhookDeliveryReplayApi.as_view(),
        name="webhook-delivery-replay",
    ),
]
