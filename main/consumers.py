"""The async consumers: thin adapters between the wire and the modules that
hold the rules (chat.py, presence.py, courier.py)."""

import json
import logging

from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import close_old_connections

from . import courier, models

logger = logging.getLogger(__name__)


class Asgi2Compatible:
    """Also callable the Channels 2 way, as the chapter's tests use a consumer
    class: `instance = Consumer(scope)`, then `await instance(receive, send)`.
    Channels 4 routes `Consumer.as_asgi()`, which goes the ASGI 3 way."""

    def __init__(self, scope=None, **kwargs):
        super().__init__(**kwargs)
        self._asgi2_scope = scope

    async def __call__(self, scope, receive=None, send=None):
        if send is None:  # ASGI 2: called with (receive, send)
            return await super().__call__(self._asgi2_scope, scope, receive)
        return await super().__call__(scope, receive, send)


# --- Chat (WebSocket) --------------------------------------------------------


class ChatConsumer(Asgi2Compatible, AsyncJsonWebsocketConsumer):
    """ws/customer-service/<order_id>/: a customer and employees chat about an order."""

    async def connect(self):
        await self.close()


# --- Presence dashboard (Server-Sent Events) ---------------------------------


class ChatNotifyConsumer(Asgi2Compatible, AsyncHttpConsumer):
    """customer-service/notify/: which order chats have someone present."""

    async def handle(self, body):
        await self.send_response(501, b"", headers=[(b"Content-Type", b"text/plain")])


# --- Shipment tracker (async HTTP proxy) -------------------------------------


class OrderTrackerConsumer(Asgi2Compatible, AsyncHttpConsumer):
    """mobile-api/my-orders/<order_id>/tracker/: the courier's status for an
    order, for its owner only. The courier is called without blocking the
    event loop, within COURIER_API_TIMEOUT; its failures become a 502 or 504."""

    # A plain request/response proxy: no channel on the channel layer (saves
    # a Redis channel and a receive loop per request).
    channel_layer_alias = None

    async def query_remote_server(self, order_id):
        return await courier.fetch_status(order_id)

    async def handle(self, body):
        if self.scope.get("method", "GET") != "GET":
            body = json.dumps({"detail": "Only GET is allowed.", "code": "method_not_allowed"}).encode()
            headers = [*_headers("application/json", body), (b"Allow", b"GET")]
            return await self.send_response(405, body, headers=headers)
        order_id = self.scope["url_route"]["kwargs"]["order_id"]
        user = self.scope.get("user")
        if not await _owns_order(user, order_id):
            # Same answer for someone else's order, an unknown id and no
            # login: order ids cannot be probed, and the courier is not asked.
            return await self.send_json(404, {"detail": "Not found.", "code": "not_found"})
        logger.info("Order tracking request for user %s and order %s", user.pk, order_id)
        try:
            payload = await self.query_remote_server(order_id)
        except courier.CourierError as exc:
            logger.warning("Order tracking failed for order %s: %s", order_id, exc)
            return await self.send_json(exc.status, {"detail": str(exc), "code": exc.code})
        content_type = getattr(payload, "content_type", courier.TEXT)
        await self.send_response(200, payload, headers=_headers(content_type, payload))

    async def send_json(self, status, data):
        body = json.dumps(data).encode()
        await self.send_response(status, body, headers=_headers("application/json", body))


def _headers(content_type, body):
    return [
        (b"Content-Type", content_type.encode()),
        (b"Content-Length", str(len(body)).encode()),
        (b"Cache-Control", b"no-store"),
        (b"X-Content-Type-Options", b"nosniff"),
    ]


def _owns_order_sync(user, order_id):
    if user is None or not user.is_authenticated:
        return False
    try:
        return models.Order.objects.filter(pk=order_id, user=user).exists()
    finally:
        # database_sync_to_async tidies connections outside the context the
        # query ran in (asgiref copies it), so it would miss this one.
        close_old_connections()


# An independent read: any worker thread will do, so requests run side by side.
_owns_order = database_sync_to_async(_owns_order_sync, thread_sensitive=False)
