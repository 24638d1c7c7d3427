"""ws/customer-service/<order_id>/: a customer and employees chat about an
order. The consumer moves frames between the socket, the chat's service and
the channel layer; the rules live in service.py, the wire in protocol.py."""

import asyncio
import json
import logging
import time

import orjson
from autobahn.exception import Disconnected
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis.exceptions import RedisError

from main import presence
from main.conversations import events
from main.infra import access_changes, lifecycle, metrics
from main.infra.answers import CLOSE_TRY_AGAIN_LATER, RETRY_AFTER_SECONDS
from main.infra.auth import access_keys, query_params, user_is_authenticated, valid_token_shape
from main.infra.consumer import BaseConsumer
from main.infra.db import unreachable
from main.infra.ids import parse_id

from . import protocol, service
from .limits import OPEN_SOCKETS, TYPING_INTERVAL, Limits, Strikes, Throttle
from .queue_place import QueuePlace

logger = logging.getLogger(__name__)

HEARTBEAT_LANDS_SECONDS = 2.0  # a closing socket waits at most this long for its last heartbeat
# On a layer whose groups are kept in Redis (the list-based one), a socket
# renews its group memberships on a heartbeat at most this often: clients
# heartbeat every 10 s, so memberships lost with Redis's data (or expired)
# come back within one heartbeat.
GROUP_RENEW_SECONDS = 5.0


