"""The async consumers: thin adapters between the wire and the modules that
hold the rules (chat.py, presence.py, courier.py)."""

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import time
from urllib.parse import parse_qs

from autobahn.exception import Disconnected
from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.urls import reverse
from redis.exceptions import RedisError
from rest_framework.authtoken.models import Token

from booktime import auth

from . import chat, courier, models, per_loop, presence
from .db import RETRY_AFTER_SECONDS, db_sync_to_async, unreachable

logger = logging.getLogger(__name__)


class Asgi2Compatible:
    """Also callable the Channels 2 way, as the chapter's tests use a consumer
    class: `instance = Consumer(scope)`, then `await instance(receive, send)`.
    Channels 4 routes `Consumer.as_asgi()`, which goes the ASGI 3 way.

    It also dispatches without Channels' connection sweep: since 4.2 Channels
    runs close_old_connections() in its one sync thread before every message
    a consumer handles, a thread hop per frame and per group event, all queued
    behind one another and behind the database calls. These consumers touch
    the database only through main.db, which closes what it opens, so the
    sweep has nothing to do (it was a third of the chat's CPU time under load).

    It dispatches with dispatch_all (below), not Channels' await_many_dispatch,
    and as a consumer ends it has the pub/sub layer let go of its channel,
    which channels_redis misses when the consumer ends on a channel message
    (booktime.channel_layer.PubSubChannelLayer.delete_channel)."""

    def __init__(self, scope=None, **kwargs):
        super().__init__(**kwargs)
        self._asgi2_scope = scope

    async def __call__(self, scope, receive=None, send=None):
        try:
            if send is None:  # ASGI 2: called with (receive, send)
                return await self._consume(self._asgi2_scope, scope, receive)
            return await self._consume(scope, receive, send)
        finally:
            # The pub/sub layer lets go of the channel (see its delete_channel).
            delete_channel = getattr(getattr(self, "channel_layer", None), "delete_channel", None)
            if delete_channel is not None and getattr(self, "channel_name", None):
                await delete_channel(self.channel_name)

    async def _consume(self, scope, receive, send):
        # Channels' AsyncConsumer.__call__, dispatching with dispatch_all.
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.base_send = send
        with contextlib.suppress(StopConsumer):
            await dispatch_all(sources, self.dispatch)

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def channel_layer_lost(self, message):
        pass  # only a consumer in groups has missed anything


async def dispatch_all(sources, dispatch):
    """`await dispatch(message)` for each message from any of `sources` (the
    client's receive, the channel layer's), one at a time, until a dispatch
    raises (StopConsumer to end).

    Channels' await_many_dispatch does the same with a new task and an
    asyncio.wait for every message, most of the cost of a frame that does
    little (a heartbeat). Here each source has one task for the consumer's
    life, which reads its next message once the last is handled (so a busy
    consumer still holds the client back), and a lock takes the dispatches
    one at a time. Nothing is dispatched after a dispatch has raised; a
    source that fails ends the consumer once the dispatch under way is done.
    Both tasks run in one copy of the caller's context, as the dispatches
    did in Channels' single task."""
    if len(sources) == 1:
        while True:
            await dispatch(await sources[0]())
    lock = asyncio.Lock()
    ended = False

    async def pump(source):
        nonlocal ended
        while True:
            try:
                message = await source()
            except Exception:
                async with lock:  # not in the middle of the other source's dispatch
                    ended = True
                raise
            async with lock:
                if ended:
                    return
                try:
                    await dispatch(message)
                except BaseException:
                    ended = True
                    raise

    loop, context = asyncio.get_running_loop(), contextvars.copy_context()
    pumps = [loop.create_task(pump(source), context=context) for source in sources]
    try:
        ended_first, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        # Every pump is awaited and its end retrieved: none is left pending
        # or with an exception nobody saw.
        await asyncio.gather(*pumps, return_exceptions=True)
    for task in ended_first:
        task.result()  # what ended it: StopConsumer, or an error


# --- Chat (WebSocket) --------------------------------------------------------


