"""The async consumers: thin adapters between the wire and the modules that
hold the rules (chat.py, presence.py, courier.py)."""

import asyncio
import contextlib
import json
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.urls import reverse
from redis.exceptions import RedisError

from . import models, presence

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


SSE_HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),  # nginx: pass events through unbuffered
]
TEXT_HEADERS = [(b"Content-Type", b"text/plain; charset=utf-8")]
KEEP_ALIVE = b": keep-alive\n\n"


@database_sync_to_async
def _is_employee(user):
    return bool(user is not None and user.is_authenticated and user.is_employee)


@database_sync_to_async
def _last_spoken_to(order_ids):
    orders = models.Order.objects.filter(pk__in=order_ids, last_spoken_to__isnull=False)
    return {
        o.pk: {"email": o.last_spoken_to.email, "name": o.last_spoken_to.display_name}
        for o in orders.select_related("last_spoken_to")
    }


def _chat_link(order_id):
    return reverse("cs_chat", kwargs={"order_id": order_id})


def _query(scope):
    raw = scope.get("query_string", b"")
    if isinstance(raw, bytes):  # as ASGI gives it; the chapter's test passes a str
        raw = raw.decode("latin-1")
    return parse_qs(raw, keep_blank_values=True)


class ChatNotifyConsumer(Asgi2Compatible, AsyncHttpConsumer):
    """customer-service/notify/: which order chats have someone present.

    Employees only (others: 403). Server-Sent Events, one `data: <json>` event
    whenever the list changes (someone arrives or expires), a keep-alive
    comment when idle. `?nopoll`: one event, then the response ends.

    - default (the chapter's form): [{"link", "text": "<id> (<emails>)"}];
    - `?format=v2` (the dashboard page): {"now", "chats": [...]}, see
      presence.dashboard_v2 and README.md.
    """

    # Nothing is ever sent to a stream through the channel layer.
    channel_layer_alias = None

    async def __call__(self, scope, receive=None, send=None):
        # handle() streams, and while it runs the consumer reads nothing more
        # from the client: handle() watches for the disconnect itself.
        self._client_receive = scope if send is None else receive
        return await super().__call__(scope, receive, send)

    async def handle(self, body):
        if self.scope.get("method", "GET") != "GET":
            await self.send_response(405, b"GET only.\n", headers=TEXT_HEADERS + [(b"Allow", b"GET")])
            return
        user = self.scope.get("user")
        if not await _is_employee(user):
            await self.send_response(403, b"Employees only.\n", headers=TEXT_HEADERS)
            return
        query = _query(self.scope)
        self._v2 = query.get("format") == ["v2"]
        if "nopoll" in query:
            try:
                _, event = await self._event()
            except RedisError:
                logger.exception("notify: presence store unavailable")
                await self._unavailable()
                return
            await self.send_response(200, event, headers=SSE_HEADERS)
            return
        logger.info("notify: stream opened for user %s", user.pk)
        try:
            await self._stream()
        finally:
            logger.info("notify: stream closed for user %s", user.pk)

    async def _event(self):
        """(what the client sees, the event's bytes) from presence now."""
        snap = await presence.snapshot()
        self._next_expiry = snap.seconds_to_next_expiry
        if not self._v2:
            chats = presence.dashboard_v1(snap, _chat_link)
            return chats, b"data: %s\n\n" % json.dumps(chats).encode()
        order_ids = sorted({p.order_id for p in snap.people})
        last_spoken_to = await _last_spoken_to(order_ids) if order_ids else {}
        chats = presence.dashboard_v2(snap, _chat_link, last_spoken_to)
        data = {"now": snap.now, "chats": chats}
        return chats, b"data: %s\n\n" % json.dumps(data).encode()

    async def _stream(self):
        loop = asyncio.get_running_loop()
        keepalive = settings.SSE_KEEPALIVE_SECONDS
        end = loop.time() + settings.SSE_MAX_SECONDS
        self._gone = False
        started = False
        try:
            async with presence.changes() as wake:
                watcher = loop.create_task(self._watch_disconnect(wake))
                try:
                    last, last_sent = None, loop.time()
                    while not self._gone and loop.time() < end:
                        wake.clear()  # before reading: an arrival from here on wakes us again
                        shown, event = await self._event()
                        if not started:
                            await self.send_headers(status=200, headers=SSE_HEADERS)
                            started = True
                        if shown != last:
                            await self.send_body(event, more_body=True)
                            last, last_sent = shown, loop.time()
                        elif loop.time() - last_sent >= keepalive:
                            await self.send_body(KEEP_ALIVE, more_body=True)
                            last_sent = loop.time()
                        timeout = min(keepalive - (loop.time() - last_sent), end - loop.time())
                        if self._next_expiry is not None:  # wake when someone expires
                            timeout = min(timeout, self._next_expiry + 0.02)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), max(timeout, 0))
                finally:
                    watcher.cancel()
        except RedisError:
            logger.exception("notify: presence store unavailable")
            if not started:
                await self._unavailable()
                return
        if started and not self._gone:
            await self.send_body(b"")  # end the response; EventSource reconnects

    async def _watch_disconnect(self, wake):
        while (await self._client_receive())["type"] != "http.disconnect":
            pass
        self._gone = True
        wake.set()

    async def _unavailable(self):
        await self.send_response(
            503, b"Presence is unavailable, try again shortly.\n", headers=TEXT_HEADERS + [(b"Retry-After", b"5")]
        )


# --- Shipment tracker (async HTTP proxy) -------------------------------------


class OrderTrackerConsumer(Asgi2Compatible, AsyncHttpConsumer):
    """mobile-api/my-orders/<order_id>/tracker/: the courier's status for an order."""

    async def query_remote_server(self, order_id):
        raise NotImplementedError

    async def handle(self, body):
        await self.send_response(501, b"", headers=[(b"Content-Type", b"text/plain")])
