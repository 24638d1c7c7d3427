"""The chat socket's rules and reads, apart from the wire: who joins, what a
handshake reads, history and resume, read markers, sending a message, and
the group events every socket formats for its client (chat.protocol).

Every ORM call here runs in a worker thread (main.infra.db): Django's ORM is
synchronous and must never run on the event loop.
"""

from dataclasses import dataclass

from django.utils import timezone

from main import access
from main.conversations import events, messages, state, store, wire
from main.infra.db import db_sync_to_async as db
from main.models import Order

from .limits import Limits


@dataclass(frozen=True)
class Member:
    """A user admitted to one order's chat."""

    order_id: int
    customer_id: int  # the order's owner: anyone else in the chat is an employee
    user_id: int
    email: str
    name: str
    employee: bool


group_name = events.order_group


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
    catches up, everyone's read markers, the conversation's state, and
    either the messages missed since the client's place or the latest
    history page (each (messages, has_more))."""

    member: Member
    reads: list | None = None
    conversation: dict | None = None
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
    opening = Opening(
        member,
        reads=messages.read_markers(member.order_id, member.user_id),
        conversation=state.state(member.order_id),
    )
    if after_seq is not None or after is not None:
        opening.missed = _missed(member, after=after, after_seq=after_seq)
    else:
        opening.history = _history(member)
    return opening


def _history(member, before=None, limit=None):
    limit = limit or Limits.from_settings().history_page
    return messages.history(member.order_id, member.customer_id, before, limit)


history = db(_history)


def _missed(member, after=None, after_seq=None):
    limit = Limits.from_settings().resume_limit
    return messages.missed(member.order_id, member.customer_id, after=after, after_seq=after_seq, limit=limit)


missed = db(_missed)


@db
def mark_read(member, message_id):
    """Move the member's read marker forward to `message_id`; the marker now stored."""
    return messages.mark_read(member.order_id, member.user_id, message_id)


async def send_message(member, text, client_id=None):
    """Store a message (before anyone is sent it); its group event, and
    whether it is new (a message sent again under its client_id is not)."""
    stored = await store.writer().store(member.order_id, member.user_id, text, client_id)
    return events.chat_message(stored, member.customer_id, username=member.name), stored.fresh


# --- Group events -------------------------------------------------------------


def presence_event(kind, member):
    """chat_join / chat_leave as a group event."""
    return {
        "type": kind,
        "username": member.name,
        "user_id": member.user_id,
        "employee": member.employee,
        "at": wire.timestamp(timezone.now()),
    }


def typing_event(member):
    return {"type": "chat_typing", "username": member.name, "user_id": member.user_id}
