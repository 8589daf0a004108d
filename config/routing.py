"""WebSocket routes: the member notification socket (`/ws`), behind an Origin check."""

from channels.routing import URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import path

from rewards.consumers import MemberNotificationConsumer

websocket_urlpatterns = [
    path("ws", MemberNotificationConsumer.as_asgi(), name="ws-member"),
]


class WebsocketOriginValidator(OriginValidator):
    """Browsers send an Origin, which must be one of WEBSOCKET_ALLOWED_ORIGINS (read on each
    connection). Native apps send none and are let through: the member token authenticates
    them, and the Origin check only stops other web pages from using a browser's connection."""

    def __init__(self, application):
        super().__init__(application, allowed_origins=())

    def valid_origin(self, parsed_origin) -> bool:
        if parsed_origin is None:
            return True
        return any(
            pattern == "*" or self.match_allowed_origin(parsed_origin, pattern)
            for pattern in settings.WEBSOCKET_ALLOWED_ORIGINS
        )


websocket_application = WebsocketOriginValidator(URLRouter(websocket_urlpatterns))
