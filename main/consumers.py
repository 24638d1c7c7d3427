"""The async consumers: thin adapters between the wire and the modules that
hold the rules (chat.py, presence.py, courier.py)."""

import logging

from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

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
    """mobile-api/my-orders/<order_id>/tracker/: the courier's status for an order."""

    async def query_remote_server(self, order_id):
        raise NotImplementedError

    async def handle(self, body):
        await self.send_response(501, b"", headers=[(b"Content-Type", b"text/plain")])
