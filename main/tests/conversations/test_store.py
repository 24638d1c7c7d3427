"""Storing and numbering chat messages (main/conversations/store.py) against the real PostgreSQL."""

import asyncio
import gc
import threading

import pytest
from django.db import IntegrityError, connection
from django.db.backends.base.base import BaseDatabaseWrapper

from main import factories, models
from main.conversations import store as chat_store
from main.conversations.store import store_now

pytestmark = pytest.mark.django_db(transaction=True)


def transactions_of(order):
    """The transactions (PostgreSQL's xmin) that inserted an order's messages."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT xmin::text FROM main_chatmessage WHERE order_id = %s", [order.pk])
        return {row[0] for row in cursor.fetchall()}


def seqs_in_id_order(order):
    return list(models.ChatMessage.objects.filter(order=order).order_by("id").values_list("seq", "text"))


def test_messages_sent_together_share_a_transaction_and_keep_their_order():
    customer = factories.UserFactory()
    orders = factories.OrderFactory.create_batch(3, user=customer)

    async def burst():
        writer = chat_store.MessageWriter()
        stored = await asyncio.gather(*(writer.store(orders[n % 3].pk, customer.pk, f"message {n}") for n in range(60)))
        await writer.close()
        return stored

    stored = asyncio.run(burst())
    assert [s.message.text for s in stored] == [f"message {n}" for n in range(60)]
    for i, order in enumerate(orders):
        texts = [f"message {n}" for n in range(i, 60, 3)]
        assert seqs_in_id_order(order) == list(zip(range(1, 21), texts, strict=True))
    # Sent in the same moment: one transaction for all 60.
    assert len(transactions_of(orders[0]) | transactions_of(orders[1]) | transactions_of(orders[2])) == 1


def together(*functions):
    """Run each function in a thread of its own (its own database
    connection), all released at once; the exceptions they raised."""
    start = threading.Barrier(len(functions))
    failures = []

    def run(function):
        try:
            start.wait(timeout=10)
            function()
        except Exception as error:  # reported by the caller, from the test's thread
            failures.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(function,)) for function in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return failures


def test_writers_of_several_processes_and_single_saves_never_share_a_seq():
    """Batches from several loops (as in several server processes, each with
    its own connection) and single messages stored from sync code, on the
    same orders at once."""
    customer = factories.UserFactory()
    orders = factories.OrderFactory.create_batch(2, user=customer)

    def process(n):
        async def send():
            writer = chat_store.MessageWriter()
            for round_ in range(5):
                await asyncio.gather(
                    *(writer.store(orders[i % 2].pk, customer.pk, f"{n}.{round_}.{i}") for i in range(6))
                )
            await writer.close()

        return lambda: asyncio.run(send())

    def saves():
        for i in range(10):
            chat_store.store_now(orders[i % 2].pk, customer.pk, f"save {i}")

    assert together(process(0), process(1), process(2), saves) == []
    for order in orders:
        assert [seq for seq, _ in seqs_in_id_order(order)] == list(range(1, 51))


def test_seq_numbers_have_no_gaps_and_follow_commit_order_under_concurrent_senders():
    """Senders on different connections (as on different server processes)
    storing at once: each order's messages are numbered 1..n, in id order."""
    customer = factories.UserFactory()
    orders = factories.OrderFactory.create_batch(2, user=customer)

    def sender(n):
        return lambda: [store_now(orders[(n + i) % 2].pk, customer.pk, f"{n}.{i}") for i in range(5)]

    assert together(*(sender(n) for n in range(8))) == []
    for order in orders:
        rows = list(models.ChatMessage.objects.filter(order=order).order_by("id").values_list("seq", flat=True))
        assert rows == list(range(1, 21))


def test_a_message_that_cannot_be_stored_does_not_keep_the_others_out():
    customer = factories.UserFactory()
    order, gone = factories.OrderFactory.create_batch(2, user=customer)
    gone_id = gone.pk
    gone.delete()
    items = [
        (order.pk, customer.pk, "first"),
        (order.pk, 2**40, "from a user deleted meanwhile"),
        (gone_id, customer.pk, "to an order deleted meanwhile"),
        (order.pk, customer.pk, "last"),
    ]

    async def write():
        writer = chat_store.MessageWriter()
        try:
            return await writer.write_batch(items)
        finally:
            await writer.close()

    outcomes = asyncio.run(write())
    assert isinstance(outcomes[1], IntegrityError)
    assert isinstance(outcomes[2], chat_store.OrderGone)
    assert [(s.message.seq, s.message.text) for s in (outcomes[0], outcomes[3])] == [(1, "first"), (2, "last")]
    assert seqs_in_id_order(order) == [(1, "first"), (2, "last")]


def test_a_sender_told_of_a_failure_is_not_told_it_was_stored():
    customer = factories.UserFactory()
    order = factories.OrderFactory(user=customer)

    async def send():
        writer = chat_store.MessageWriter()
        results = await asyncio.gather(
            writer.store(order.pk, customer.pk, "fine"),
            writer.store(order.pk + 1000, customer.pk, "no such order"),
            return_exceptions=True,
        )
        await writer.close()
        return results

    fine, refused = asyncio.run(send())
    assert fine.message.seq == 1 and fine.message.pk is not None and fine.fresh
    assert isinstance(refused, chat_store.OrderGone)


def test_a_batch_makes_no_django_connection_object_of_its_own():
    """Django keeps a connection object per context, and each batch's task
    starts in a copy of its sender's context: the writer must not ask for
    `django.db.connection` there, or every batch makes one (a reference cycle
    left to the garbage collector, whose pauses then stall the chat)."""
    customer = factories.UserFactory()
    order = factories.OrderFactory(user=customer)

    def connection_objects():
        return sum(isinstance(o, BaseDatabaseWrapper) for o in gc.get_objects())

    async def one_at_a_time(writer, count):
        for n in range(count):  # each finds the writer idle: a new batch task each time
            await writer.store(order.pk, customer.pk, f"message {n}")

    async def run():
        writer = chat_store.MessageWriter()
        await one_at_a_time(writer, 1)  # the writer's own connection is open
        gc.collect()
        gc.disable()  # what a batch leaves behind stays countable
        try:
            before = connection_objects()
            await one_at_a_time(writer, 20)
            made = connection_objects() - before
        finally:
            gc.enable()
            await writer.close()
        return made

    assert asyncio.run(run()) == 0
    assert models.ChatMessage.objects.filter(order=order).count() == 21


def test_after_a_refused_batch_the_writer_s_connection_serves_the_next_one():
    """A batch refused by a constraint ends its transaction, and the writer
    goes on with the same connection (not a failed transaction, not a new
    connection)."""
    customer = factories.UserFactory()
    order = factories.OrderFactory(user=customer)

    async def write():
        writer = chat_store.MessageWriter()
        try:
            await writer.store(order.pk, customer.pk, "first")
            connection_before = writer.connection
            with pytest.raises(IntegrityError):  # NOT NULL: refused by the insert itself, not at commit
                await writer.write_batch([(order.pk, customer.pk, None)])
            after = await writer.store(order.pk, customer.pk, "after")
            return after, writer.connection is connection_before
        finally:
            await writer.close()

    after, same_connection = asyncio.run(write())
    assert after.message.seq == 2 and same_connection
