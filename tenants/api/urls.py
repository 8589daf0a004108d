from django.urls import include, path

from tenants.api import views

urlpatterns = [
    path("tenants", views.TenantListCreateApi.as_view(), name="tenant-list"),
    path("tenants/<str:tenant_id>", views.TenantDetailApi.as_view(), name="tenant-detail"),
    path("tenants/<str:tenant_id>/limits", views.TenantLimitsApi.as_view(), name="tenant-limits"),
    path("tenants/<str:tenant_id>/user-limits", views.TenantUserLimitsApi.as_view(), name="tenant-user-limits"),
    path("tenants/<str:tenant_id>/api-keys", views.ApiKeyListCreateApi.as_view(), name="tenant-api-keys"),
    path(
        "tenants/<str:tenant_id>/api-keys/<str:key_id>:revoke",
        views.ApiKeyRevokeApi.as_view(),
        name="tenant-api-key-revoke",
    ),
    path("", include("tenants.api.webhook_urls")),
]
