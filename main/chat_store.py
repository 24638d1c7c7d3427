"""Chat messages are written to the database in batches, one per process at a
time: the messages that arrive while a write is in flight go together in the
next one. A batch is one transaction (one commit to wait for), however many
chats and senders it holds, so a burst of messages costs a few commits rather
than one each. A message alone is written at once.

Each message still gets its order's next `seq` under a lock on the order's
row, as ChatMessage.save does: a batch locks its orders in id order (so two
processes' batches never deadlock), reads each order's latest seq and
numbers its messages after it, in the order they arrived.

On PostgreSQL all of that is one statement, a function call (migration
0006), sent on the writer's own async connection from the event loop: one
round trip per batch, with no hop to a worker thread and no pool checkout.
That cut the server's CPU per chat message by about 40% (README, "Benchmarks"). Other
databases (SQLite, the embedded default) go through the ORM in a thread.
"""

import asyncio
import logging

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.db.models import Max

from . import db, per_loop
from .models import ChatMessage, Order

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # messages per transaction
# A batch not stored by then fails (its senders are told the database is
# unavailable) and the connection is dropped; the next batch opens another.
WRITE_TIMEOUT_SECONDS = 10.0


class OrderGone(DatabaseError):
    """The message's order was deleted before it could be stored."""


class MessageWriter:
    """The running loop's (the process's) batching writer: `await store(...)`
    gives back the stored ChatMessage, or raises what prevented storing it."""

    def __init__(self):
        self.pending = []  # [(order_id, user_id, text, future)], oldest first
        self.writing = None  # the task writing batches while any are pending
        self.connection = None  # PostgreSQL: the writer's own, opened on first use
        # Django's description of the database (vendor, parameters, error
        # mapping), made once and never connected. Django keeps a connection
        # object per context, and each batch's task runs in a copy of its
        # first sender's context: asking `django.db.connection` there made a
        # new one per batch, a dozen objects in reference cycles each, which
        # left to the garbage collector paused the worker 20-40 ms at a time
        # at 500 messages/s (README, "Benchmarks").
        self.database = connections.create_connection(DEFAULT_DB_ALIAS)

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
                outcomes = await self.write_batch([item[:3] for item in batch])
            except Exception as error:  # the database is out of reach: every sender is told
                outcomes = [error] * len(batch)
            for (*_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its sender has gone (socket closed); the message is stored
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def write_batch(self, items):
        """Store [(order_id, user_id, text)]: a ChatMessage, or the exception
        that kept it out, for each. One message that cannot be stored (its
        order or user deleted meanwhile) does not keep the others out."""
        insert = self.insert_postgresql if self.database.vendor == "postgresql" else insert_orm
        try:
            return await insert(items)
        except IntegrityError:
            if len(items) == 1:
                raise
        logger.warning("A batch of %d chat messages failed; storing them one by one", len(items))
        outcomes = []
        for item in items:
            try:
                [outcome] = await insert([item])
            except DatabaseError as error:  # raised at commit too: foreign keys are checked there
                outcome = error
            outcomes.append(outcome)
        return outcomes

    async def insert_postgresql(self, items):
        orders, users, texts = (list(column) for column in zip(*items, strict=True))
        db.fail_fast()
        try:
            # psycopg's errors raised as the ORM raises them (django.db.utils).
            with self.database.wrap_database_errors:
                async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                    if self.connection is None or self.connection.closed:
                        self.connection = await psycopg.AsyncConnection.connect(
                            **self.connection_params(), autocommit=True
                        )
                    cursor = await self.connection.execute(_STORE_BATCH, [orders, users, texts], prepare=True)
                    rows = await cursor.fetchall()
        except BaseException as error:
            if not isinstance(error, IntegrityError):
                # Timed out, cancelled or broken: the connection's state is
                # unknown, so the next batch opens a fresh one.
                await self.disconnect()
            db.noticed(error)
            raise
        return numbered(items, rows)

    def connection_params(self):
        """Django's parameters for its PostgreSQL connection (the test
        database under tests), for an async psycopg connection of our own."""
        params = self.database.get_connection_params()
        params.pop("cursor_factory")  # Django's cursor classes are sync ones
        return params

    async def disconnect(self):
        if self.connection is not None:
            connection_, self.connection = self.connection, None
            await connection_.close()

    async def close(self):
        """Let the batches already accepted finish (at server shutdown)."""
        if self.writing is not None:
            await asyncio.gather(self.writing, return_exceptions=True)
        await self.disconnect()


def writer():
    return per_loop.get("chat-writer", MessageWriter, MessageWriter.close)


# The orders' rows are locked and the batch numbered and inserted in one
# statement, one transaction (autocommit).
_STORE_BATCH = "SELECT id, order_id, seq, created FROM main_store_chat_messages(%s::bigint[], %s::bigint[], %s::text[])"


def numbered(items, rows):
    """The stored ChatMessage (or OrderGone) for each of `items`, from the
    (id, order_id, seq, created) rows the batch's insert returned."""
    stored = {(order_id, seq): (pk, created) for pk, order_id, seq, created in rows}
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


# Other databases: the ORM, in a worker thread. Not thread-sensitive: a write
# must not queue behind the reads (joins, history) that share Channels'
# single sync thread; one batch runs at a time.
@db.db_sync_to_async(thread_sensitive=False)
def insert_orm(items):
    with transaction.atomic():
        order_ids = sorted({order_id for order_id, _, _ in items})
        locked = Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk")
        locked = set(locked.values_list("pk", flat=True))
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
