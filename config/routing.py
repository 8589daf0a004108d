"""WebSocket routes. The member notification socket (`/ws`) plugs in here."""

websocket_urlpatterns: list = []
