"""Handing a consumer its messages from the client and the channel layer."""

import asyncio
import contextvars


async def dispatch_all(sources, dispatch):
    """`await dispatch(message)` for each message from any of `sources` (the
    client's receive, the channel layer's), one at a time, until a dispatch
    raises (StopConsumer to end).

    Channels' await_many_dispatch makes a new task and an asyncio.wait for
    every message, most of the cost of a frame that does little (a
    heartbeat). Here each source has one task for the consumer's life, which
    reads its next message once the last is handled (so a busy consumer
    still holds the client back), and a lock takes the dispatches one at a
    time. Nothing is dispatched after a dispatch has raised; a source that
    fails ends the consumer once the dispatch under way is done. Both tasks
    run in one copy of the caller's context, as the dispatches did in
    Channels' single task."""
    if len(sources) == 1:
        while True:
            await dispatch(await sources[0]())
    error = await _pump_all(sources, dispatch)
    if error is not None:
        # Raised from here, where nothing holds it: its traceback holds this
        # frame and the pumps', and none of them the error or its task, so a
        # consumer is freed as it ends, not at the collector's next full
        # collection.
        try:
            raise error
        finally:
            del error


async def _pump_all(sources, dispatch):
    """dispatch_all's work for several sources: what ended it (StopConsumer,
    or an error), or None."""
    lock = asyncio.Lock()
    ended = False

    async def pump(source):
        nonlocal ended
        while True:
            try:
                message = await source()
            except Exception:
                async with lock:  # not in the middle of the other source's dispatch
                    ended = True
                raise
            async with lock:
                if ended:
                    return
                try:
                    await dispatch(message)
                except BaseException:
                    ended = True
                    raise

    loop, context = asyncio.get_running_loop(), contextvars.copy_context()
    pumps = [loop.create_task(pump(source), context=context) for source in sources]
    try:
        ended_first, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in pumps:
            task.cancel()
        # Every pump is awaited and its end retrieved: none is left pending
        # or with an exception nobody saw.
        await asyncio.gather(*pumps, return_exceptions=True)
    return next((task.exception() for task in ended_first if task.exception() is not None), None)
