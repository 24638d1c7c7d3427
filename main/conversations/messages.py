"""Reading an order's messages, in the one shape every client gets them
(the v2 chat_message, the REST API's messages): pages by id or seq, what a
client missed, and read markers. Synchronous: callers run them in a worker
thread (main.infra.db)."""

from django.db.models import Max

from main.models import ChatMessage, ChatReadMarker

from .wire import DELETED_USER, timestamp


def message_event(message, customer_id, username=None):
    """A stored message as the group event every socket formats for its
    client, and as the REST API shows it (without `type`, `user_id` and
    `client_id`, which only its sender sees)."""
    if username is None:
        username = message.user.display_name if message.user_id else DELETED_USER
    event = {
        "type": "chat_message",
        "id": message.pk,
        "seq": message.seq,
        "user_id": message.user_id,
        "username": username,
        "message": message.text,
        "created": timestamp(message.created),
        "employee": message.user_id is not None and message.user_id != customer_id,
    }
    if message.client_id is not None:
        event["client_id"] = message.client_id
    return event


def of_order(order_id):
    return ChatMessage.objects.filter(order_id=order_id).select_related("user")


def history(order_id, customer_id, before=None, limit=50):
    """The `limit` latest messages older than id `before` (all, without it),
    oldest first, and whether older ones remain."""
    messages = of_order(order_id)
    if before is not None:
        messages = messages.filter(id__lt=before)
    page = list(messages.order_by("-id")[: limit + 1])
    return [message_event(m, customer_id) for m in reversed(page[:limit])], len(page) > limit


def missed(order_id, customer_id, after=None, after_seq=None, limit=500):
    """Messages after sequence number `after_seq` (exact: seq has no gaps),
    or with an id above `after` (the older form), in order, and whether more
    remain."""
    messages = of_order(order_id)
    messages = messages.filter(seq__gt=after_seq) if after_seq is not None else messages.filter(id__gt=after)
    page = list(messages.order_by("seq")[: limit + 1])
    return [message_event(m, customer_id) for m in page[:limit]], len(page) > limit


def page(order_id, customer_id, after_seq=None, before_seq=None, limit=50):
    """A page of messages by seq, oldest first: those after `after_seq`
    (the first `limit`), else those before `before_seq` (the last `limit`
    before it), else the latest; and whether more remain that way."""
    messages = of_order(order_id)
    if after_seq is not None:
        rows = list(messages.filter(seq__gt=after_seq).order_by("seq")[: limit + 1])
        return [message_event(m, customer_id) for m in rows[:limit]], len(rows) > limit
    if before_seq is not None:
        messages = messages.filter(seq__lt=before_seq)
    rows = list(messages.order_by("-seq")[: limit + 1])
    return [message_event(m, customer_id) for m in reversed(rows[:limit])], len(rows) > limit


def mark_read(order_id, user_id, message_id):
    """Move `user_id`'s read marker in the order's chat forward to
    `message_id` (never back, never past the chat's last message); the
    marker now stored."""
    latest = ChatMessage.objects.filter(order_id=order_id).aggregate(latest=Max("id"))["latest"] or 0
    message_id = min(message_id, latest)
    marker, _ = ChatReadMarker.objects.get_or_create(order_id=order_id, user_id=user_id)
    if message_id > marker.last_read_id:
        ChatReadMarker.objects.filter(pk=marker.pk, last_read_id__lt=message_id).update(last_read_id=message_id)
        marker.refresh_from_db()
    return marker.last_read_id


def id_of_seq(order_id, seq):
    """The id of the order's message `seq` (or of the last one before it), 0 if none."""
    row = ChatMessage.objects.filter(order_id=order_id, seq__lte=seq).order_by("-seq").values_list("id", flat=True)
    return row.first() or 0


def read_markers(order_id, user_id):
    """Everyone's read markers in the chat: name, last read id, and whether
    it is `user_id`'s own."""
    markers = ChatReadMarker.objects.filter(order_id=order_id).select_related("user")
    return [{"username": m.user.display_name, "id": m.last_read_id, "mine": m.user_id == user_id} for m in markers]
