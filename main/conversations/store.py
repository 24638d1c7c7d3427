"""Storing chat messages: the one place that numbers them and keeps each
order's conversation in step with them.

A batch of messages is stored by three statements, each written once here
for every database (STATEMENTS):

- NUMBER numbers the new messages of each order after its latest stored
  `seq`, in arrival order (1, 2, 3... with no gaps), and stores them; a
  message whose (order, sender, client_id) is stored already is skipped;
- ORIGINALS reads back every message of the batch that carries a client_id,
  so a message sent again is answered with the one stored first;
- CONVERSATION derives each order's conversation from the messages it has
  not yet taken into account: waiting since the first customer message with
  no employee reply after it, answered, or resolved until the customer
  writes again.

On PostgreSQL they run inside the function `main_store_chat_messages`
(installed from POSTGRESQL_FUNCTION by migrations), which first locks the
orders' rows in id order, so batches of several processes wait for each
other, never deadlock, and each sees what the one before it stored: one
call, one round trip, per batch. SQLite has one writer at a time and runs
them one after the other in a transaction.

The process's MessageWriter stores what its sockets send in batches (the
messages that arrive while a write is on its way go together in the next
one): one transaction, one commit to wait for, however many chats and
senders a batch holds. On PostgreSQL it calls the function on a connection
of its own from the event loop. `store_messages` and `store_now` store from
sync code (the REST API, the demo data, the tests).
"""

import asyncio
import logging
from dataclasses import dataclass

import psycopg
from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connection, connections, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from main.infra import db, per_loop
from main.infra.batching import Batches
from main.models import ChatMessage, Conversation, Order

from . import events

logger = logging.getLogger(__name__)

MAX_BATCH = 500  # messages per transaction
# A batch not stored by then fails (its senders are told the database is
# unavailable) and the connection is dropped; the next batch opens another.
WRITE_TIMEOUT_SECONDS = 10.0

MESSAGES, ORDERS, CONVERSATIONS = ChatMessage._meta.db_table, Order._meta.db_table, Conversation._meta.db_table

# Each statement reads the batch from {batch}: rows of (n: the arrival
# order, order_id, user_id, text, client_id). {out} is what it answers.
BATCH = "WITH batch(n, order_id, user_id, text, client_id) AS ({batch})"

NUMBER = f"""{BATCH},
fresh AS (
    SELECT b.* FROM batch b
    WHERE b.client_id IS NULL OR NOT EXISTS (
        SELECT 1 FROM {MESSAGES} d
        WHERE d.order_id = b.order_id AND d.user_id = b.user_id AND d.client_id = b.client_id)),
latest(order_id, seq) AS (
    SELECT o.id, (SELECT COALESCE(MAX(m.seq), 0) FROM {MESSAGES} m WHERE m.order_id = o.id)
    FROM {ORDERS} o WHERE o.id IN (SELECT order_id FROM fresh))
INSERT INTO {MESSAGES} (order_id, user_id, text, client_id, seq, created)
SELECT b.order_id, b.user_id, b.text, b.client_id,
       l.seq + ROW_NUMBER() OVER (PARTITION BY b.order_id ORDER BY b.n), {{created}}
FROM fresh b JOIN latest l ON l.order_id = b.order_id
ORDER BY b.n
RETURNING {{out}}"""

ORIGINALS = f"""{BATCH}
SELECT {{out}}
FROM batch b JOIN {MESSAGES} m
  ON m.order_id = b.order_id AND m.user_id = b.user_id AND m.client_id = b.client_id"""

