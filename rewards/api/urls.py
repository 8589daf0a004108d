from django.urls import path

from rewards.api import categories, credit, events, outbound, simulations, views
from rewards.api import notifications as notification_views

urlpatterns = [
    path("members", views.MemberListCreateApi.as_view(), name="member-list"),
    path("members/<str:member_ref>", views.MemberDetailApi.as_view(), name="member-detail"),
    path("members/<str:member_ref>/export", views.MemberExportApi.as_view(), name="member-export"),
    path("members/<str:member_ref>/adjustments", views.MemberAdjustmentApi.as_view(), name="member-adjustments"),
    path("members/<str:member_ref>/transfers", views.MemberTransferListApi.as_view(), name="member-transfers"),
    path("members/<str:member_ref>/token", views.MemberTokenApi.as_view(), name="member-token"),
    path("events", events.EventIngestApi.as_view(), name="events"),
    path("events:batch", events.EventBatchApi.as_view(), name="events-batch"),
    path("events/outbound", outbound.OutboundEventListApi.as_view(), name="events-outbound"),
    path("simulations", simulations.SimulationRunApi.as_view(), name="simulations"),
    path("categories", categories.CategoryListCreateApi.as_view(), name="category-list"),
    path("categories/<str:code>", categories.CategoryDetailApi.as_view(), name="category-detail"),
    path("categories/<str:code>/multipliers", categories.MultiplierListCreateApi.as_view(), name="multiplier-list"),
    path(
        "categories/<str:code>/multipliers/<int:multiplier_id>",
        categories.MultiplierDetailApi.as_view(),
        name="multiplier-detail",
    ),
    path("credit-packages", credit.CreditPackageListCreateApi.as_view(), name="credit-package-list"),
    path("credit-packages/<str:package_id>", credit.CreditPackageDetailApi.as_view(), name="credit-package-detail"),
    path("credit-purchases", credit.CreditPurchaseListCreateApi.as_view(), name="credit-purchase-list"),
    path("credit-purchases/<str:purchase_id>", credit.CreditPurchaseDetailApi.as_view(), name="credit-purchase-detail"),
    path("me", views.MeApi.as_view(), name="me"),
    path("me/transfers", views.MeTransferListApi.as_view(), name="me-transfers"),
    path("me/notifications", notification_views.MeNotificationListApi.as_view(), name="me-notifications"),
]
