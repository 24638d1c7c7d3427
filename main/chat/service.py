"""The chat socket's rules and reads, apart from the wire: who joins, what a
handshake reads, history and resume, read markers, sending a message, and
the group events every socket formats for its client (chat.protocol).

Every ORM call here runs in a worker thread (main.infra.db): Django's ORM is
synchronous and must never run on the event loop. The handshake's reads on
PostgreSQL are plain statements on the event loop (open_chat).
"""

import logging
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from django.utils import timezone

from main import access
from main.conversations import events, messages, state, store, wire
from main.infra import per_loop
from main.infra.auth import user_now
from main.infra.batching import Batches
from main.infra.db import db_sync_to_async as db
from main.infra.db import reads as db_reads

from . import protocol
from .limits import Limits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    """A user admitted to one order's chat."""

    order_id: int
    customer_id: int  # the order's owner: anyone else in the chat is an employee
    user_id: int
    email: str
    name: str
    employee: bool

    @classmethod
    def of(cls, admission, order_id):
        return cls(
            order_id, admission.customer_id, admission.user_id, admission.email, admission.name, admission.employee
        )


group_name = events.order_group


async def close_for_access(scope, member, kind):
    """After an access change of `kind` ("user", "session", "token"): the
    close code and reason for `member`'s socket, or None if it may stay. An
    ended session or token signs the socket out; a changed user is looked up
    afresh (an anonymous one has no pk)."""
    user = await user_now(scope) if kind == "user" else None
    if user is None or user.pk != member.user_id:
        return protocol.CLOSE_SIGNED_OUT, "signed out"
    admitted = await admitted_now(user, member)
    if admitted == "no":
        return protocol.CLOSE_ACCESS_WITHDRAWN, "access withdrawn"
    return None if admitted == "yes" else (protocol.CLOSE_ROLE_CHANGED, "role changed")


@db
def admitted_now(user, member):
    """Whether `user`, looked up afresh, may still be in `member`'s chat:
    "yes", "changed" (admitted, but no longer as they joined: an employee
    who is now only the order's owner) or "no"."""
    employee = access.is_employee(user)
    if access.visible_order(user, member.order_id, employee) is None:
        return "no"
    return "yes" if employee == member.employee else "changed"


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


Refused = access.Refused
MAX_OPENINGS = 100  # handshakes read in one round trip at most


class Question(NamedTuple):
    """One handshake's question to open_chat."""

    user: object
    order_id: int
    token: str | None
    catch_up: bool
    after: int | None
    after_seq: int | None


async def open_chat(user, order_id, token=None, catch_up=False, after=None, after_seq=None):
    """The handshake's reads: whether `token`'s user (or `user`) may open
    order `order_id`'s chat (access.Admission), and for a protocol that
    catches up what the client needs; the Opening, or raise Refused. On
    PostgreSQL the handshakes of the moment share one round trip from the
    event loop (`_open_many`); elsewhere each is one call on the database
    thread. An employee let in becomes the order's last_spoken_to."""
    reads = db_reads()
    if reads is None:
        return await _open_chat_orm(order_id, user, token, catch_up, after, after_seq)
    openings = per_loop.get("chat-openings", lambda: Batches(partial(_open_many, reads), max_batch=MAX_OPENINGS))
    return await openings(Question(user, order_id, token, catch_up, after, after_seq))


async def _open_many(reads, asked):
    """open_chat for each Question in `asked`: its Opening, or a Refused."""
    limits = Limits.from_settings()
    statements = [access.admission_statement([(q.order_id, q.user, q.token) for q in asked])]
    catching = [q for q in asked if q.catch_up]
    if catching:  # read alongside: a refused handshake's rows are dropped
        pages_asked = [(q.order_id, _page_size(limits, q), q.after, q.after_seq) for q in catching]
        orders = sorted({q.order_id for q in catching})
        statements += [
            messages.read_markers_statement(orders),
            state.states_statement(orders),
            messages.pages_statement(pages_asked),
        ]
    rows = await reads.run(statements)
    answers = [
        Opening(Member.of(admission, q.order_id)) if isinstance(admission, access.Admission) else admission
        for q, admission in zip(asked, access.admissions(rows[0], len(asked)), strict=True)
    ]
    if catching:
        opened = [answer for q, answer in zip(asked, answers, strict=True) if q.catch_up]
        customers = [o.member.customer_id if isinstance(o, Opening) else None for o in opened]
        states = state.states(rows[2])
        for q, opening, page in zip(catching, opened, messages.pages(rows[3], pages_asked, customers), strict=True):
            if not isinstance(opening, Opening):
                continue
            opening.reads = messages.read_markers_of(rows[1], q.order_id, opening.member.user_id)
            opening.conversation = states.get(q.order_id)
            if _resuming(q):
                opening.missed = page
            else:
                opening.history = page
    return answers


def _resuming(question):
    return question.after is not None or question.after_seq is not None


def _page_size(limits, question):
    return limits.resume_limit if _resuming(question) else limits.history_page


@db
def _open_chat_orm(order_id, user, token, catch_up, after, after_seq):
    member = Member.of(access.admit(order_id, user, token), order_id)
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


def stored_event(member, event):
    """A stored message's group event reduced to what always encodes, its
    ids: for when the channel layer refuses the whole event. Each socket
    that gets it reads the message back (stored_message)."""
    return {"type": "chat.stored", "order_id": member.order_id, "id": event["id"], "seq": event["seq"]}


async def announce_stored(member, event):
    """Send the chat's sockets stored_event. Should that fail too, they get
    the message on resume (a reconnect, or the gap in seq they see next)."""
    try:
        await events.send(group_name(member.order_id), stored_event(member, event))
    except Exception as error:
        logger.warning("Stored message not announced: order %s, message %s (%s)", member.order_id, event["id"], error)


@db
def stored_message(member, message_id):
    """Message `message_id` of the member's chat as its group event, with the
    conversation's state as it is now; None if it is gone."""
    message = messages.of_order(member.order_id).filter(pk=message_id).first()
    if message is None:
        return None
    event = messages.message_event(message, member.customer_id)
    conversation = state.state(member.order_id)
    if conversation is not None:
        event["conversation"] = conversation
    return event


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
