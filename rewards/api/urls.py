from django.urls import path

from rewards.api import events, views

urlpatterns = [
    path("members", views.MemberListCreateApi.as_view(), name="member-list"),
    path("members/<str:member_ref>", views.MemberDetailApi.as_view(), name="member-detail"),
    path("members/<str:member_ref>/adjustments", views.MemberAdjustmentApi.as_view(), name="member-adjustments"),
    path("members/<str:member_ref>/transfers", views.MemberTransferListApi.as_view(), name="member-transfers"),
    path("members/<str:member_ref>/token", views.MemberTokenApi.as_view(), name="member-token"),
    path("events", events.EventIngestApi.as_view(), name="events"),
    path("events:batch", events.EventBatchApi.as_view(), name="events-batch"),
    path("me", views.MeApi.as_view(), name="me"),
    path("me/transfers", views.MeTransferListApi.as_view(), name="me-transfers"),
]