HEARTBEAT_LANDS_SECONDS = 2.0  # a closing socket waits at most this long for its last heartbeat
TYPING_INTERVAL = 2.0  # seconds: at most one typing event per socket in this time
# On a layer whose groups are kept in Redis (the list-based one), a socket
# renews its group memberships on a heartbeat at most this often: clients
# heartbeat every 10 s, so memberships lost with Redis's data (or expired)
# come back within one heartbeat.
GROUP_RENEW_SECONDS = 5.0


class ChatConsumer(Asgi2Compatible, AsyncJsonWebsocketConsumer):
    """ws/customer-service/<order_id>/: a customer and employees chat about an
    order. The rules live in main/chat.py; the protocol in docs/protocol.md."""

    member = None  # set once the user is admitted and the socket accepted
    group = None  # the order's group, joined in the handshake
    token_group = None  # for a socket opened with a token: where its revocation is announced
    closing = False
    heartbeat_sent = None  # done once the socket's last heartbeat has reached presence

    async def __call__(self, scope, receive=None, send=None):
        if send is None:  # ASGI 2: called with (receive, send)
            return await super().__call__(scope, self._unless_gone(receive))
        return await super().__call__(scope, receive, self._unless_gone(send))

    def _unless_gone(self, send):
        # A socket can close under its consumer: once the client has gone,
        # the server refuses a send (uvicorn's ClientDisconnected, an OSError;
        # autobahn's Disconnected under runserver's daphne) while the
        # websocket.disconnect that follows waits its turn,
        # e.g. when both ends of a chat close at once. What was being sent is
        # dropped and the disconnect then ends the consumer as usual; before,
        # the consumer died with a traceback and never left its chat.
        async def send_unless_gone(message):
            try:
                await send(message)
            except (Disconnected, OSError):
                self.closing = True

        return send_unless_gone

    async def refuse(self):
        # Refused before accept (HTTP 403): no group, presence or state,
        # and the consumer ends now rather than wait on the channel layer.
        logger.info("Chat refused for user %s", getattr(self.scope.get("user"), "pk", None))
        await self.close()
        raise StopConsumer()

    async def connect(self):
        kwargs = self.scope.get("url_route", {}).get("kwargs", {})
        user = self.scope.get("user")
        order_id = chat.parse_id(kwargs.get("order_id"))
        if order_id is None or not getattr(user, "is_authenticated", False):
            await self.refuse()
        self.v2 = chat.V2 in self.scope.get("subprotocols", ())
        query = parse_qs(_query(self.scope))
        after_seq = _non_negative(query.get("after_seq", [""])[0])
        after = chat.parse_id(query.get("after", [""])[0])
        # The groups are joined before the database is read: a message sent
        # meanwhile waits in this socket's channel (and is not sent twice,
        # see `replayed`), and logging out (revoking the token the socket was
        # opened with, which closes it) is either seen by the read or reaches
        # the token's group.
        key = self.scope.get("auth_token")  # set by booktime.auth when a token let the user in
        if key is not None:
            self.token_group = chat.token_group(key)
            await self.channel_layer.group_add(self.token_group, self.channel_name)
        self.group = chat.group_name(order_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        opening = await chat.open_chat(user, order_id, key, self.v2, after=after, after_seq=after_seq)
        if opening is None:
            await self.leave_groups()
            await self.refuse()
        member = opening.member
        self.messages = chat.RateLimiter(settings.CHAT_RATE_BURST, settings.CHAT_RATE_PER_SECOND)
        # Every frame, whatever its type, within a looser bound.
        self.frames = chat.RateLimiter(settings.CHAT_RATE_BURST * 6, settings.CHAT_RATE_PER_SECOND * 10)
        self.strikes = chat.Strikes()
        self.last_typing = 0.0
        self.replayed = set()  # ids sent from the database, not to be sent again live
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
                    "reads": opening.reads,
                    "limits": {
                        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
                        "max_frame_bytes": settings.CHAT_MAX_FRAME_BYTES,
                        "rate_burst": settings.CHAT_RATE_BURST,
                        "rate_per_second": settings.CHAT_RATE_PER_SECOND,
                    },
                }
            )
            # Catch up: the client's place (`?after_seq=`, or the older
            # `?after=` id) resumes, else recent history.
            if opening.missed is not None:
                await self.send_missed_page(after, after_seq, *opening.missed)
            else:
                await self.send_history_page(None, *opening.history)

    async def websocket_connect(self, message):
        try:
            await super().websocket_connect(message)
        except Exception as error:
            if not unreachable(error):
                raise
            # PostgreSQL went down during the handshake: accepted (if not yet)
            # and closed with 4503, as booktime.auth answers while it is down.
            logger.warning("Chat handshake not handled, database unavailable")
            if self.member is None:
                await self.accept()
            self.closing = True
            await self.close(code=chat.CLOSE_TRY_AGAIN_LATER)

    async def websocket_disconnect(self, message):
        # Channels' own also runs close_old_connections() in its one sync
        # thread as each socket closes: a worker's sockets closing together
        # queued there, one thread hop each, past the server's close timeout.
        # This consumer's database calls close what they open (main.db).
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code):
        try:
            if self.heartbeat_sent is not None and not self.heartbeat_sent.done():
                # A heartbeat, then the socket closed: the heartbeat counts
                # before the chat is left (the chapter's client reads the
                # dashboard right after closing).
                await asyncio.wait([self.heartbeat_sent], timeout=HEARTBEAT_LANDS_SECONDS)
            if self.member is not None:
                logger.info("Chat closed: user %s, order %s", self.member.user_id, self.member.order_id)
                await self.channel_layer.group_send(self.group, chat.presence_event("chat_leave", self.member))
        finally:
            await self.leave_groups()

    async def leave_groups(self):
        for group in (self.token_group, self.group):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        ref = None
        try:
            self.frames.take()
            content = chat.parse_frame(text_data, bytes_data, chat.V2_TYPES if self.v2 else chat.V1_TYPES)
            if self.v2 and content["type"] == "message":
                ref = chat.message_ref(content)
            if content["type"] == "message":
                await self.on_message(content, ref)
            else:
                await getattr(self, "on_" + content["type"])(content)
            self.strikes.accepted()
        except chat.ChatError as error:
            if self.strikes.refused():
                # Refusal after refusal: the client is not listening; stop
                # spending memory and time on it (docs/protocol.md).
                logger.warning(
                    "Chat closed for repeated refused frames: user %s, order %s",
                    self.member.user_id,
                    self.member.order_id,
                )
                self.closing = True
                await self.close(code=chat.CLOSE_POLICY_VIOLATION)
                return
            if self.v2:
                event = error.event()
                if ref is not None:
                    event["ref"] = ref
                await self.send_json(event)
            # v1 has no error event: a refused frame is dropped (docs/protocol.md).
        except Exception as error:
            if unreachable(error):
                # PostgreSQL is down: the frame was not handled (a message not
                # stored). Not a strike: the client did nothing wrong.
                logger.warning("Chat frame not handled, database unavailable: order %s", self.member.order_id)
                event = chat.ChatError(
                    "unavailable", "Briefly unavailable; try again shortly.", retry_after=RETRY_AFTER_SECONDS
                ).event()
            else:
                logger.exception("Chat frame failed: user %s, order %s", self.member.user_id, self.member.order_id)
                event = chat.ChatError("server_error", "Something went wrong; try again.").event()
            if self.v2:
                if ref is not None:
                    event["ref"] = ref
                await self.send_json(event)

    # Client frames.

    async def on_message(self, content, ref=None):
        text = chat.clean_message(content)
        self.messages.take()
        event = await chat.store_message(self.member, text)  # stored first, then fanned out
        if ref is not None:
            event["ref"] = ref  # shown to the sender only (chat.for_client)
        try:
            await self.channel_layer.group_send(self.group, event)
        except Exception:
            # Stored, so accepted: an error event now would make the client
            # send it again (a duplicate). The sender is told it is stored;
            # the others get it on resume (their reconnect, or the seq gap).
            logger.exception("Chat fan-out failed: order %s, message %s", self.member.order_id, event["id"])
            await self.send_json(chat.for_client(event, self.v2, self.member))

    async def on_heartbeat(self, content):
        # Not waited for: the socket's next frame is handled meanwhile, and a
        # failure is logged by presence (the client can do nothing about it).
        # One at a time per socket: while the last is on its way, another
        # adds nothing (the last lands on Redis's clock, later).
        if self.heartbeat_sent is None or self.heartbeat_sent.done():
            self.heartbeat_sent = presence.touch_soon(self.member.order_id, self.member.email, self.member.employee)
        # The pub/sub layer's groups live in this process as long as its
        # subscription (a broken one closes the socket): nothing to renew.
        if not getattr(self.channel_layer, "groups_expire", True):
            return
        if time.monotonic() - self.group_renewed > GROUP_RENEW_SECONDS:
            self.group_renewed = time.monotonic()
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
                if self.token_group is not None:
                    await self.channel_layer.group_add(self.token_group, self.channel_name)
            except Exception:
                # Renewed on the next heartbeat; a lost subscription closes the socket anyway.
                logger.warning("Group renewal failed: order %s", self.member.order_id, exc_info=True)

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
        after_seq = chat.optional_id(content, "after_seq")
        after = chat.optional_id(content, "after")
        if after_seq is not None:
            await self.send_missed(after_seq=after_seq)
        elif after is not None:
            await self.send_missed(after=after)
        else:
            raise chat.ChatError("bad_request", "`after_seq` (the last message seq you have all up to) is required.")

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
        await self.send_history_page(before, *await chat.history(self.member, before, limit))

    async def send_history_page(self, before, messages, has_more):
        if before is None:  # the latest page may overlap live events already queued
            self.replayed = {m["id"] for m in messages}
        messages = [chat.for_client(m, True, self.member) for m in messages]
        await self.send_json({"type": "history", "before": before, "messages": messages, "has_more": has_more})

    async def send_missed(self, after=None, after_seq=None):
        await self.send_missed_page(after, after_seq, *await chat.missed(self.member, after=after, after_seq=after_seq))

    async def send_missed_page(self, after, after_seq, messages, has_more):
        self.replayed = {m["id"] for m in messages}
        for message in messages:
            await self.send_json(chat.for_client(message, True, self.member))
        resumed = {"type": "resumed", "after": after, "after_seq": after_seq, "has_more": has_more}
        if messages:
            resumed.update(last_id=messages[-1]["id"], last_seq=messages[-1]["seq"])
        else:
            resumed.update(last_id=after, last_seq=after_seq)
        await self.send_json(resumed)

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

    async def chat_revoked(self, event):
        # The token this socket was opened with was revoked (logout).
        logger.info("Chat closed, token revoked: user %s", self.member.user_id if self.member else None)
        self.closing = True
        await self.close(code=chat.CLOSE_TOKEN_REVOKED)

    async def channel_layer_lost(self, event):
        # The channel layer's subscription to Redis broke (booktime/
        # channel_layer.py): events sent meanwhile never came. Close (try
        # again later); the client reconnects and resumes from the database.
        logger.info("Chat closed, channel layer lost: order %s", self.member.order_id if self.member else None)
        self.closing = True
        await self.close(code=chat.CLOSE_TRY_AGAIN_LATER)


