"""Reading an order's messages, in the one shape every client gets them
(the v2 chat_message, the REST API's messages): pages by id or seq, what a
client missed, and read markers. Synchronous: callers run them in a worker
thread (main.infra.db)."""

from django.db.models import Max

from main.models import ChatMessage, ChatReadMarker, User, display_name

from .wire import DELETED_USER, timestamp


def message_event(message, customer_id, username=None):
    """A stored message as the group event every socket formats for its
    client, and as the REST API shows it (without `type`, `user_id` and
    `client_id`, which only its sender sees)."""
    if username is None:
        username = message.user.display_name if message.user_id else DELETED_USER
    return _event(
        message.pk,
        message.seq,
        message.user_id,
        username,
        message.text,
        timestamp(message.created),
        message.client_id,
        customer_id,
    )


def _event(message_id, seq, user_id, username, text, created, client_id, customer_id):
    """The event, `created` as clients get it (wire.timestamp)."""
    event = {
        "type": "chat_message",
        "id": message_id,
        "seq": seq,
        "user_id": user_id,
        "username": username,
        "message": text,
        "created": created,
        "employee": user_id is not None and user_id != customer_id,
    }
    if client_id is not None:
        event["client_id"] = client_id
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
    markers = ChatReadMarker.objects.filter(order_id=order_id).select_related("user").order_by("id")
    return [{"username": m.user.display_name, "id": m.last_read_id, "mine": m.user_id == user_id} for m in markers]


# --- The same reads as statements ---------------------------------------------------
# For a chat handshake's one round trip (main.chat.service.open_chat, on
# PostgreSQL): history's latest page, missed's page and read_markers above,
# as SQL whose rows become the same events; main/tests/chat/test_opening.py
# holds both paths to the same answers.

# wire.timestamp's text, made by PostgreSQL: a page's times are neither
# parsed into datetimes nor formatted back, one by one, on the event loop.
# to_char's MS truncates, as isoformat's milliseconds do.
CREATED = """to_char(m.created AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""
_COLUMNS = f"m.id, m.seq, m.user_id, m.text, {CREATED} AS created, m.client_id, u.first_name, u.last_name, u.email"
# For each page asked (`a`: its number, order, `after_seq` or `after` or
# neither, and the rows wanted): the first rows after the place, or the
# latest rows.
PAGES = (
    "SELECT a.n, m.* FROM unnest(%(n)s::int[], %(orders)s::bigint[], %(after_seq)s::bigint[], %(after)s::bigint[],"
    " %(limit)s::int[]) AS a(n, order_id, after_seq, after, lim) CROSS JOIN LATERAL ("
    f" (SELECT {_COLUMNS} FROM {ChatMessage._meta.db_table} m"
    f"  LEFT JOIN {User._meta.db_table} u ON u.id = m.user_id"
    "  WHERE a.after_seq IS NOT NULL AND m.order_id = a.order_id AND m.seq > a.after_seq ORDER BY m.seq LIMIT a.lim)"
    " UNION ALL"
    f" (SELECT {_COLUMNS} FROM {ChatMessage._meta.db_table} m"
    f"  LEFT JOIN {User._meta.db_table} u ON u.id = m.user_id"
    "  WHERE a.after_seq IS NULL AND a.after IS NOT NULL AND m.order_id = a.order_id AND m.id > a.after"
    "  ORDER BY m.seq LIMIT a.lim)"
    " UNION ALL"
    f" (SELECT {_COLUMNS} FROM {ChatMessage._meta.db_table} m"
    f"  LEFT JOIN {User._meta.db_table} u ON u.id = m.user_id"
    "  WHERE a.after_seq IS NULL AND a.after IS NULL AND m.order_id = a.order_id ORDER BY m.id DESC LIMIT a.lim)"
    ") m"
)
READ_MARKERS = (
    "SELECT r.order_id, r.user_id, r.last_read_id, u.first_name, u.last_name, u.email"
    f" FROM {ChatReadMarker._meta.db_table} r JOIN {User._meta.db_table} u ON u.id = r.user_id"
    " WHERE r.order_id = ANY(%(orders)s::bigint[]) ORDER BY r.id"
)


def pages_statement(asked):
    """For each (order_id, limit, after, after_seq) in `asked`: history's
    latest page (without `after` and `after_seq`), or missed's page."""
    return PAGES, {
        "n": list(range(len(asked))),
        "orders": [a[0] for a in asked],
        "limit": [a[1] + 1 for a in asked],  # one more: are there more?
        "after": [a[2] if a[3] is None else None for a in asked],
        "after_seq": [a[3] for a in asked],
    }


def pages(rows, asked, customer_ids):
    """pages_statement's rows as history() or missed() gives each page
    (`customer_ids`: each order's owner, None for a page not wanted)."""
    found = [[] for _ in asked]
    for n, *row in rows:
        found[n].append(row)
    answers = []
    for (_, limit, after, after_seq), customer_id, page in zip(asked, customer_ids, found, strict=True):
        if customer_id is None:
            answers.append(None)
            continue
        latest = after is None and after_seq is None
        page.sort(key=(lambda row: -row[0]) if latest else (lambda row: row[1]))  # by id, newest first; by seq
        events = [
            _event(i, seq, user, display_name(*who) if user else DELETED_USER, text, created, client, customer_id)
            for i, seq, user, text, created, client, *who in page[:limit]
        ]
        answers.append(((events[::-1] if latest else events), len(page) > limit))
    return answers


def read_markers_statement(order_ids):
    return READ_MARKERS, {"orders": list(order_ids)}


def read_markers_of(rows, order_id, user_id):
    """read_markers(order_id, user_id) from read_markers_statement's rows."""
    return [
        {"username": display_name(*who), "id": last_read, "mine": reader == user_id}
        for order, reader, last_read, *who in rows
        if order == order_id
    ]
