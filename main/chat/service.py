"""The chat's rules and reads, apart from the wire: who joins, what a
handshake reads, history and resume, read markers, storing a message, and
the group events every socket formats for its client (chat.protocol).

Every ORM call here runs in a worker thread (main.infra.db): Django's ORM is
synchronous and must never run on the event loop.
"""

from dataclasses import dataclass
from datetime import UTC

from django.db.models import Max
from django.utils import timezone

from main import access
from main.infra.db import db_sync_to_async as db
from main.models import ChatMessage, ChatReadMarker, Order

from . import store
from .limits import Limits

DELETED_USER = "(deleted user)"


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


def join(user, order_id):
    """The Member `user` is in order `order_id`'s chat, or None when refused
    (access.visible_order). An employee who is admitted becomes the order's
    last_spoken_to. Synchronous: open_chat runs it on the database thread."""
    employee = access.is_employee(user)
    order = access.visible_order(user, order_id, employee)
    if order is None:
        return None
    if employee:
        # Only now that the user is admitted; update() touches one column.
        Order.objects.filter(pk=order.pk).update(last_spoken_to=user)
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
    """What a socket's handshake reads: the member and, for a protocol that
    catches up, everyone's read markers and either the messages missed since
    the client's place or the latest history page (each (messages, has_more))."""

    member: Member
    reads: list | None = None
    missed: tuple | None = None
    history: tuple | None = None


@db
def open_chat(user, order_id, token_key=None, catch_up=False, after=None, after_seq=None):
    """The handshake's reads in one call on the database thread: the
    Opening, or None when the user is refused (see join) or `token_key`, the
    token the socket was opened with, is no longer valid."""
    member = join(user, order_id)
    if member is None or (token_key is not None and not access.live_token(user, token_key)):
        return None
    if not catch_up:
        return Opening(member)
    opening = Opening(member, reads=read_markers(member))
    if after_seq is not None or after is not None:
        opening.missed = _missed(member, after=after, after_seq=after_seq)
    else:
        opening.history = _history(member)
    return opening


# --- Storing and reading -------------------------------------------------------


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
    """Store a message (before anyone is sent it) and return its group event."""
    message = await store.writer().store(member.order_id, member.user_id, text)
    return message_event(message, member.customer_id, username=member.name)


def _messages(member):
    return ChatMessage.objects.filter(order_id=member.order_id).select_related("user")


def _history(member, before=None, limit=None):
    """The `limit` latest messages older than id `before` (all, without it),
    oldest first, and whether older ones remain."""
    limit = limit or Limits.from_settings().history_page
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
    limit = limit or Limits.from_settings().resume_limit
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
    marker, _ = ChatReadMarker.objects.get_or_create(order_id=member.order_id, user_id=member.user_id)
    if message_id > marker.last_read_id:
        ChatReadMarker.objects.filter(pk=marker.pk, last_read_id__lt=message_id).update(last_read_id=message_id)
        marker.refresh_from_db()
    return marker.last_read_id


def read_markers(member):
    """Everyone's read markers in the chat: name, last read id, and whether
    it is the member's own."""
    markers = ChatReadMarker.objects.filter(order_id=member.order_id).select_related("user")
    return [
        {"username": m.user.display_name, "id": m.last_read_id, "mine": m.user_id == member.user_id} for m in markers
    ]


# --- Group events -------------------------------------------------------------


def presence_event(kind, member):
    """chat_join / chat_leave as a group event."""
    return {
        "type": kind,
        "username": member.name,
        "user_id": member.user_id,
        "employee": member.employee,
        "at": timestamp(timezone.now()),
    }


def typing_event(member):
    return {"type": "chat_typing", "username": member.name, "user_id": member.user_id}


def read_event(member, last_read):
    return {"type": "chat_read", "username": member.name, "user_id": member.user_id, "id": last_read}
