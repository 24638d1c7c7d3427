"""main.infra.dispatch.dispatch_all: the consumers' messages from the client and
from the channel layer, handled one at a time, none after the consumer ends."""

import asyncio
import contextlib
import gc
import weakref

import pytest
from channels.exceptions import StopConsumer

from main.infra.dispatch import dispatch_all


class Source:
    """A message source (as the client's receive, or the channel layer's),
    counting how often it was asked for a message."""

    def __init__(self):
        self.queue = asyncio.Queue()
        self.asked = 0

    async def __call__(self):
        self.asked += 1
        return await self.queue.get()


async def test_messages_from_both_sources_are_handled_one_at_a_time_in_order():
    client, layer = Source(), Source()
    handled, running = [], []

    async def dispatch(message):
        running.append(message)
        assert len(running) == 1, f"{running} handled at once"
        await asyncio.sleep(0.001)  # a handler that awaits: another message could slip in here
        handled.append(message)
        running.remove(message)
        if len(handled) == 20:
            raise StopConsumer()

    for n in range(10):
        client.queue.put_nowait(f"client {n}")
        layer.queue.put_nowait(f"layer {n}")
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(dispatch_all([client, layer], dispatch), 5)
    assert [m for m in handled if m.startswith("client")] == [f"client {n}" for n in range(10)]
    assert [m for m in handled if m.startswith("layer")] == [f"layer {n}" for n in range(10)]


async def test_nothing_is_handled_after_a_handler_ends_the_consumer():
    client, layer = Source(), Source()
    handled = []
    layer_waiting = asyncio.Event()

    async def dispatch(message):
        handled.append(message)
        if message == "disconnect":
            layer.queue.put_nowait("a chat message")  # ready while the consumer ends
            await asyncio.sleep(0.01)
            raise StopConsumer()

    async def pending_layer():
        layer_waiting.set()
        return await Source.__call__(layer)

    client.queue.put_nowait("disconnect")
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(dispatch_all([client, pending_layer], dispatch), 5)
    assert handled == ["disconnect"]
    assert layer_waiting.is_set()


async def test_a_source_is_read_again_only_once_its_message_is_handled():
    """A busy consumer holds its client back (the server stops reading the
    socket), rather than its frames piling up in memory."""
    client, layer = Source(), Source()
    release = asyncio.Event()

    async def dispatch(message):
        if message == "slow":
            await release.wait()
        if message == "stop":
            raise StopConsumer()

    for message in ("slow", "next", "stop"):
        client.queue.put_nowait(message)
    consumer = asyncio.ensure_future(dispatch_all([client, layer], dispatch))
    await asyncio.sleep(0.05)
    assert client.asked == 1  # "next" waits in the source, not with the consumer
    release.set()
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(consumer, 5)
    assert client.asked == 3


async def test_an_error_in_a_source_ends_the_consumer_with_it():
    client = Source()

    async def broken():
        raise ConnectionError("the channel layer is gone")

    async def dispatch(message):
        pass

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(dispatch_all([client, broken], dispatch), 5)


async def test_a_failing_source_ends_the_consumer_after_the_dispatch_under_way():
    """A message being handled (stored, then sent on) is not cut off halfway
    because the other source failed meanwhile."""
    client = Source()
    broken = asyncio.Event()
    handled = []

    async def breaking():
        await broken.wait()
        raise ConnectionError("the channel layer is gone")

    async def dispatch(message):
        broken.set()  # the other source fails while this message is handled
        await asyncio.sleep(0.05)
        handled.append(message)

    client.queue.put_nowait("a message")
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(dispatch_all([client, breaking], dispatch), 5)
    assert handled == ["a message"]


async def test_no_task_outlives_the_consumer():
    client, layer = Source(), Source()

    async def dispatch(message):
        raise StopConsumer()

    client.queue.put_nowait("disconnect")
    with pytest.raises(StopConsumer):
        await asyncio.wait_for(dispatch_all([client, layer], dispatch), 5)
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_a_consumer_that_ends_is_freed_without_the_garbage_collector():
    # As a consumer's consume() ends it: StopConsumer suppressed. Nothing
    # of it may be left in a cycle (the error's traceback holds the frames).
    class Consumer:
        async def dispatch(self, message):
            raise StopConsumer()

    client, layer = Source(), Source()
    consumer = Consumer()
    freed = weakref.ref(consumer)
    client.queue.put_nowait("disconnect")
    gc.collect()
    gc.disable()
    try:
        with contextlib.suppress(StopConsumer):
            async with asyncio.timeout(5):  # no task of its own, as wait_for's would be
                await dispatch_all([client, layer], consumer.dispatch)
        del consumer
        for _ in range(10):  # the loop's callbacks of the ended tasks run first
            if freed() is None:
                break
            await asyncio.sleep(0)
        assert freed() is None
    finally:
        gc.enable()