# A message is the customer's when its sender owns the order; anyone else's
# (an employee's, or a deleted user's) answers them. Each figure is read
# by a subquery per order over its messages after its last_seq: a range of
# the (order, seq) index whatever the planner's statistics say, never a
# scan of the chat's history.
AFTER = "m.order_id = s.order_id AND m.seq > s.after"
BY_CUSTOMER = "CASE WHEN m.user_id = s.customer_id THEN 1 ELSE 0 END"
CONVERSATION = f"""{BATCH},
start AS (
    SELECT o.id AS order_id, o.user_id AS customer_id,
           COALESCE((SELECT c.last_seq FROM {CONVERSATIONS} c WHERE c.order_id = o.id), 0) AS after
    FROM {ORDERS} o WHERE o.id IN (SELECT order_id FROM batch)),
summary AS MATERIALIZED (
    SELECT s.order_id, s.customer_id, s.after,
           (SELECT MAX(m.seq) FROM {MESSAGES} m WHERE {AFTER}) AS last_seq,
           (SELECT MAX(m.seq) FROM {MESSAGES} m WHERE {AFTER} AND {BY_CUSTOMER} = 0) AS employee_seq,
           (SELECT MAX(m.created) FROM {MESSAGES} m WHERE {AFTER}) AS at
    FROM start s),
derived AS (
    SELECT s.order_id, s.last_seq, s.employee_seq, s.at,
           (SELECT MIN(m.created) FROM {MESSAGES} m
            WHERE {AFTER} AND m.seq > COALESCE(s.employee_seq, 0) AND {BY_CUSTOMER} = 1) AS unanswered
    FROM summary s WHERE s.last_seq IS NOT NULL)
INSERT INTO {CONVERSATIONS} AS c
    (order_id, status, waiting_since, last_seq, last_employee_seq, last_wait_started, last_replied_at,
     assigned_to_id, updated)
SELECT order_id, CASE WHEN unanswered IS NOT NULL THEN 'waiting' ELSE 'answered' END,
       unanswered, last_seq, employee_seq, NULL, NULL, NULL, at
FROM derived WHERE TRUE
ON CONFLICT (order_id) DO UPDATE SET
    status = CASE
        WHEN excluded.waiting_since IS NOT NULL THEN 'waiting'
        WHEN excluded.last_employee_seq IS NOT NULL AND c.status <> 'resolved' THEN 'answered'
        ELSE c.status END,
    waiting_since = CASE
        WHEN excluded.waiting_since IS NULL THEN CASE WHEN excluded.last_employee_seq IS NULL THEN c.waiting_since END
        WHEN excluded.last_employee_seq IS NULL AND c.status = 'waiting' THEN c.waiting_since
        ELSE excluded.waiting_since END,
    last_wait_started = CASE
        WHEN excluded.last_employee_seq IS NOT NULL AND c.status = 'waiting' THEN c.waiting_since
        ELSE c.last_wait_started END,
    last_replied_at = CASE
        WHEN excluded.last_employee_seq IS NOT NULL AND c.status = 'waiting' THEN excluded.updated
        ELSE c.last_replied_at END,
    last_seq = excluded.last_seq,
    last_employee_seq = COALESCE(excluded.last_employee_seq, c.last_employee_seq),
    updated = excluded.updated
RETURNING {{out}}"""

# What each statement answers on other databases than PostgreSQL.
NUMBERED = "id, order_id, seq"
ORIGINAL = "b.n, m.id, m.order_id, m.seq, m.created, m.text"
CONVERSED = "order_id, status, waiting_since, assigned_to_id"

FUNCTION = "main_store_chat_messages"
# The function answers every statement's rows as one table, `kind` telling them apart.
COLUMNS = ("kind", "n", "id", "order_id", "seq", "created", "text", "status", "waiting_since", "assigned_to")
TYPES = ("text", "bigint", "bigint", "bigint", "bigint", "timestamptz", "text", "text", "timestamptz", "bigint")
UNNEST = (
    "SELECT n, order_id, user_id, text, client_id FROM unnest(order_ids, user_ids, texts, client_ids)"
    " WITH ORDINALITY AS u(order_id, user_id, text, client_id, n)"
)


def in_function(statement, kind, **values):
    """`statement` as the function runs it: its batch from the arrays, its
    answer as rows of the function's table (`values` by column, NULL for the
    others)."""
    values["kind"] = f"'{kind}'"
    out = ", ".join(f"{values.get(column, 'NULL')}::{type_}" for column, type_ in zip(COLUMNS, TYPES, strict=True))
    return statement.format(batch=UNNEST, created="now()", out=out)


def _columns(table, *names):
    return {name: f"{table}.{name}" for name in names}


_STATEMENTS = (
    in_function(NUMBER, "numbered", **_columns(MESSAGES, "id", "order_id", "seq", "created")),
    in_function(ORIGINALS, "original", n="b.n", **_columns("m", "id", "order_id", "seq", "created", "text")),
    in_function(
        CONVERSATION,
        "conversation",
        assigned_to="c.assigned_to_id",
        **_columns("c", "order_id", "status", "waiting_since"),
    ),
)
# The statements keep one shape whatever the batch, and read by index: one
# plan each, made once per connection (PostgreSQL would otherwise plan them
# again for every call), and no JIT (their estimates pass jit_above_cost,
# and compiling them would cost each batch far more than running them).
FUNCTION_SETTINGS = {"plan_cache_mode": "force_generic_plan", "jit": "off"}
POSTGRESQL_FUNCTION = f"""CREATE OR REPLACE FUNCTION {FUNCTION}(
    order_ids bigint[], user_ids bigint[], texts text[], client_ids text[])
RETURNS TABLE ({", ".join(f"{c} {t}" for c, t in zip(COLUMNS, TYPES, strict=True))})
LANGUAGE plpgsql
{"".join(f"SET {name} = {value}{chr(10)}" for name, value in FUNCTION_SETTINGS.items())}AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM {ORDERS} o WHERE o.id = ANY(order_ids) ORDER BY o.id FOR UPDATE;
{"".join(f"    RETURN QUERY {statement};{chr(10)}" for statement in _STATEMENTS)}END
$$"""
CALL = f"SELECT * FROM {FUNCTION}(%s::bigint[], %s::bigint[], %s::text[], %s::text[])"


