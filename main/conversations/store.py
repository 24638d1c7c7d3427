"""Storing chat messages: the one place that numbers them.

Each order's messages are numbered 1, 2, 3... (`seq`) with no gaps, in the
order they were stored: a batch takes, per order, the latest stored seq and
numbers its messages after it in arrival order. NUMBER is that statement,
written once for every database: on PostgreSQL it runs inside the function
`main_store_chat_messages` (installed by migrations from POSTGRESQL_FUNCTION,
which first locks the orders' rows in id order, so batches of several
processes wait for each other, never deadlock, and each sees what the one
before it stored), one call per batch; SQLite has one writer at a time and
runs it as it is.

The process's MessageWriter stores what its sockets send in batches (the
messages that arrive while a write is on its way go together in the next
one): one transaction, one commit to wait for, however many chats and
senders a batch holds. On PostgreSQL it calls the function on a connection
of its own from the event loop. `store_messages` and `store_now` store from
sync code (the demo data, the tests).
"""

import asyncio
import logging

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connection, connections, transaction
from django.utils import timezone

from main.infra import db, per_loop
from main.infra.batching import Batches
from main.models import ChatMessage, Order

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # messages per transaction
# A batch not stored by then fails (its senders are told the database is
# unavailable) and the connection is dropped; the next batch opens another.
WRITE_TIMEOUT_SECONDS = 10.0

MESSAGES, ORDERS = ChatMessage._meta.db_table, Order._meta.db_table

# Numbers and stores a batch whose rows (n: arrival order, order_id,
# user_id, text) come from {batch}, created at {created}.
NUMBER = f"""WITH batch(n, order_id, user_id, text) AS ({{batch}}),
latest(order_id, seq) AS (
    SELECT o.id, (SELECT COALESCE(MAX(m.seq), 0) FROM {MESSAGES} m WHERE m.order_id = o.id)
    FROM {ORDERS} o WHERE o.id IN (SELECT order_id FROM batch))
INSERT INTO {MESSAGES} (order_id, user_id, text, seq, created)
SELECT b.order_id, b.user_id, b.text, l.seq + ROW_NUMBER() OVER (PARTITION BY b.order_id ORDER BY b.n), {{created}}
FROM batch b JOIN latest l ON l.order_id = b.order_id
ORDER BY b.n
RETURNING {MESSAGES}.id, {MESSAGES}.order_id, {MESSAGES}.seq, {MESSAGES}.created"""

FUNCTION = "main_store_chat_messages"
# The orders' rows are locked, then the batch numbered and stored; the
# function is VOLATILE, so each statement in it sees what was committed
# before the lock was granted.
POSTGRESQL_FUNCTION = f"""CREATE OR REPLACE FUNCTION {FUNCTION}(order_ids bigint[], user_ids bigint[], texts text[])
RETURNS TABLE (id bigint, order_id bigint, seq bigint, created timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM {ORDERS} o WHERE o.id = ANY(order_ids) ORDER BY o.id FOR UPDATE;
    RETURN QUERY {
    NUMBER.format(
        batch="SELECT n, order_id, user_id, text FROM unnest(order_ids, user_ids, texts)"
        " WITH ORDINALITY AS u(order_id, user_id, text, n)",
        created="now()",
    )
};
END
$$"""
CALL = f"SELECT id, order_id, seq, created FROM {FUNCTION}(%s::bigint[], %s::bigint[], %s::text[])"


def values_sql(count):
    """NUMBER for `count` messages given as parameters (order id, user id and
    text for each, then the time they were created), for other databases."""
    rows = ", ".join(f"({n}, CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS TEXT))" for n in range(1, count + 1))
    return NUMBER.format(batch=f"VALUES {rows}", created="%s")


class OrderGone(DatabaseError):
    """The message's order was deleted before it could be stored."""


