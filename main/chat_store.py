"""Chat messages are written to the database in batches, one per process at a
time: the messages that arrive while a write is in flight go together in the
next one. A batch is one trip to a worker thread and one transaction (one
commit to wait for), however many chats and senders it holds, so a burst of
messages costs a few commits rather than one each. A message alone is
written at once.

Each message still gets its order's next `seq` under a lock on the order's
row, as ChatMessage.save does: a batch locks its orders in id order (so two
processes' batches never deadlock), reads each order's latest seq and
numbers its messages after it, in the order they arrived.
"""

import asyncio
import logging

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Max

from . import per_loop
from .db import db_sync_to_async
from .models import ChatMessage, Order

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # messages per transaction


class OrderGone(DatabaseError):
    """The message's order was deleted before it could be stored."""


class MessageWriter:
    """The running loop's (the process's) batching writer: `await store(...)`
    gives back the stored ChatMessage, or raises what prevented storing it."""

    def __init__(self):
        self.pending = []  # [(order_id, user_id, text, future)], oldest first
        self.writing = None  # the task writing batches while any are pending

    async def store(self, order_id, user_id, text):
        future = asyncio.get_running_loop().create_future()
        self.pending.append((order_id, user_id, text, future))
        if self.writing is None or self.writing.done():
            self.writing = asyncio.create_task(self.write_pending())
        return await future

    async def write_pending(self):
        while self.pending:
            batch, self.pending = self.pending[:MAX_BATCH], self.pending[MAX_BATCH:]
            try:
                outcomes = await write_batch([item[:3] for item in batch])
            except Exception as error:  # the database is out of reach: every sender is told
                outcomes = [error] * len(batch)
            for (*_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its sender has gone (socket closed); the message is stored
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def close(self):
        """Let the batches already accepted finish (at server shutdown)."""
        if self.writing is not None:
            await asyncio.gather(self.writing, return_exceptions=True)


def writer():
    return per_loop.get("chat-writer", MessageWriter, MessageWriter.close)


# Not thread-sensitive: a write must not queue behind the reads (joins,
# history) that share Channels' single sync thread; one batch runs at a time.
@db_sync_to_async(thread_sensitive=False)
def write_batch(items):
    """Store [(order_id, user_id, text)]: a ChatMessage, or the exception that
    kept it out, for each. One message that cannot be stored (its order or
    user deleted meanwhile) does not keep the others out."""
    try:
        with transaction.atomic():
            return insert(items)
    except IntegrityError:
        if len(items) == 1:
            raise
    logger.warning("A batch of %d chat messages failed; storing them one by one", len(items))
    outcomes = []
    for item in items:
        try:
            with transaction.atomic():
                [outcome] = insert([item])
        except DatabaseError as error:  # raised at commit too: foreign keys are checked there
            outcome = error
        outcomes.append(outcome)
    return outcomes


def insert(items):
    """Store a batch inside the caller's transaction; what it gives each item."""
    if connection.vendor == "postgresql":
        return insert_postgresql(items)
    return insert_orm(items)


# After the orders' rows are locked (in id order, FOR UPDATE), one statement
# numbers and inserts the whole batch: a new statement sees every message
# committed before the locks were granted. Raw SQL because on this path, the
# busiest of the chat, the ORM's query building cost more CPU than the
# database's work.
_LOCK_ORDERS = "SELECT id FROM {order} WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_INSERT_BATCH = """
WITH batch AS (
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) WITH ORDINALITY AS b(order_id, user_id, text, n)
), latest AS (
    SELECT o.id AS order_id, (SELECT coalesce(max(m.seq), 0) FROM {message} m WHERE m.order_id = o.id) AS seq
    FROM {order} o WHERE o.id IN (SELECT order_id FROM batch)
)
INSERT INTO {message} (order_id, user_id, text, seq, created)
SELECT b.order_id, b.user_id, b.text, latest.seq + row_number() OVER (PARTITION BY b.order_id ORDER BY b.n), now()
FROM batch b JOIN latest USING (order_id)
ORDER BY b.n
RETURNING id, order_id, seq, created
"""


def insert_postgresql(items):
    tables = {"order": Order._meta.db_table, "message": ChatMessage._meta.db_table}
    orders, users, texts = (list(column) for column in zip(*items, strict=True))
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_ORDERS.format(**tables), [sorted(set(orders))])
        cursor.execute(_INSERT_BATCH.format(**tables), [orders, users, texts])
        stored = {(order_id, seq): (pk, created) for pk, order_id, seq, created in cursor.fetchall()}
    # Each order's messages were numbered in arrival order from its latest seq.
    first = {}
    for order_id, seq in stored:
        first[order_id] = min(seq, first.get(order_id, seq))
    outcomes, seen = [], {}
    for order_id, user_id, text in items:
        if order_id not in first:
            outcomes.append(OrderGone(f"Order {order_id} no longer exists."))
            continue
        seq = first[order_id] + seen.get(order_id, 0)
        seen[order_id] = seen.get(order_id, 0) + 1
        pk, created = stored[(order_id, seq)]
        outcomes.append(ChatMessage(pk=pk, order_id=order_id, user_id=user_id, text=text, seq=seq, created=created))
    return outcomes


def insert_orm(items):
    order_ids = sorted({order_id for order_id, _, _ in items})
    locked = set(Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk").values_list("pk", flat=True))
    latest = dict(
        ChatMessage.objects.filter(order_id__in=locked)
        .values("order_id")
        .annotate(latest=Max("seq"))
        .values_list("order_id", "latest")
    )
    outcomes, messages = [], []
    for order_id, user_id, text in items:
        if order_id not in locked:
            outcomes.append(OrderGone(f"Order {order_id} no longer exists."))
            continue
        latest[order_id] = latest.get(order_id, 0) + 1
        message = ChatMessage(order_id=order_id, user_id=user_id, text=text, seq=latest[order_id])
        outcomes.append(message)
        messages.append(message)
    ChatMessage.objects.bulk_create(messages)
    return outcomes
