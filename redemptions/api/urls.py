from django.urls import path

from redemptions.api import views

urlpatterns = [
    path("redemptions", views.RedemptionListCreateApi.as_view(), name="redemption-list"),
    path("redemptions/<str:redemption_id>:cancel", views.RedemptionCancelApi.as_view(), name="redemption-cancel"),
    path("redemptions/<str:redemption_id>", views.RedemptionDetailApi.as_view(), name="redemption-detail"),
]
