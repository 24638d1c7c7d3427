from django.urls import path

from booktime.auth import TokenAuthMiddlewareStack

from . import consumers

http_urlpatterns = [
    path(
        "customer-service/notify/",
        TokenAuthMiddlewareStack(consumers.ChatNotifyConsumer.as_asgi()),
    ),
    path(
        "mobile-api/my-orders/<int:order_id>/tracker/",
        # The tracker checks the token itself, with the order's owner.
        TokenAuthMiddlewareStack(consumers.OrderTrackerConsumer.as_asgi(), check_token=False),
    ),
]

websocket_urlpatterns = [
    path("ws/customer-service/<int:order_id>/", consumers.ChatConsumer.as_asgi()),
]
