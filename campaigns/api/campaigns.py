"""Placeholder: filled in by the campaigns API work."""

urlpatterns: list = []