def install(schema_editor):
    """Install the function (migrations call this whenever it changes)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}(bigint[], bigint[], text[])")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}(bigint[], bigint[], text[], text[])")
        schema_editor.execute(POSTGRESQL_FUNCTION)


def values(count):
    """{batch} for `count` messages given as parameters (order id, user id,
    text and client id for each)."""
    cast = "CAST(%s AS BIGINT), CAST(%s AS BIGINT), CAST(%s AS TEXT), CAST(%s AS TEXT)"
    return "VALUES " + ", ".join(f"({n}, {cast})" for n in range(1, count + 1))


class OrderGone(DatabaseError):
    """The message's order was deleted before it could be stored."""


@dataclass(frozen=True)
class Stored:
    """A message as stored, whether this send stored it (`fresh`; False: it
    was stored before under the same client_id), and its conversation as it
    stands after the batch ({status, waiting_since, assigned_to_id})."""

    message: ChatMessage
    fresh: bool
    conversation: dict | None = None


def outcomes(items, numbered, originals, conversations):
    """A Stored (or OrderGone) for each of `items` ((order_id, user_id, text,
    client_id)), from the rows the statements answered: `numbered` (id,
    order_id, seq, created) for the messages stored now, `originals` {n:
    (id, order_id, seq, created, text)} for those with a client_id, and
    `conversations` {order_id: state}. An order's new rows, in seq order,
    are its new items in arrival order."""
    new_ids = {row[0] for row in numbered}
    rows_by_order = {}
    for row in sorted(numbered, key=lambda row: row[2]):
        rows_by_order.setdefault(row[1], []).append(row)
    first_with = {}  # (order, user, client_id) -> its Stored, for a second one in the same batch
    answers = []
    for n, (order_id, user_id, text, client_id) in enumerate(items, start=1):
        key = (order_id, user_id, client_id)
        conversation = conversations.get(order_id)
        if client_id is not None and key in first_with:
            answers.append(Stored(first_with[key].message, False, conversation))
            continue
        original = originals.get(n)
        if original is not None and original[0] not in new_ids:  # sent before: its first answer
            pk, _, seq, created, stored_text = original
            message = ChatMessage(
                pk=pk,
                order_id=order_id,
                user_id=user_id,
                text=stored_text,
                client_id=client_id,
                seq=seq,
                created=created,
            )
            answer = Stored(message, False, conversation)
        elif rows_by_order.get(order_id):
            pk, _, seq, created = rows_by_order[order_id].pop(0)
            message = ChatMessage(
                pk=pk, order_id=order_id, user_id=user_id, text=text, client_id=client_id, seq=seq, created=created
            )
            answer = Stored(message, True, conversation)
        else:
            answers.append(OrderGone(f"Order {order_id} no longer exists."))
            continue
        if client_id is not None:
            first_with[key] = answer
        answers.append(answer)
    return answers


def unique(items):
    """`items` with a second message of the same (order, sender, client_id)
    left out: the batch's statements see each one once."""
    seen, kept = set(), []
    for item in items:
        key = item[:2] + item[3:]
        if item[3] is None or key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def function_rows(rows):
    """The function's rows taken apart by kind: (numbered, originals,
    conversations) as outcomes() takes them, positions within the batch sent."""
    numbered, originals, conversations = [], {}, {}
    for kind, n, pk, order_id, seq, created, text, status, waiting_since, assigned_to in rows:
        if kind == "numbered":
            numbered.append((pk, order_id, seq, created))
        elif kind == "original":
            originals[n] = (pk, order_id, seq, created, text)
        else:
            conversations[order_id] = {"status": status, "waiting_since": waiting_since, "assigned_to_id": assigned_to}
    return numbered, originals, conversations


def _positions(items, kept):
    """For each of `kept`'s positions (1...), the position of that item in `items`."""
    positions, start = [], 0
    for item in kept:
        start = items.index(item, start) + 1
        positions.append(start)
    return positions


def columns(items):
    """The batch as the function's four arrays."""
    return [list(column) for column in zip(*items, strict=True)]


def _as_datetime(value):
    """A datetime SQLite answered as text, as the ORM would read it."""
    if isinstance(value, str):
        value = parse_datetime(value)
        if timezone.is_naive(value):
            value = timezone.make_aware(value, timezone.UTC)
    return value


