"""main.infra.batching.Batches: calls made while a batch is on its way go out together
in the next one, in order, each caller getting its own answer."""

import asyncio

import pytest

from main.infra.batching import Batches


class Sender:
    """A send that records its batches and answers each item doubled; it
    waits on `gate` so that the test decides when a batch comes back."""

    def __init__(self):
        self.batches = []
        self.gate = asyncio.Event()

    async def __call__(self, items):
        self.batches.append(list(items))
        await self.gate.wait()
        self.gate.clear()
        if "fail" in items:
            raise ConnectionError("batch failed")
        return [2 * item for item in items]


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_calls_during_a_batch_go_in_the_next_one_in_order():
    send = Sender()
    batches = Batches(send)
    first = asyncio.ensure_future(batches(1))
    await settle()
    rest = [asyncio.ensure_future(batches(n)) for n in (2, 3, 4)]
    await settle()
    assert send.batches == [[1]]  # 2, 3 and 4 wait for the first batch's answer
    send.gate.set()
    assert await first == 2
    await settle()
    assert send.batches == [[1], [2, 3, 4]]
    send.gate.set()
    assert await asyncio.gather(*rest) == [4, 6, 8]
    assert batches.sending is None or batches.sending.done()


async def test_a_failed_batch_fails_its_callers_only():
    send = Sender()
    batches = Batches(send)
    failing = [asyncio.ensure_future(batches(item)) for item in (1, "fail")]
    await settle()
    later = asyncio.ensure_future(batches(5))
    send.gate.set()
    for call in failing:
        with pytest.raises(ConnectionError):
            await call
    await settle()
    send.gate.set()
    assert await later == 10


async def test_a_cancelled_caller_does_not_stop_the_others():
    send = Sender()
    batches = Batches(send)
    calls = [asyncio.ensure_future(batches(n)) for n in (1, 2, 3)]
    await settle()
    calls[1].cancel()
    send.gate.set()
    assert await calls[0] == 2 and await calls[2] == 6
    with pytest.raises(asyncio.CancelledError):
        await calls[1]
    assert send.batches == [[1, 2, 3]]  # what was asked still went out


async def test_a_batch_gathers_the_callers_of_its_moment():
    send = Sender()
    send.gate.set()  # answers the first batch at once
    batches = Batches(send, gather_seconds=0.05)
    first = asyncio.ensure_future(batches(1))
    await asyncio.sleep(0.01)  # within the first batch's gathering
    second = asyncio.ensure_future(batches(2))
    assert await asyncio.wait_for(asyncio.gather(first, second), 2) == [2, 4]
    assert send.batches == [[1, 2]]


async def test_put_items_go_out_unawaited_and_a_failure_is_reported_once_per_batch():
    send = Sender()
    failures = []
    batches = Batches(send, on_error=lambda error, count: failures.append((str(error), count)))
    first_sent = batches.put(1)
    await settle()
    second_sent = batches.put(2)
    assert batches.put("fail") is second_sent  # one future per batch
    awaited = asyncio.ensure_future(batches(3))
    await settle()
    assert not first_sent.done()
    send.gate.set()  # the first batch: [1]
    await settle()
    assert first_sent.done() and not second_sent.done()
    assert send.batches == [[1], [2, "fail", 3]]
    send.gate.set()
    with pytest.raises(ConnectionError):
        await awaited  # its caller hears of the failure itself...
    assert failures == [("batch failed", 2)]  # ...and the two put() items are reported once
    assert await second_sent is None  # gone, if not stored
    batches.put(4)
    await settle()
    send.gate.set()
    await settle()
    assert send.batches[-1] == [4] and failures == [("batch failed", 2)]
