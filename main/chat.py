"""The customer-service chat's rules, apart from the wire: who may join, what
a valid frame is, rate limits, storage, history and resume. ChatConsumer
(main/consumers.py) only moves frames between a socket, these functions and
the channel layer. The protocol is described in docs/protocol.md.

Every ORM call here goes through main.db (database_sync_to_async): Django's ORM is
synchronous and must never run on the event loop.
"""

import hashlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from rest_framework.authtoken.models import Token

from . import chat_store, models
from .db import db_sync_to_async as db
from .views import get_chat_order

# The WebSocket subprotocol a client offers to speak v2; without it, v1.
V2 = "booktime.chat.v2"

V1_TYPES = {"message", "heartbeat"}
V2_TYPES = V1_TYPES | {"typing", "history", "resume", "read"}

MAX_ORDER_ID = 2**63 - 1  # PostgreSQL bigint
DELETED_USER = "(deleted user)"
MAX_REF_CHARS = 64  # a v2 message frame's optional `ref`, echoed to its sender

# A socket that keeps sending frames the server refuses is closed with 1008
# (policy violation): this many refusals in a row, within this many seconds.
# A person typing never comes near it (the page sends one frame per message).
STRIKE_LIMIT = 40
STRIKE_WINDOW_SECONDS = 30.0

# The close code of a socket whose token was revoked (POST /mobile-api/logout/).
CLOSE_TOKEN_REVOKED = 4401
CLOSE_POLICY_VIOLATION = 1008
# A handshake or socket the server cannot serve now (PostgreSQL unreachable):
# reconnect with back-off. (As 4401 mirrors HTTP 401, 4503 mirrors 503;
# daphne, under runserver, lets an application send only 1000 or
# 3000-4999, not 1013.)
CLOSE_TRY_AGAIN_LATER = 4503

logger = logging.getLogger(__name__)


class ChatError(Exception):
    """A refused frame: answered to a v2 client as an `error` event."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def event(self):
        return {"type": "error", "code": self.code, "message": self.message, **self.extra}


@dataclass(frozen=True)
class Member:
    """A user admitted to one order's chat."""

    order_id: int
    customer_id: int  # the order's owner: anyone else in the chat is an employee
    user_id: int
    email: str
    name: str
    employee: bool


def group_name(order_id):
    return f"customer-service_{order_id}"


def token_group(key):
    """The channel-layer group of the chat sockets opened with token `key`:
    named after a hash of the key, never the key itself."""
    return "chat-token-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def live_token(user, key):
    """`key` while it is still `user`'s valid token, else None."""
    return Token.objects.filter(key=key, user_id=user.pk, user__is_active=True).values_list("key", flat=True).first()


def close_token_sockets(key):
    """From sync code (the logout view): close every chat socket opened with
    token `key`, on every server process. Best effort: a channel-layer
    failure is logged, and the revoked token is refused from then on anyway."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(token_group(key), {"type": "chat.revoked"})
    except Exception:
        logger.exception("Could not close the chat sockets of a revoked token")


def parse_id(value):
    """A positive database id from an int or a string of digits, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 < value <= MAX_ORDER_ID:
        return None
    return value


def join(user, order_id):
    """The Member `user` is in order `order_id`'s chat, or None when refused
    (anonymous, not theirs, no such order, not an id: one answer for all, so
    a refusal says nothing about whether the order exists). An employee who
    is admitted becomes the order's last_spoken_to. Synchronous: open_chat
    runs it on the database thread."""
    order_id = parse_id(order_id)
    if user is None or order_id is None:
        return None
    employee = user.is_authenticated and user.is_employee
    order = get_chat_order(user, order_id, employee)
    if order is None:
        return None
    if employee:
        # Only now that the user is admitted; update() touches one column.
        models.Order.objects.filter(pk=order.pk).update(last_spoken_to=user)
    return Member(
        order_id=order.pk,
        customer_id=order.user_id,
        user_id=user.pk,
        email=user.email,
        name=user.display_name,
        employee=employee,
    )


