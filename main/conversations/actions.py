"""What people do to a conversation (claim, release, assign, resolve,
reopen, read, send), each written at once and told to every process
(events). Synchronous: the REST API's views call them."""

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext

from main import access
from main.models import Conversation, User

from . import events, messages, state, store


class Held(Exception):
    """Someone else holds the conversation."""

    def __init__(self, holder):
        super().__init__(gettext("Held by %(name)s.") % {"name": holder.display_name})
        self.holder = holder


class NotAnEmployee(Exception):
    """A conversation is assigned to employees only."""


def _conversation(order_id):
    """The conversation about `order_id`, made (answered, no one waiting) if
    nobody has written yet."""
    conversation, _ = Conversation.objects.get_or_create(
        order_id=order_id, defaults={"status": Conversation.ANSWERED, "updated": timezone.now()}
    )
    return conversation


def _changed(order_id):
    """Tell the chat's sockets and the inboxes; the conversation's new state."""
    now = state.state(order_id)
    events.conversation_state_now(order_id, now)
    return now


def claim(order_id, agent):
    """`agent` holds the conversation, unless someone else does (Held)."""
    return _hand_over(order_id, agent, agent)


def release(order_id, agent):
    """Nobody holds it any more; only its holder may let it go (Held)."""
    return _hand_over(order_id, agent, None)


def _hand_over(order_id, agent, holder):
    """`holder` holds the conversation, if `agent` or nobody did (else Held)."""
    with transaction.atomic():
        _conversation(order_id)
        free = Q(assigned_to__isnull=True) | Q(assigned_to=agent)
        if not Conversation.objects.filter(free, order_id=order_id).update(assigned_to=holder, updated=timezone.now()):
            raise Held(Conversation.objects.select_related("assigned_to").get(order_id=order_id).assigned_to)
    return _changed(order_id)


def assign(order_id, assignee_id):
    """Hand the conversation to an employee (NotAnEmployee otherwise)."""
    assignee = User.objects.filter(pk=assignee_id).first()
    if not access.is_employee(assignee):
        raise NotAnEmployee()
    with transaction.atomic():
        _conversation(order_id)
        Conversation.objects.filter(order_id=order_id).update(assigned_to=assignee, updated=timezone.now())
    return _changed(order_id)


def resolve(order_id):
    """Close the conversation; the customer's next message opens it again."""
    with transaction.atomic():
        _conversation(order_id)
        Conversation.objects.filter(order_id=order_id).update(status=Conversation.RESOLVED, updated=timezone.now())
    return _changed(order_id)


def reopen(order_id):
    """Open a resolved conversation again: waiting if its customer's last
    messages are unanswered, else answered."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().filter(order_id=order_id).first()
        if conversation is not None and conversation.status == Conversation.RESOLVED:
            status = Conversation.WAITING if conversation.waiting_since is not None else Conversation.ANSWERED
            Conversation.objects.filter(order_id=order_id).update(status=status, updated=timezone.now())
    return _changed(order_id)


def read(order_id, reader, seq):
    """`reader` has read the order's messages up to `seq`; the id of the
    last one read now, as the chat's read markers give it."""
    last_read = messages.mark_read(order_id, reader.pk, messages.id_of_seq(order_id, seq))
    events.read_now(order_id, reader.pk, reader.display_name, last_read)
    return last_read


def send(order, sender, text, client_id=None):
    """Store a message and send it to the chat's sockets as one sent there
    would be (v1 sockets see a chat_message); a message sent again under
    its client_id is not stored or sent again. The Stored message."""
    [stored] = store.store_messages([(order.pk, sender.pk, text, client_id)])
    if isinstance(stored, Exception):
        raise stored
    if stored.fresh:
        event = events.chat_message(stored, order.user_id, username=sender.display_name)
        events.send_now(events.order_group(order.pk), event)
        events.conversations_changed_now([order.pk])
    return stored
