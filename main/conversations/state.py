"""Reading conversations as people see them: the inbox's items, one
conversation for one viewer, and the queue of waiting customers.
Synchronous: callers run them in a worker thread (main.infra.db)."""

import statistics
from datetime import timedelta

from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from main import access
from main.models import ChatMessage, ChatReadMarker, Conversation, User, display_name

from .wire import DELETED_USER, timestamp

LIST_LIMIT = 100  # conversations per list, unless asked for fewer (at most MAX_LIST_LIMIT)
MAX_LIST_LIMIT = 500
# The most recently changed conversations an inbox holds besides every waiting one.
ANSWERED_IN_INBOX = 200
RESOLVED_IN_INBOX = 50
# The expected wait is taken from first replies in this window, once there are enough.
REPLY_WINDOW = timedelta(hours=4)
REPLY_SAMPLES = 3


def person(user):
    return {"id": user.pk, "name": user.display_name} if user is not None else None


def visible(viewer, employee):
    """The conversations `viewer` may see: all for an employee, else their own."""
    conversations = Conversation.objects.select_related("assigned_to", "order__user")
    return conversations if employee else conversations.filter(order__in=access.own_orders(viewer))


def with_unread(conversations, viewer):
    """Each conversation annotated with `unread`: messages from others after
    the viewer's read marker."""
    read_up_to = ChatReadMarker.objects.filter(order_id=OuterRef("order_id"), user_id=viewer.pk).values("last_read_id")
    unread = (
        ChatMessage.objects.filter(order_id=OuterRef("order_id"), id__gt=Coalesce(Subquery(read_up_to[:1]), 0))
        .exclude(user_id=viewer.pk)
        .order_by()
        .values("order_id")
        .annotate(count=Count("id"))
        .values("count")
    )
    return conversations.annotate(unread=Coalesce(Subquery(unread[:1], output_field=IntegerField()), 0))


def in_inbox_order(conversations):
    """Waiting ones first, the longest wait first; then the latest change first."""
    waiting = Q(status=Conversation.WAITING)
    waiting_first = Case(When(waiting, then=Value(0)), default=Value(1))
    wait_began = Case(When(waiting, then=F("waiting_since")))  # a resolved one keeps its time: not here
    return conversations.order_by(waiting_first, wait_began, "-updated", "order_id")


def listing(viewer, employee, status=None, assigned=None, limit=LIST_LIMIT, order_ids=None):
    """The conversations `viewer` sees, as items (see item()), filtered by
    `status` and, for employees, `assigned` ("me", "none" or a user id)."""
    conversations = visible(viewer, employee)
    if status is not None:
        conversations = conversations.filter(status=status)
    if assigned == "me":
        conversations = conversations.filter(assigned_to=viewer)
    elif assigned == "none":
        conversations = conversations.filter(assigned_to__isnull=True)
    elif assigned is not None:
        conversations = conversations.filter(assigned_to_id=assigned)
    if order_ids is not None:
        conversations = conversations.filter(order_id__in=order_ids)
    rows = list(in_inbox_order(with_unread(conversations, viewer))[:limit])
    return items(rows, employee)


def inbox(viewer):
    """An employee's inbox: every waiting conversation (none is ever left
    out), the latest answered and the latest resolved ones."""
    conversations = with_unread(visible(viewer, True), viewer)
    waiting = list(in_inbox_order(conversations.filter(status=Conversation.WAITING)))
    recent = [
        conversation
        for status, count in ((Conversation.ANSWERED, ANSWERED_IN_INBOX), (Conversation.RESOLVED, RESOLVED_IN_INBOX))
        for conversation in conversations.filter(status=status).order_by("-updated")[:count]
    ]
    return items(waiting + recent, True)


def items(rows, employee):
    """Conversations (annotated with `unread`) as the API and the inbox show them."""
    last = last_messages(rows)
    return [item(c, last.get(c.order_id), employee) for c in rows]