def _non_negative(value):
    """A query parameter as a non-negative integer (a message seq), or None."""
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


def _query(scope):
    query = scope.get("query_string", b"")
    return query.decode("latin-1") if isinstance(query, bytes) else query


# --- Presence dashboard (Server-Sent Events) ---------------------------------


SSE_HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),  # nginx: pass events through unbuffered
]
TEXT_HEADERS = [(b"Content-Type", b"text/plain; charset=utf-8")]
KEEP_ALIVE = b": keep-alive\n\n"


@db_sync_to_async
def _is_employee(user):
    return bool(user is not None and user.is_authenticated and user.is_employee)


@db_sync_to_async
def _last_spoken_to(order_ids):
    orders = models.Order.objects.filter(pk__in=order_ids, last_spoken_to__isnull=False)
    return {
        o.pk: {"email": o.last_spoken_to.email, "name": o.last_spoken_to.display_name}
        for o in orders.select_related("last_spoken_to")
    }


def _chat_link(order_id):
    return reverse("cs_chat", kwargs={"order_id": order_id})


async def _dashboard(v2, live):
    """(what the client sees, the event's bytes, seconds to the next expiry)
    from presence now, in the chapter's form or v2; `live` for a stream,
    which keeps people through the grace for their next heartbeat."""
    snap = await presence.snapshot(live=live)
    if not v2:
        chats = presence.dashboard_v1(snap, _chat_link)
        return chats, b"data: %s\n\n" % json.dumps(chats).encode(), snap.seconds_to_next_expiry
    order_ids = sorted({p.order_id for p in snap.people})
    last_spoken_to = await _last_spoken_to(order_ids) if order_ids else {}
    chats = presence.dashboard_v2(snap, _chat_link, last_spoken_to)
    data = {"now": snap.now, "chats": chats}
    return chats, b"data: %s\n\n" % json.dumps(data).encode(), snap.seconds_to_next_expiry


