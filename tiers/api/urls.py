from django.urls import path

from tiers.api import views

urlpatterns = [
    path("tiers", views.TierListCreateApi.as_view(), name="tier-list"),
    path("tiers/<str:tier_id>", views.TierDetailApi.as_view(), name="tier-detail"),
    path("tier-policy", views.TierPolicyApi.as_view(), name="tier-policy"),
]