def last_messages(rows):
    """Each conversation's latest message, by order id, in one query."""
    if not rows:
        return {}
    wanted = Q()
    for c in rows:
        wanted |= Q(order_id=c.order_id, seq=c.last_seq)
    return {m.order_id: m for m in ChatMessage.objects.filter(wanted).select_related("user")}


def item(conversation, last_message, employee):
    """One conversation for one viewer: its state, its last message, how many
    messages the viewer has not read; for employees, whose it is."""
    out = {
        "order_id": conversation.order_id,
        "status": conversation.status,
        "assigned_to": person(conversation.assigned_to),
        "waiting_since": waiting_since(conversation),
        "last_message": None,
        "unread": getattr(conversation, "unread", 0),
        "updated": timestamp(conversation.updated),
    }
    if last_message is not None:
        out["last_message"] = {
            "seq": last_message.seq,
            "username": last_message.user.display_name if last_message.user_id else DELETED_USER,
            "message": last_message.text,
            "at": timestamp(last_message.created),
        }
    if employee:
        customer = conversation.order.user
        out["customer"] = {"id": customer.pk, "name": customer.display_name, "email": customer.email}
    return out


def one(viewer, employee, order_id):
    """The item of the conversation about order `order_id`, or None."""
    found = listing(viewer, employee, limit=1, order_ids=[order_id])
    return found[0] if found else None


def state(order_id):
    """The conversation's shared state (no viewer's part), or None."""
    conversation = Conversation.objects.select_related("assigned_to").filter(order_id=order_id).first()
    if conversation is None:
        return None
    return {
        "status": conversation.status,
        "waiting_since": waiting_since(conversation),
        "assigned_to": person(conversation.assigned_to),
    }


def waiting_since(conversation):
    """Since when the customer waits, while they do (a resolved conversation
    keeps the time, for when it is reopened)."""
    return _waiting_since(conversation.status, conversation.waiting_since)


def _waiting_since(status, since):
    return timestamp(since) if status == Conversation.WAITING and since is not None else None


# state() as a statement, for chat handshakes' one round trip
# (main.chat.service); main/tests/chat/test_opening.py holds the two to the
# same answers.
STATES = (
    "SELECT c.order_id, c.status, c.waiting_since, a.id, a.first_name, a.last_name, a.email"
    f" FROM {Conversation._meta.db_table} c LEFT JOIN {User._meta.db_table} a ON a.id = c.assigned_to_id"
    " WHERE c.order_id = ANY(%(orders)s::bigint[])"
)


def states_statement(order_ids):
    return STATES, {"orders": list(order_ids)}


def states(rows):
    """{order_id: state(order_id)} from states_statement's rows (a missing one: None)."""
    found = {}
    for order_id, status, since, assigned_id, *who in rows:
        assigned = {"id": assigned_id, "name": display_name(*who)} if assigned_id is not None else None
        found[order_id] = {"status": status, "waiting_since": _waiting_since(status, since), "assigned_to": assigned}
    return found


# --- The queue ------------------------------------------------------------------------


def waiting_orders():
    """The waiting conversations' order ids, the longest wait first."""
    waiting = Conversation.objects.filter(status=Conversation.WAITING)
    return list(waiting.order_by("waiting_since", "order_id").values_list("order_id", flat=True))


def median_first_reply():
    """The median time, in seconds, that customers recently waited for a
    first reply (over REPLY_WINDOW), or None without REPLY_SAMPLES of them."""
    since = timezone.now() - REPLY_WINDOW
    replies = Conversation.objects.filter(last_replied_at__gte=since, last_wait_started__isnull=False)
    pairs = replies.values_list("last_wait_started", "last_replied_at")
    waits = [(replied - started).total_seconds() for started, replied in pairs]
    if len(waits) < REPLY_SAMPLES:
        return None
    return statistics.median(waits)