async def _nothing_to_close(_):
    pass


def _shared_dashboard(v2, live):
    """The process's (loop's) shared reader of one form of the dashboard."""
    name = f"dashboard-v{2 if v2 else 1}{'-live' if live else ''}"
    return per_loop.get(name, lambda: presence.Shared(functools.partial(_dashboard, v2, live)), _nothing_to_close)


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
        # _query: as ASGI gives it (bytes) or as the chapter's test passes it (str).
        query = parse_qs(_query(self.scope), keep_blank_values=True)
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

    async def _event(self, live=False):
        """(what the client sees, the event's bytes) from presence now, read
        once for all the process's streams that ask at the same moment."""
        chats, event, self._next_expiry = await _shared_dashboard(self._v2, live)()
        return chats, event

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
                        shown, event = await self._event(live=True)
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
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
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
        try:
            owner_id = await _tracking_owner(self.scope.get("user"), self.scope.get("unchecked_token"), order_id)
        except Exception as error:
            if not unreachable(error):
                raise
            return await auth.unavailable(self.scope, None, self.send)
        if owner_id is None:
            # Same answer for someone else's order, an unknown id, a bad
            # token and no login: order ids cannot be probed, and the courier
            # is not asked.
            return await self.send_json(404, {"detail": "Not found.", "code": "not_found"})
        logger.info("Order tracking request for user %s and order %s", owner_id, order_id)
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