def store_messages(items):
    """Store [(order_id, user_id, text, client_id)] through Django's
    connection, in one transaction: a Stored or OrderGone for each. Raises
    if any cannot be stored (a user deleted meanwhile)."""
    items = [tuple(item) + (None,) * (4 - len(item)) for item in items]
    kept = unique(items)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(CALL, columns(kept))
            return outcomes(items, *_remap(items, kept, function_rows(cursor.fetchall())))
        created = timezone.now()
        params = [value for item in kept for value in item]
        batch = values(len(kept))
        cursor.execute(
            NUMBER.format(batch=batch, created="%s", out=NUMBERED),
            [*params, connection.ops.adapt_datetimefield_value(created)],
        )
        numbered = [(*row, created) for row in cursor.fetchall()]
        originals = {}
        if any(item[3] is not None for item in kept):
            cursor.execute(ORIGINALS.format(batch=batch, out=ORIGINAL), params)
            originals = {n: (pk, o, seq, _as_datetime(at), text) for n, pk, o, seq, at, text in cursor.fetchall()}
        cursor.execute(CONVERSATION.format(batch=batch, out=CONVERSED), params)
        conversations = {
            o: {"status": status, "waiting_since": _as_datetime(since), "assigned_to_id": assigned}
            for o, status, since, assigned in cursor.fetchall()
        }
    return outcomes(items, *_remap(items, kept, (numbered, originals, conversations)))


def _remap(items, kept, rows):
    """The statements' rows for `kept` (positions within it) as rows for
    `items` (positions within all the batch's items)."""
    numbered, originals, conversations = rows
    positions = _positions(items, kept)
    return numbered, {positions[n - 1]: row for n, row in originals.items()}, conversations


def store_now(order_id, user_id, text, client_id=None):
    """Store one message from sync code; the stored ChatMessage."""
    [outcome] = store_messages([(order_id, user_id, text, client_id)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome.message


class MessageWriter:
    """The running loop's (the process's) batching writer: `await store(...)`
    gives back the Stored message, or raises what prevented storing it."""

    def __init__(self):
        self.batches = Batches(self.write_batch, max_batch=MAX_BATCH)
        self.telling = set()  # tasks telling the inboxes what a batch changed
        self.connection = None  # PostgreSQL: the writer's own, opened on first use
        # Django's description of the database (vendor, parameters, error
        # mapping), made once and never connected: asked for in each batch's
        # task, `django.db.connection` would be a new object per context,
        # garbage in reference cycles whose collection stalls the loop.
        self.database = connections.create_connection(DEFAULT_DB_ALIAS)

    async def store(self, order_id, user_id, text, client_id=None):
        return await self.batches((order_id, user_id, text, client_id))

    async def write_batch(self, items):
        """Store [(order_id, user_id, text, client_id)]: a Stored, or the
        exception that kept it out, for each. One message that cannot be
        stored (its order or user deleted meanwhile) does not keep the
        others out."""
        items = [tuple(item) + (None,) * (4 - len(item)) for item in items]
        answers = await self.insert_all(items)
        changed = {answer.message.order_id for answer in answers if isinstance(answer, Stored) and answer.fresh}
        if changed:  # told without keeping the senders waiting
            self.telling.add(task := asyncio.ensure_future(events.conversations_changed(changed)))
            task.add_done_callback(self.told)
        return answers

    async def insert_all(self, items):
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

    def told(self, task):
        self.telling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("The inboxes were not told of a batch of messages (%s)", task.exception())

    async def insert_own_connection(self, items):
        kept = unique(items)
        db.fail_fast()
        try:
            # psycopg's errors raised as the ORM raises them (django.db.utils).
            with self.database.wrap_database_errors:
                async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                    if self.connection is None or self.connection.closed:
                        self.connection = await psycopg.AsyncConnection.connect(**db.psycopg_params(), autocommit=True)
                    cursor = await self.connection.execute(CALL, columns(kept), prepare=True)
                    rows = await cursor.fetchall()
        except BaseException as error:
            if not isinstance(error, IntegrityError):
                # Timed out, cancelled or broken: the connection's state is
                # unknown, so the next batch opens a fresh one.
                await self.disconnect()
            db.noticed(error)
            raise
        return outcomes(items, *_remap(items, kept, function_rows(rows)))

    async def disconnect(self):
        if self.connection is not None:
            connection_, self.connection = self.connection, None
            await connection_.close()

    async def close(self):
        """Let the batches already accepted finish (at server shutdown)."""
        await self.batches.idle()
        await asyncio.gather(*self.telling, return_exceptions=True)
        await self.disconnect()


# Other databases than PostgreSQL: Django's connection, in a worker thread.
# Not thread-sensitive: a write must not queue behind the reads (joins,
# history) that share Channels' single sync thread.
insert_through_django = db.db_sync_to_async(store_messages, thread_sensitive=False)


def writer():
    return per_loop.get("chat-writer", MessageWriter, MessageWriter.close)
