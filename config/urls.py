from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.static import serve
from django_prometheus.exports import ExportToDjangoView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health
from core.api.baseline import BaselineApi

api_v1 = [
    path("", include("tenants.api.urls")),
    path("", include("rewards.api.urls")),
    path("", include("campaigns.api.urls")),
    path("", include("tiers.api.urls")),
    path("", include("catalog.api.urls")),
    path("", include("redemptions.api.urls")),
    path("", include("insights.api.urls")),
]

urlpatterns = [
    path("health", health.health, name="health"),
    path("ready", health.ready, name="ready"),
    path("metrics", ExportToDjangoView, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("admin/", admin.site.urls),
    path("_bench/baseline", BaselineApi.as_view(), name="bench-baseline"),  # 404 unless BENCH_BASELINE_ENDPOINT
    path("demo/", include("config.demo")),  # the member demo app; 404 unless DEMO_APP_ENABLED
]


def media(request, path):
    """Uploaded catalog images; a deployment with object storage or a CDN sets SERVE_MEDIA off."""
    return serve(request, path, document_root=settings.MEDIA_ROOT)


if settings.SERVE_MEDIA:
    urlpatterns.append(re_path(rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>.*)$", media, name="media"))


def api_not_found(request, exception=None):
    """Unknown API URLs answer in the API's one error shape; pages get Django's 404 page."""
    from django.views.defaults import page_not_found
    from django_guid import get_guid

    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)

    body = {
        "type": "client_error",
        "errors": [{"code": "not_found", "detail": "Not found.", "attr": None}],
        "requestId": get_guid(),
    }
    return JsonResponse(body, status=404)


def api_server_error(request):
    from django_guid import get_guid

    body = {
        "type": "server_error",
        "errors": [{"code": "error", "detail": "Server Error (500)", "attr": None}],
        "requestId": get_guid(),
    }
    return JsonResponse(body, status=500)


handler404 = api_not_found
handler500 = api_server_error