# The token's active user owns the order: one query. Written in SQL because
# the ORM spends several times the query's own cost building it (about 0.6 ms
# of CPU per tracker request, the larger part of the request; bench row 7).
_ORDER_OWNER_BY_TOKEN = (
    f"SELECT o.user_id FROM {models.Order._meta.db_table} o"
    f" JOIN {models.User._meta.db_table} u ON u.id = o.user_id"
    f" JOIN {Token._meta.db_table} t ON t.user_id = u.id"
    " WHERE o.id = %s AND t.key = %s AND u.is_active"
)


@db_sync_to_async(thread_sensitive=False)  # an independent read: requests run side by side
def _tracking_owner(user, token, order_id):
    """The id of the order's owner if the request may track it, else None:
    `user` if the middleware resolved one, else the user of `token`, checked
    in the same query as the order (one trip to a database thread)."""
    if not 0 < order_id <= chat.MAX_ORDER_ID:
        return None
    if user is not None:
        if not user.is_authenticated:
            return None
        return models.Order.objects.filter(pk=order_id, user=user).values_list("user_id", flat=True).first()
    if token is None or not auth.valid_token_shape(token):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_ORDER_OWNER_BY_TOKEN, [order_id, token])
        row = cursor.fetchone()
    return row[0] if row else None