class ChatConsumer(BaseConsumer, AsyncJsonWebsocketConsumer):
    """An order's chat socket; docs/protocol.md describes what it speaks."""

    member = None  # set once the user is admitted and the socket accepted
    group = None  # the order's group, joined in the handshake
    watch = None  # the socket's watch on its user, token or session (access_changes)
    closing = False  # a close was sent, or the client has gone: nothing more is sent or handled
    conversation = None  # v2: the conversation's state as the client was last told
    in_queue = False  # a waiting customer's socket follows the queue
    place = None  # where it stands in it (QueuePlace), once it has waited
    beat = None  # records a heartbeat (presence.heartbeat), once the user is admitted
    heartbeat_sent = None  # done once the socket's last heartbeat has reached presence
    counted_open = None  # the gauge of open sockets this one counts in, once accepted
    counted_user = None  # the user whose open sockets this one counts in (the per-user cap)

    @classmethod
    async def encode_json(cls, content):
        # orjson, for a frame is encoded for each socket it goes to, and a
        # v2 handshake's history page is one of the largest.
        try:
            return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:
            return json.dumps(content)  # escapes what orjson refuses: a lone surrogate a client sent as \ud800

    async def __call__(self, scope, receive=None, send=None):
        if send is None:  # ASGI 2: called with (receive, send)
            return await super().__call__(scope, self._unless_gone(receive))
        return await super().__call__(scope, receive, self._unless_gone(send))

    def _unless_gone(self, send):
        # A socket can close under its consumer: once the client has gone,
        # the server refuses a send (uvicorn's ClientDisconnected, an OSError;
        # autobahn's Disconnected under runserver's daphne) while the
        # websocket.disconnect that follows waits its turn. And once this
        # consumer has closed the socket, a group event or a second reason
        # to close may still come before that disconnect; the server refuses
        # any send then. Either way the send is dropped, and the disconnect
        # ends the consumer as usual.
        async def send_unless_gone(message):
            if self.closing:
                return
            if message["type"] == "websocket.close":
                self.closing = True
            try:
                await send(message)
            except (Disconnected, OSError):
                self.closing = True

        return send_unless_gone

    async def consume(self, scope, receive, send):
        try:
            await super().consume(scope, receive, send)
        finally:
            # However the consumer ends (a close, a crash, the worker's stop):
            # nothing of it runs on, and nothing outside holds it.
            self.closing = True
            self.let_go()
            if self.counted_open is not None:
                self.counted_open.dec()
            if self.counted_user is not None:
                OPEN_SOCKETS.give_back(self.counted_user)

    async def refuse(self, reason):
        # Refused before accept (HTTP 403): no group, presence or state,
        # and the consumer ends now rather than wait on the channel layer.
        logger.info("Chat refused (%s) for user %s", reason, getattr(self.scope.get("user"), "pk", None))
        metrics.handshake_refused(reason)
        await self.close()
        raise StopConsumer()

    async def connect(self):
        # A token is checked here, in the handshake's one round trip
        # (service.open_chat); without one, the session's user came in scope.
        token = self.scope.get("unchecked_token")
        user = None if token is not None else self.scope.get("user")
        order_id = parse_id(self.scope.get("url_route", {}).get("kwargs", {}).get("order_id"))
        signed_in = valid_token_shape(token) if token is not None else user_is_authenticated(user)
        if not signed_in:
            await self.refuse("unauthenticated")
        if order_id is None:
            await self.refuse("forbidden")
        self.protocol = protocol.negotiate(self.scope.get("subprotocols"))
        self.limits = Limits.from_settings()
        query = query_params(self.scope)
        after_seq = parse_id(query.get("after_seq", [""])[0], minimum=0)
        after = parse_id(query.get("after", [""])[0])
        # The group is joined before the database is read: a message sent
        # meanwhile waits in this socket's channel (and is not sent twice,
        # see `replayed`). The watch on the user, token or session counts
        # from before the read (`since`): a change the read did not see
        # reaches it.
        listener = access_changes.listener()
        since = await listener.mark()
        self.group = service.group_name(order_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        try:
            opening = await service.open_chat(
                user, order_id, token, self.protocol.catches_up, after=after, after_seq=after_seq
            )
        except service.Refused as refused:
            await self.leave_groups()
            await self.refuse(refused.reason)
        if token is not None:
            # The key that let the user in (the socket closes when it is revoked); never logged.
            self.scope["auth_token"] = token
        self.watch = await listener.watch(
            access_keys(self.scope, opening.member.user_id), self.access_changed, since=since
        )
        user_id = opening.member.user_id
        if not OPEN_SOCKETS.take(user_id, self.limits.socket_cap(opening.member.employee)):
            await self.leave_groups()
            return await self.too_many_sockets(user_id)
        self.counted_user = user_id
        self.messages = self.limits.message_rate()
        self.frames = self.limits.frame_rate()
        self.strikes = Strikes()
        self.typing = Throttle(TYPING_INTERVAL)
        self.replayed = set()  # ids sent from the database, not to be sent again live
        self.group_renewed = time.monotonic()
        self.member = member = opening.member
        self.beat = presence.heartbeat(member.order_id, member.email, member.employee)
        self.receive_now(self.heartbeat_now)
        await self.accept(self.protocol.subprotocol)
        self.counted_open = metrics.CHAT_SOCKETS[self.protocol.version]
        self.counted_open.inc()
        logger.info("Chat opened: user %s, order %s, v%d", member.user_id, member.order_id, self.protocol.version)
        await self.channel_layer.group_send(self.group, service.presence_event("chat_join", member))
        if self.protocol.catches_up:
            self.conversation = opening.conversation
            await self.send_json(
                self.protocol.ready(member, opening.reads, self.limits.for_client(), opening.conversation)
            )
            # Catch up: the client's place (`?after_seq=`, or the older
            # `?after=` id) resumes, else recent history.
            if opening.missed is not None:
                await self.send_missed_page(after, after_seq, *opening.missed)
            else:
                await self.send_history_page(None, *opening.history)
            await self.follow_queue()

    async def too_many_sockets(self, user_id):
        # Accepted to be closed with a code the client can read (a refused
        # handshake is a bare 403): it should not reconnect on its own.
        logger.warning("Chat refused, too many sockets: user %s", user_id)
        metrics.handshake_refused("too_many_sockets")
        await self.accept(self.protocol.subprotocol)
        await self.close(code=protocol.CLOSE_TOO_MANY_SOCKETS)

    async def websocket_connect(self, message):
        try:
            await super().websocket_connect(message)
        except Exception as error:
            if unreachable(error):
                service_down = "database"
            elif isinstance(error, (RedisError, OSError)):
                service_down = "redis"
            else:
                raise
            # PostgreSQL or Redis went down during the handshake: accepted (if
            # not yet) and closed with 4503, as the token middleware answers
            # while PostgreSQL is down; nothing of the socket is kept.
            logger.warning("Chat handshake not handled, %s unavailable: %s", service_down, error)
            metrics.handshake_refused(f"{service_down}_unavailable")
            if self.member is None:
                await self.leave_groups()
                await self.accept()
            await self.close(code=CLOSE_TRY_AGAIN_LATER)

    async def websocket_disconnect(self, message):
        # Channels' own also runs close_old_connections() in its one sync
        # thread as each socket closes, a queue when many close together.
        # This consumer's database calls close what they open (main.infra.db).
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def disconnect(self, code):
        self.let_go()
        try:
            if self.heartbeat_sent is not None and not self.heartbeat_sent.done():
                # A heartbeat, then the socket closed: the heartbeat counts
                # before the chat is left (the chapter's client reads the
                # dashboard right after closing).
                await asyncio.wait([self.heartbeat_sent], timeout=HEARTBEAT_LANDS_SECONDS)
        finally:
            # Out of the groups before the room is told: the leave does not
            # come back to this socket's channel, nor, as a worker stops, to
            # the channels of the others it is closing.
            await self.leave_groups()
        if self.member is None:
            return
        if not lifecycle.stopping():  # the worker reports its stop's closes as one line
            logger.info("Chat closed: user %s, order %s", self.member.user_id, self.member.order_id)
        try:
            await self.channel_layer.group_send(self.group, service.presence_event("chat_leave", self.member))
        except (RedisError, OSError) as error:
            # The others see the presence list without them soon anyway.
            logger.warning("Chat leave not told, channel layer unavailable: %s", error)

    def let_go(self):
        """No access change or queue read reaches this consumer any more."""
        if self.watch is not None:
            self.watch.close()
        if self.place is not None:
            self.place.cancel()

    async def leave_groups(self):
        queue_group = events.CONVERSATIONS_GROUP if self.in_queue else None
        self.let_go()
        for group in (self.group, queue_group):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        if self.closing:
            return
        ref = None
        try:
            self.frames.take()
            content = protocol.parse_frame(
                text_data, bytes_data, self.protocol.frame_types, self.limits.max_frame_bytes
            )
            if content["type"] == "message":
                ref = self.protocol.ref(content)
                await self.on_message(content, ref)
            else:
                await getattr(self, "on_" + content["type"])(content)
            self.strikes.accepted()
            return
        except protocol.ChatError as refused:
            error = refused
        except Exception as failure:
            if unreachable(failure):
                # PostgreSQL is down: the frame was not handled (a message not
                # stored). Not a strike: the client did nothing wrong.
                logger.warning("Chat frame not handled, database unavailable: order %s", self.member.order_id)
                error = protocol.ChatError(
                    "unavailable", "Briefly unavailable; try again shortly.", retry_after=RETRY_AFTER_SECONDS
                )
                await self.send_refusal(error, ref)
                return
            # A strike all the same: a client that keeps sending a frame the
            # server fails on is closed as one that keeps sending refused ones.
            logger.exception("Chat frame failed: user %s, order %s", self.member.user_id, self.member.order_id)
            error = protocol.ChatError("server_error", "Something went wrong; try again.")
        if self.strikes.refused():
            # Refusal after refusal: the client is not listening; stop
            # spending memory and time on it (docs/protocol.md).
            logger.warning(
                "Chat closed for repeated refused frames: user %s, order %s",
                self.member.user_id,
                self.member.order_id,
            )
            await self.close(code=protocol.CLOSE_POLICY_VIOLATION)
            return
        await self.send_refusal(error, ref)

    async def send_refusal(self, error, ref):
        event = self.protocol.refusal(error, ref)
        if event is not None:  # v1 has no error event: a refused frame is dropped
            await self.send_json(event)

    # Client frames.

    async def on_message(self, content, ref=None):
        text, notices = protocol.clean_message(content, self.limits.max_message_chars)
        client_id = self.protocol.client_id(content)
        self.messages.take()
        # Stored first, then fanned out.
        event, fresh = await service.send_message(self.member, text, client_id)
        if fresh:
            metrics.SOCKET_MESSAGES_STORED.inc()
        if ref is not None:
            event["ref"] = ref  # shown to the sender only (protocol.V2.show)
        if not fresh:
            # Sent again under its client_id: its sender alone gets the
            # message stored the first time; the others had it then.
            await self.show(event)
        else:
            try:
                await self.channel_layer.group_send(self.group, event)
                metrics.MESSAGES_FANNED_OUT.inc()
            except Exception:
                # Stored, so accepted: an error event now would make the
                # client send it again (a duplicate). The sender is shown it
                # here; the others are sent its ids alone, which always
                # encode, and read it from the database (chat_stored).
                logger.exception("Chat fan-out failed: order %s, message %s", self.member.order_id, event["id"])
                metrics.FANOUT_FAILURES.inc()
                self.replayed.add(event["id"])  # not shown again when the ids come back
                await self.show(event)
                await service.announce_stored(self.member, event)
        for notice in self.protocol.notices(notices, event, ref):
            await self.send_json(notice)

    async def on_heartbeat(self, content):
        self.touch_presence()
        if self.renewal_due():
            self.group_renewed = time.monotonic()
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
            except Exception:
                # Renewed on the next heartbeat; a lost subscription closes the socket anyway.
                logger.warning("Group renewal failed: order %s", self.member.order_id, exc_info=True)

    def heartbeat_now(self, text):
        """A heartbeat as the server reads it (BaseConsumer.receive_now),
        handled as receive() would without waking this consumer. False for
        any other frame, and for a heartbeat the frame rate refuses or that
        renews the groups: those take the usual way."""
        if text not in protocol.HEARTBEAT_FRAMES or self.closing or self.renewal_due() or not self.frames.spend():
            return False
        self.touch_presence()
        self.strikes.accepted()
        return True

    def touch_presence(self):
        # Not waited for: the socket's next frame is handled meanwhile, and a
        # failure is logged by presence (the client can do nothing about it).
        # One at a time per socket: while the last is on its way, another
        # adds nothing (the last lands on Redis's clock, later).
        metrics.HEARTBEATS.inc()
        if self.heartbeat_sent is None or self.heartbeat_sent.done():
            self.heartbeat_sent = self.beat()

    def renewal_due(self):
        # The pub/sub layer's groups live in this process as long as its
        # subscription (a broken one closes the socket): nothing to renew.
        if not getattr(self.channel_layer, "groups_expire", True):
            return False
        return time.monotonic() - self.group_renewed > GROUP_RENEW_SECONDS

    async def on_typing(self, content):
        if self.typing.allow():  # extra typing frames are dropped
            await self.channel_layer.group_send(self.group, service.typing_event(self.member))

    async def on_history(self, content):
        before = protocol.optional_id(content, "before")
        limit = protocol.page_size(content, self.limits.history_page)
        await self.send_history_page(before, *await service.history(self.member, before, limit))

    async def on_resume(self, content):
        after_seq = protocol.optional_id(content, "after_seq")
        after = protocol.optional_id(content, "after")
        if after_seq is None and after is None:
            raise protocol.ChatError(
                "bad_request", "`after_seq` (the last message seq you have all up to) is required."
            )
        if after_seq is not None:
            after = None
        missed = await service.missed(self.member, after=after, after_seq=after_seq)
        await self.send_missed_page(after, after_seq, *missed)

    async def on_read(self, content):
        message_id = protocol.optional_id(content, "id")
        if message_id is None:
            raise protocol.ChatError("bad_request", "`id` (the last message id read) is required.")
        last_read = await service.mark_read(self.member, message_id)
        await events.read(self.member.order_id, self.member.user_id, self.member.name, last_read)

    async def send_history_page(self, before, messages, has_more):
        if before is None:  # the latest page may overlap live events already queued
            self.replayed = {m["id"] for m in messages}
        messages = [self.protocol.show(m, self.member) for m in messages]
        await self.send_json({"type": "history", "before": before, "messages": messages, "has_more": has_more})

    async def send_missed_page(self, after, after_seq, messages, has_more):
        self.replayed = {m["id"] for m in messages}
        for message in messages:
            await self.show(message)
        resumed = {"type": "resumed", "after": after, "after_seq": after_seq, "has_more": has_more}
        if messages:
            resumed.update(last_id=messages[-1]["id"], last_seq=messages[-1]["seq"])
        else:
            resumed.update(last_id=after, last_seq=after_seq)
        await self.send_json(resumed)

    async def show(self, event):
        frame = self.protocol.show(event, self.member)
        if frame is not None:
            await self.send_json(frame)

    # Group events.

    async def chat_message(self, event):
        if event["id"] not in self.replayed:
            await self.show(event)
        if "conversation" in event and self.protocol.catches_up:
            await self.conversation_is({"assigned_to": None, **(self.conversation or {}), **event["conversation"]})

    async def chat_stored(self, event):
        """A stored message whose event the channel layer could not carry:
        its ids alone came (service.announce_stored), the rest is read back."""
        if event["id"] in self.replayed:
            return
        try:
            message = await service.stored_message(self.member, event["id"])
        except Exception:
            # The client fills the gap from the database: by seq, on resume.
            logger.warning("Stored message not read back: order %s", self.member.order_id, exc_info=True)
            return
        if message is not None:
            await self.chat_message(message)

    chat_join = chat_leave = chat_typing = chat_read = show

    async def chat_conversation(self, event):
        """An employee claimed, released, assigned, resolved or reopened it."""
        await self.conversation_is({key: event[key] for key in ("status", "waiting_since", "assigned_to")})

    async def conversation_is(self, state):
        if state == self.conversation:
            return
        self.conversation = state
        frame = self.protocol.conversation(state)
        if frame is not None:
            await self.send_json(frame)
        await self.follow_queue()

    async def follow_queue(self):
        """A waiting customer's v2 socket hears of every conversation's
        change, and is told where it stands in the queue."""
        waiting = (
            not self.member.employee
            and self.protocol.catches_up
            and self.conversation is not None
            and self.conversation["status"] == "waiting"
        )
        if waiting and not self.in_queue:
            await self.channel_layer.group_add(events.CONVERSATIONS_GROUP, self.channel_name)
        elif self.in_queue and not waiting:
            await self.channel_layer.group_discard(events.CONVERSATIONS_GROUP, self.channel_name)
            self.place.forget()
        self.in_queue = waiting
        if waiting:
            if self.place is None:
                self.place = QueuePlace(self.member.order_id, self.tell_place)
            self.place.changed()

    async def conversations_changed(self, event):
        # Someone reading moves nobody.
        if event.get("reader_id") is None and self.in_queue:
            self.place.changed()

    async def tell_place(self, place):
        if not self.in_queue or self.closing:
            return False
        await self.send_json(self.protocol.queue(place))
        return True

    def access_changed(self, key):
        # Told by the process's listener, outside this consumer's dispatch:
        # the check waits its turn with the socket's other messages.
        asyncio.ensure_future(self.tell_self({"type": "access.check", "kind": key[0]}))

    async def tell_self(self, message):
        try:
            await self.channel_layer.send(self.channel_name, message)
        except Exception as error:
            # Redis is down: the socket is closed with 4503 anyway, and checked at its next handshake.
            logger.warning("Chat: an access change not passed on (%s)", error)

    async def access_check(self, event):
        """The user changed (still the same user, still admitted?), or the
        token or session that let them in ended."""
        if self.member is None or self.closing:
            return
        try:
            closing = await service.close_for_access(self.scope, self.member, event["kind"])
        except Exception as error:
            if not unreachable(error):
                raise
            # Not known now: the socket stays, and is checked again at its next handshake.
            logger.warning("Chat access not checked, database unavailable: order %s", self.member.order_id)
            return
        if closing is None:
            return
        code, why = closing
        logger.info("Chat closed, %s: user %s, order %s", why, self.member.user_id, self.member.order_id)
        await self.close(code=code)

    async def channel_layer_lost(self, event):
        # The channel layer's subscription to Redis broke: events sent
        # meanwhile never came. Close (try again later); the client
        # reconnects and resumes from the database.
        logger.info("Chat closed, channel layer lost: order %s", self.member.order_id if self.member else None)
        await self.close(code=CLOSE_TRY_AGAIN_LATER)