@dataclass
class Opening:
    """What a socket's handshake reads: the member and, for v2, everyone's
    read markers and either the messages missed since the client's place or
    the latest history page (each as (messages, has_more))."""

    member: Member
    reads: list | None = None
    missed: tuple | None = None
    history: tuple | None = None


@db
def open_chat(user, order_id, token_key=None, v2=False, after=None, after_seq=None):
    """The handshake's reads in one call on the database thread rather than
    four queued behind each other's: the Opening, or None when the user is
    refused (see join) or `token_key`, the token the socket was opened with,
    is no longer valid."""
    member = join(user, order_id)
    if member is None or (token_key is not None and live_token(user, token_key) is None):
        return None
    if not v2:
        return Opening(member)
    opening = Opening(member, reads=read_markers(member))
    if after_seq is not None or after is not None:
        opening.missed = _missed(member, after=after, after_seq=after_seq)
    else:
        opening.history = _history(member)
    return opening


# --- Incoming frames ---------------------------------------------------------


def parse_frame(text_data, bytes_data, allowed_types):
    """The JSON object a frame carries, or ChatError."""
    if text_data is None:
        raise ChatError("bad_frame", "Frames must be text frames carrying a JSON object.")
    if len(text_data) > settings.CHAT_MAX_FRAME_BYTES or (
        len(text_data.encode("utf-8", "surrogatepass")) > settings.CHAT_MAX_FRAME_BYTES
    ):
        raise ChatError("too_large", f"A frame may not exceed {settings.CHAT_MAX_FRAME_BYTES} bytes.")
    try:
        content = json.loads(text_data)
    except ValueError:
        raise ChatError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(content, dict):
        raise ChatError("bad_frame", "The frame must be a JSON object.")
    kind = content.get("type")
    if not isinstance(kind, str) or kind not in allowed_types:
        raise ChatError("unknown_type", f"Unknown type; expected one of: {', '.join(sorted(allowed_types))}.")
    return content


def clean_message(content):
    """The text of a `message` frame, stored and echoed exactly as sent."""
    text = content.get("message")
    if not isinstance(text, str):
        raise ChatError("bad_message", "`message` must be a string.")
    if not text.strip():
        raise ChatError("empty_message", "Empty or blank messages are not sent.")
    if len(text) > settings.CHAT_MAX_MESSAGE_CHARS:
        raise ChatError("too_long", f"A message may not exceed {settings.CHAT_MAX_MESSAGE_CHARS} characters.")
    # PostgreSQL text cannot hold NUL, and lone surrogates are not Unicode text.
    if "\x00" in text:
        raise ChatError("bad_message", "`message` may not contain NUL characters.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError("bad_message", "`message` must be valid Unicode text.") from None
    return text


def optional_id(content, key):
    """content[key] as a non-negative id, None when absent, else ChatError."""
    value = content.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ORDER_ID:
        raise ChatError("bad_request", f"`{key}` must be a non-negative integer message id.")
    return value


def message_ref(content):
    """A v2 message frame's optional `ref` (any short string the client
    picks), echoed in the sender's own chat_message or error; None if absent."""
    ref = content.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str) or not 0 < len(ref) <= MAX_REF_CHARS:
        raise ChatError("bad_request", f"`ref` must be a string of 1 to {MAX_REF_CHARS} characters.")
    return ref


def page_size(content, maximum):
    value = content.get("limit", maximum)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ChatError("bad_request", "`limit` must be a positive integer.")
    return min(value, maximum)


