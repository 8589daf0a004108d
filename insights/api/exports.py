"""Routes of this part of insights; its views arrive with it."""

urlpatterns: list = []
