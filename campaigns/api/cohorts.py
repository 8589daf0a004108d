"""Placeholder: filled in by the cohorts API work."""

urlpatterns: list = []