class RateLimiter:
    """A token bucket: `burst` at once, then `per_second`. One per socket."""

    def __init__(self, burst, per_second, clock=time.monotonic):
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self):
        """Spend one token; raise ChatError('rate_limited') when there is none."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return
        retry_after = round((1 - self.tokens) / self.per_second, 2)
        raise ChatError("rate_limited", "Too many messages; slow down.", retry_after=retry_after)


class Strikes:
    """Refused frames in a row, counted over the last `window` seconds; a
    frame the server accepts starts the count again. One per socket."""

    def __init__(self, limit=STRIKE_LIMIT, window=STRIKE_WINDOW_SECONDS, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.times = deque()

    def refused(self):
        """Count a refusal; True when the socket has had too many."""
        now = self.clock()
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        return len(self.times) >= self.limit

    def accepted(self):
        self.times.clear()


# --- Storage and reading -----------------------------------------------------


def timestamp(dt):
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_event(message, customer_id, username=None):
    """A stored message as the group event every socket formats for its client."""
    if username is None:
        username = message.user.display_name if message.user_id else DELETED_USER
    return {
        "type": "chat_message",
        "id": message.pk,
        "seq": message.seq,
        "user_id": message.user_id,
        "username": username,
        "message": message.text,
        "created": timestamp(message.created),
        "employee": message.user_id is not None and message.user_id != customer_id,
    }


async def store_message(member, text):
    """Store a message (before anyone is sent it) and return its group event.
    It is written with the other messages of the moment (main.chat_store),
    numbered with its order's next `seq`."""
    message = await chat_store.writer().store(member.order_id, member.user_id, text)
    return message_event(message, member.customer_id, username=member.name)


def _messages(member):
    return models.ChatMessage.objects.filter(order_id=member.order_id).select_related("user")


def _history(member, before=None, limit=None):
    """The `limit` latest messages older than id `before` (all, without it),
    oldest first, and whether older ones remain."""
    limit = limit or settings.CHAT_HISTORY_PAGE
    messages = _messages(member)
    if before is not None:
        messages = messages.filter(id__lt=before)
    page = list(messages.order_by("-id")[: limit + 1])
    has_more = len(page) > limit
    return [message_event(m, member.customer_id) for m in reversed(page[:limit])], has_more


history = db(_history)


def _missed(member, after=None, after_seq=None, limit=None):
    """Messages after sequence number `after_seq` (exact: seq has no gaps),
    or with an id above `after` (the older form), in order, and whether more
    remain."""
    limit = limit or settings.CHAT_RESUME_LIMIT
    messages = _messages(member)
    messages = messages.filter(seq__gt=after_seq) if after_seq is not None else messages.filter(id__gt=after)
    page = list(messages.order_by("seq")[: limit + 1])
    return [message_event(m, member.customer_id) for m in page[:limit]], len(page) > limit


missed = db(_missed)


@db
def mark_read(member, message_id):
    """Move the member's read marker forward to `message_id` (never back);
    the marker now stored."""
    # Not past the chat's last message, so no one can be "seen" in advance.
    latest = _messages(member).aggregate(latest=Max("id"))["latest"] or 0
    message_id = min(message_id, latest)
    marker, _ = models.ChatReadMarker.objects.get_or_create(order_id=member.order_id, user_id=member.user_id)
    if message_id > marker.last_read_id:
        models.ChatReadMarker.objects.filter(pk=marker.pk, last_read_id__lt=message_id).update(last_read_id=message_id)
        marker.refresh_from_db()
    return marker.last_read_id


def read_markers(member):
    """Everyone's read markers in the chat: name, last read id, and whether
    it is the member's own."""
    markers = models.ChatReadMarker.objects.filter(order_id=member.order_id).select_related("user")
    return [
        {"username": m.user.display_name, "id": m.last_read_id, "mine": m.user_id == member.user_id} for m in markers
    ]


# --- Outgoing events ---------------------------------------------------------


def presence_event(kind, member):
    """chat_join / chat_leave as a group event."""
    return {
        "type": kind,
        "username": member.name,
        "user_id": member.user_id,
        "employee": member.employee,
        "at": timestamp_now(),
    }


def timestamp_now():
    return timestamp(timezone.now())


def for_client(event, v2, member):
    """A group event as this socket's client sees it: the chapter's exact
    shapes for v1, the richer ones for v2 (with `mine` for its own events)."""
    kind = event["type"]
    if not v2:
        if kind == "chat_message":
            return {"type": kind, "username": event["username"], "message": event["message"]}
        return {"type": kind, "username": event["username"]}
    out = {key: value for key, value in event.items() if key not in ("user_id", "ref")}
    out["mine"] = event.get("user_id") == member.user_id
    if out["mine"] and event.get("ref") is not None:
        out["ref"] = event["ref"]  # the sender's own reference, for its eyes only
    return out
