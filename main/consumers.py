"""The async consumers: thin adapters between the wire and the modules that
hold the rules (chat.py, presence.py, courier.py)."""

import logging
import time
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import chat, presence

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


TYPING_INTERVAL = 2.0  # seconds: at most one typing event per socket in this time
GROUP_RENEW_SECONDS = 3600.0  # how often a socket renews its channel-layer group membership


class ChatConsumer(Asgi2Compatible, AsyncJsonWebsocketConsumer):
    """ws/customer-service/<order_id>/: a customer and employees chat about an
    order. The rules live in main/chat.py; the protocol in docs/protocol.md."""

    member = None  # set once the user is admitted and the socket accepted

    async def connect(self):
        kwargs = self.scope.get("url_route", {}).get("kwargs", {})
        member = await chat.join(self.scope.get("user"), kwargs.get("order_id"))
        if member is None:
            # Refused before accept (HTTP 403): no group, presence or state,
            # and the consumer ends now rather than wait on the channel layer.
            logger.info("Chat refused for user %s", getattr(self.scope.get("user"), "pk", None))
            await self.close()
            raise StopConsumer()
        self.v2 = chat.V2 in self.scope.get("subprotocols", ())
        self.group = chat.group_name(member.order_id)
        self.messages = chat.RateLimiter(settings.CHAT_RATE_BURST, settings.CHAT_RATE_PER_SECOND)
        # Every frame, whatever its type, within a looser bound.
        self.frames = chat.RateLimiter(settings.CHAT_RATE_BURST * 6, settings.CHAT_RATE_PER_SECOND * 10)
        self.last_typing = 0.0
        self.presence_failed = False
        self.replayed = set()  # ids sent from the database, not to be sent again live
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.group_renewed = time.monotonic()
        self.member = member
        await self.accept(chat.V2 if self.v2 else None)
        logger.info("Chat opened: user %s, order %s, v%d", member.user_id, member.order_id, 2 if self.v2 else 1)
        await self.channel_layer.group_send(self.group, chat.presence_event("chat_join", member))
        if self.v2:
            await self.send_json(
                {
                    "type": "ready",
                    "protocol": 2,
                    "order_id": member.order_id,
                    "you": {"username": member.name, "employee": member.employee},
                    "reads": await chat.read_markers(member),
                    "limits": {
                        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
                        "max_frame_bytes": settings.CHAT_MAX_FRAME_BYTES,
                        "rate_burst": settings.CHAT_RATE_BURST,
                        "rate_per_second": settings.CHAT_RATE_PER_SECOND,
                    },
                }
            )
            # Catch up while live events wait in this socket's channel: the
            # client's last seen id (`?after=`) resumes, else recent history.
            after = chat.parse_id(parse_qs(_query(self.scope)).get("after", [""])[0])
            if after is not None:
                await self.send_missed(after)
            else:
                await self.send_history({})

    async def disconnect(self, code):
        if self.member is None:
            return
        try:
            await self.channel_layer.group_send(self.group, chat.presence_event("chat_leave", self.member))
        finally:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            logger.info("Chat closed: user %s, order %s", self.member.user_id, self.member.order_id)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            self.frames.take()
            content = chat.parse_frame(text_data, bytes_data, chat.V2_TYPES if self.v2 else chat.V1_TYPES)
            await getattr(self, "on_" + content["type"])(content)
        except chat.ChatError as error:
            if self.v2:
                await self.send_json(error.event())
            # v1 has no error event: a refused frame is dropped (docs/protocol.md).
        except Exception:
            logger.exception("Chat frame failed: user %s, order %s", self.member.user_id, self.member.order_id)
            if self.v2:
                await self.send_json(chat.ChatError("server_error", "Something went wrong; try again.").event())

    # Client frames.

    async def on_message(self, content):
        text = chat.clean_message(content)
        self.messages.take()
        event = await chat.store_message(self.member, text)  # stored first, then fanned out
        await self.channel_layer.group_send(self.group, event)

    async def on_heartbeat(self, content):
        try:
            await presence.touch(self.member.order_id, self.member.email, self.member.employee)
        except Exception:
            # The client can do nothing about it: log once per socket, chat on.
            if not self.presence_failed:
                self.presence_failed = True
                logger.exception("Presence update failed: order %s", self.member.order_id)
        # Group memberships expire (CHANNEL_GROUP_EXPIRY); a live socket renews its own.
        if time.monotonic() - self.group_renewed > GROUP_RENEW_SECONDS:
            self.group_renewed = time.monotonic()
            await self.channel_layer.group_add(self.group, self.channel_name)

    async def on_typing(self, content):
        now = time.monotonic()
        if now - self.last_typing >= TYPING_INTERVAL:  # extra typing frames are dropped
            self.last_typing = now
            await self.channel_layer.group_send(
                self.group,
                {"type": "chat_typing", "username": self.member.name, "user_id": self.member.user_id},
            )

    async def on_history(self, content):
        await self.send_history(content)

    async def on_resume(self, content):
        after = chat.optional_id(content, "after")
        if after is None:
            raise chat.ChatError("bad_request", "`after` (the last message id seen) is required.")
        await self.send_missed(after)

    async def on_read(self, content):
        message_id = chat.optional_id(content, "id")
        if message_id is None:
            raise chat.ChatError("bad_request", "`id` (the last message id read) is required.")
        last_read = await chat.mark_read(self.member, message_id)
        await self.channel_layer.group_send(
            self.group,
            {"type": "chat_read", "username": self.member.name, "user_id": self.member.user_id, "id": last_read},
        )

    async def send_history(self, content):
        before = chat.optional_id(content, "before")
        limit = chat.page_size(content, settings.CHAT_HISTORY_PAGE)
        messages, has_more = await chat.history(self.member, before, limit)
        if before is None:  # the latest page may overlap live events already queued
            self.replayed = {m["id"] for m in messages}
        messages = [chat.for_client(m, True, self.member) for m in messages]
        await self.send_json({"type": "history", "before": before, "messages": messages, "has_more": has_more})

    async def send_missed(self, after):
        messages, has_more = await chat.missed(self.member, after)
        self.replayed = {m["id"] for m in messages}
        for message in messages:
            await self.send_json(chat.for_client(message, True, self.member))
        last_id = messages[-1]["id"] if messages else after
        await self.send_json({"type": "resumed", "after": after, "last_id": last_id, "has_more": has_more})

    # Group events.

    async def chat_message(self, event):
        if event["id"] not in self.replayed:
            await self.send_json(chat.for_client(event, self.v2, self.member))

    async def chat_join(self, event):
        await self.send_json(chat.for_client(event, self.v2, self.member))

    async def chat_leave(self, event):
        await self.send_json(chat.for_client(event, self.v2, self.member))

    async def chat_typing(self, event):
        if self.v2 and event["user_id"] != self.member.user_id:
            await self.send_json({"type": "typing", "username": event["username"]})

    async def chat_read(self, event):
        if self.v2:
            await self.send_json(chat.for_client(dict(event, type="read"), True, self.member))


def _query(scope):
    query = scope.get("query_string", b"")
    return query.decode("latin-1") if isinstance(query, bytes) else query


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
