"""Sharing one round trip among many callers.

`Batches` sends what callers ask for in batches: what arrives while a batch
is on its way goes out together as the next one, in the order it was asked
(Redis publishes and heartbeats, chat messages to PostgreSQL). A storm of
callers then costs a few round trips, not one each holding a connection.

`Shared` runs one read for every caller of the moment (the dashboard
streams of a process, woken together by one change).
"""

import asyncio
import logging

logger = logging.getLogger(__name__)


class Batches:
    """`await batches(item)`: `item` goes out with the others waiting, and the
    answer is its own result. `send(items)` sends one batch and returns a
    result per item (an exception instance fails that item alone), or raises
    for the whole batch. `gather_seconds`: how long a batch waits for more
    callers before it goes (for callers that need no prompt answer);
    `max_batch`: most items per batch.

    `batches.put(item)` sends `item` the same way without waiting for it,
    and answers a future shared by its batch, done (with None) once the
    batch has gone; if it failed, `on_error(error, count)` is called once
    for the batch's `count` items that nobody waited for.

    A Batches belongs to the event loop that first uses it, as the
    connections it sends on do."""

    def __init__(self, send, gather_seconds=0.0, on_error=None, max_batch=None):
        self.loop = None  # bound at first use: asking asyncio for it each call is a getpid on Python 3.11
        self.send = send
        self.gather_seconds = gather_seconds
        self.on_error = on_error
        self.max_batch = max_batch
        self.waiting = []  # (item, future or None) for the next batch
        self.next_sent = None  # done once the next batch has gone, if put() asked
        self.sending = None  # the task sending batches, while there are any

    async def __call__(self, item):
        future = self._loop().create_future()
        self._add(item, future)
        try:
            return await future
        finally:
            # A failure's traceback holds this frame, and the future holds
            # the failure: without the future, no cycle for the collector.
            del future

    def put(self, item):
        if self.next_sent is None:
            self.next_sent = self._loop().create_future()
        self._add(item, None)
        return self.next_sent

    def _loop(self):
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return self.loop

    async def idle(self):
        """Wait until every batch asked for so far has gone."""
        while self.sending is not None:
            await asyncio.gather(asyncio.shield(self.sending), return_exceptions=True)

    def _add(self, item, future):
        self.waiting.append((item, future))
        if self.sending is None:
            self.sending = self._loop().create_task(self._send_batches())

    def _next_batch(self):
        size = self.max_batch or len(self.waiting)
        batch, self.waiting = self.waiting[:size], self.waiting[size:]
        if self.waiting:  # put() callers of the rest wait for a later batch
            return batch, None
        sent, self.next_sent = self.next_sent, None
        return batch, sent

    async def _send_batches(self):
        batch, sent = [], None
        try:
            while self.waiting:
                if self.gather_seconds:
                    await asyncio.sleep(self.gather_seconds)
                batch, sent = self._next_batch()
                try:
                    results = await self.send([item for item, _ in batch])
                except Exception as error:
                    results = [error] * len(batch)
                    unawaited = sum(future is None for _, future in batch)
                    if unawaited and self.on_error is not None:
                        try:
                            self.on_error(error, unawaited)
                        except Exception:
                            logger.exception("Batches: on_error failed")
                for (_, future), result in zip(batch, results, strict=True):
                    if future is None or future.done():  # put(), or its caller was cancelled
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                if sent is not None:
                    sent.set_result(None)
                batch, sent, results, result = [], None, None, None  # a failure is not held till the next batch
        finally:
            self.sending = None
            # Cancelled (the event loop closing): no caller is left waiting.
            for _, future in batch + self.waiting:
                if future is not None:
                    future.cancel()
            for future in (sent, self.next_sent):  # nobody is told it was cancelled
                if future is not None and not future.done():
                    future.set_result(None)
            self.waiting, self.next_sent = [], None


class Shared:
    """`await shared()` runs `read()` once for every caller of the moment:
    the callers that ask before a read begins all get its result, and a read
    always begins after its callers asked, so nobody gets a result older than
    their question."""

    def __init__(self, read, gather_seconds=0.01):
        self.read = read
        self.gather_seconds = gather_seconds
        self.next = None  # the read that has not begun yet, if any

    async def __call__(self):
        if self.next is None:
            self.next = asyncio.ensure_future(self._run())
        # shield: one caller going away does not cancel the others' read.
        return await asyncio.shield(self.next)

    async def _run(self):
        # The callers one change wakes resume over a few turns of the loop:
        # wait that long for them to ask, then read for all; from here on,
        # new callers wait for the read after this one.
        await asyncio.sleep(self.gather_seconds)
        self.next = None
        return await self.read()
