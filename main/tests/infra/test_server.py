"""main.infra.server.Received: what a WebSocket's client sent, in order, to
the one reader that waits for it."""

import asyncio

from main.infra.server import Received

TIMEOUT = 2


async def test_messages_come_out_in_the_order_they_were_put():
    received = Received(asyncio.get_running_loop())
    for n in range(3):
        received.put_nowait({"n": n})
    assert received.qsize() == 3 and not received.empty()
    assert [(await received.get())["n"] for _ in range(3)] == [0, 1, 2]
    assert received.empty()


async def test_a_waiting_reader_is_woken_by_the_next_message():
    received = Received(asyncio.get_running_loop())
    reader = asyncio.ensure_future(received.get())
    await asyncio.sleep(0)  # the reader waits
    assert not reader.done()
    received.put_nowait({"type": "websocket.receive", "text": "hi"})
    assert await asyncio.wait_for(reader, TIMEOUT) == {"type": "websocket.receive", "text": "hi"}


async def test_a_reader_cancelled_while_waiting_loses_nothing():
    received = Received(asyncio.get_running_loop())
    reader = asyncio.ensure_future(received.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    received.put_nowait({"n": 1})  # put after the cancel: kept for the next reader
    assert await asyncio.wait_for(received.get(), TIMEOUT) == {"n": 1}


async def test_the_reader_is_idle_only_while_it_waits_with_nothing_left_to_take():
    received = Received(asyncio.get_running_loop())
    assert not received.idle()  # nobody reads yet
    reader = asyncio.ensure_future(received.get())
    await asyncio.sleep(0)
    assert received.idle()
    received.put_nowait({"n": 1})
    assert not received.idle()  # woken, and not yet back for more
    await asyncio.wait_for(reader, TIMEOUT)
    assert not received.idle()  # handling what it took