def outcomes(items, rows):
    """The stored ChatMessage (or OrderGone) for each of `items`, from the
    (id, order_id, seq, created) rows their batch returned: an order's rows,
    in seq order, are its items in arrival order."""
    rows_by_order = {}
    for row in sorted(rows, key=lambda row: row[2]):
        rows_by_order.setdefault(row[1], []).append(row)
    answers = []
    for order_id, user_id, text in items:
        if not rows_by_order.get(order_id):
            answers.append(OrderGone(f"Order {order_id} no longer exists."))
            continue
        pk, _, seq, created = rows_by_order[order_id].pop(0)
        answers.append(ChatMessage(pk=pk, order_id=order_id, user_id=user_id, text=text, seq=seq, created=created))
    return answers


def columns(items):
    """The batch as the function's three arrays."""
    return [list(column) for column in zip(*items, strict=True)]


def store_messages(items):
    """Store [(order_id, user_id, text)] through Django's connection, in one
    transaction: a ChatMessage or OrderGone for each. Raises if any cannot be
    stored (a user deleted meanwhile)."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(CALL, columns(items))
            return outcomes(items, cursor.fetchall())
        created = timezone.now()
        params = [value for item in items for value in item]
        cursor.execute(values_sql(len(items)), [*params, connection.ops.adapt_datetimefield_value(created)])
        # SQLite returns the time as text: the value it was given stands in.
        return outcomes(items, [(*row[:3], created) for row in cursor.fetchall()])


def store_now(order_id, user_id, text):
    """Store one message from sync code; the stored ChatMessage."""
    [outcome] = store_messages([(order_id, user_id, text)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


class MessageWriter:
    """The running loop's (the process's) batching writer: `await store(...)`
    gives back the stored ChatMessage, or raises what prevented storing it."""

    def __init__(self):
        self.batches = Batches(self.write_batch, max_batch=MAX_BATCH)
        self.connection = None  # PostgreSQL: the writer's own, opened on first use
        # Django's description of the database (vendor, parameters, error
        # mapping), made once and never connected: asked for in each batch's
        # task, `django.db.connection` would be a new object per context,
        # garbage in reference cycles whose collection stalls the loop.
        self.database = connections.create_connection(DEFAULT_DB_ALIAS)

    async def store(self, order_id, user_id, text):
        return await self.batches((order_id, user_id, text))

    async def write_batch(self, items):
        """Store [(order_id, user_id, text)]: a ChatMessage, or the exception
        that kept it out, for each. One message that cannot be stored (its
        order or user deleted meanwhile) does not keep the others out."""
        insert = self.insert_own_connection if self.database.vendor == "postgresql" else insert_through_django
        try:
            return await insert(items)
        except IntegrityError:
            if len(items) == 1:
                raise
        logger.warning("A batch of %d chat messages failed; storing them one by one", len(items))
        answers = []
        for item in items:
            try:
                [answer] = await insert([item])
            except DatabaseError as error:  # raised at commit too: foreign keys are checked there
                answer = error
            answers.append(answer)
        return answers

    async def insert_own_connection(self, items):
        db.fail_fast()
        try:
            # psycopg's errors raised as the ORM raises them (django.db.utils).
            with self.database.wrap_database_errors:
                async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                    if self.connection is None or self.connection.closed:
                        self.connection = await psycopg.AsyncConnection.connect(
                            **self.connection_params(), autocommit=True
                        )
                    cursor = await self.connection.execute(CALL, columns(items), prepare=True)
                    rows = await cursor.fetchall()
        except BaseException as error:
            if not isinstance(error, IntegrityError):
                # Timed out, cancelled or broken: the connection's state is
                # unknown, so the next batch opens a fresh one.
                await self.disconnect()
            db.noticed(error)
            raise
        return outcomes(items, rows)

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
        await self.batches.idle()
        await self.disconnect()


# Other databases than PostgreSQL: Django's connection, in a worker thread.
# Not thread-sensitive: a write must not queue behind the reads (joins,
# history) that share Channels' single sync thread.
insert_through_django = db.db_sync_to_async(store_messages, thread_sensitive=False)


def writer():
    return per_loop.get("chat-writer", MessageWriter, MessageWriter.close)
