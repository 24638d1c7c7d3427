"""main.infra.server: Received, what a WebSocket's client sent, in order,
to the one reader that waits for it; Rechecks, the keep-alive checks a
worker runs once a second; Deadline, a connection's timer."""

import asyncio
import gc
import weakref

from main.infra.server import TIMER_SLACK, Deadline, Received, Rechecks

TIMEOUT = 2
CHECK_TIMEOUT = 5  # a check runs within a second after its due time, itself up to 2.2 s away


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


class Checked:
    """What Rechecks calls: a socket's protocol, reduced to its check."""

    def __init__(self, loop, fails=False):
        self.loop, self.fails = loop, fails
        self.at = loop.create_future()  # the loop's time of the check

    def send_keepalive_ping(self):
        self.at.set_result(self.loop.time())
        if self.fails:
            raise RuntimeError("this check failed")


async def test_a_check_runs_at_its_time_or_within_a_second_after():
    loop = asyncio.get_running_loop()
    rechecks = Rechecks(loop)
    when = loop.time() + 1.2
    soon, later = Checked(loop), Checked(loop)
    rechecks.add(soon, when)
    rechecks.add(later, when + 1)
    at = await asyncio.wait_for(soon.at, CHECK_TIMEOUT)
    assert when - TIMER_SLACK <= at < when + 1 + TIMER_SLACK
    assert not later.at.done()  # its second has not come
    assert await asyncio.wait_for(later.at, CHECK_TIMEOUT) >= when + 1 - TIMER_SLACK
    assert not rechecks.due and not rechecks.ticking  # nothing left: the timer stops


async def test_a_cancelled_check_does_not_run_and_lets_its_socket_go():
    loop = asyncio.get_running_loop()
    rechecks = Rechecks(loop)
    when = loop.time() + 0.5
    gone, kept = Checked(loop), Checked(loop)
    rechecks.add(gone, when).cancel()
    rechecks.add(kept, when)
    assert all(r.protocol is not gone for checks in rechecks.due.values() for r in checks)
    await asyncio.wait_for(kept.at, CHECK_TIMEOUT)  # the same second's tick has run
    assert not gone.at.done()


async def test_a_failing_check_leaves_the_others_and_the_timer_running():
    loop = asyncio.get_running_loop()
    rechecks = Rechecks(loop)
    when = loop.time() + 0.5
    failing, same_tick, next_tick = Checked(loop, fails=True), Checked(loop), Checked(loop)
    for checked, at in ((failing, when), (same_tick, when), (next_tick, when + 1)):
        rechecks.add(checked, at)
    await asyncio.wait_for(asyncio.gather(failing.at, same_tick.at, next_tick.at), CHECK_TIMEOUT)


class Connection:
    """What a Deadline is armed for: a protocol, reduced to its loop."""

    def __init__(self, loop):
        self.loop = loop
        self.expired = loop.create_future()
        self.deadline = Deadline(self, lambda: 0.01, lambda: self.expired.set_result(True))


async def test_a_deadline_runs_once_its_seconds_have_passed_unless_disarmed():
    connection = Connection(asyncio.get_running_loop())
    connection.deadline.arm()
    connection.deadline.disarm()
    await asyncio.sleep(0.05)
    assert not connection.expired.done()
    connection.deadline.arm()
    assert await asyncio.wait_for(connection.expired, TIMEOUT)


async def test_a_closed_deadline_never_runs_and_lets_its_connection_go():
    connection = Connection(asyncio.get_running_loop())
    expired, freed = connection.expired, weakref.ref(connection)
    connection.deadline.arm()
    gc.disable()  # freed as it closes, not by the collector
    try:
        connection.deadline.close()
        connection.deadline.arm()  # after the close: nothing
        del connection
        assert freed() is None
    finally:
        gc.enable()
    await asyncio.sleep(0.05)
    assert not expired.done()
