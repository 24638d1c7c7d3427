"""The consumers' routes (the chapter's main.routing); booktime.asgi wires them in."""

from django.urls import path

from .chat.consumer import ChatConsumer
from .dashboard.consumer import ChatNotifyConsumer
from .dashboard.inbox import InboxConsumer
from .infra import health, scrape
from .infra.auth import TokenAuthMiddlewareStack
from .tracker.consumer import OrderTrackerConsumer

http_urlpatterns = [
    # Probes and the scrape: raw handlers, no session, auth or throttle (docs/operations.md).
    path("healthz", health.healthz),
    path("readyz", health.readyz),
    path("metrics", scrape.metrics),
    path("customer-service/notify/", TokenAuthMiddlewareStack(ChatNotifyConsumer.as_asgi())),
    path("customer-service/inbox/", TokenAuthMiddlewareStack(InboxConsumer.as_asgi())),
    path(
        "mobile-api/my-orders/<int:order_id>/tracker/",
        # The tracker checks the token itself, with the order's owner.
        TokenAuthMiddlewareStack(OrderTrackerConsumer.as_asgi(), check_token=False),
    ),
]

websocket_urlpatterns = [
    path("ws/customer-service/<int:order_id>/", ChatConsumer.as_asgi()),
]
