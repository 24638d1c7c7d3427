"""Redis commands sent in batches: one pipeline per round trip.

A worker whose sockets all act at once (a storm of heartbeats, a mass close
publishing each socket's chat_leave) sent one command per round trip, each
holding a pooled connection, or the channel layer's lock, until its answer
came back through a busy event loop. Callers then waited their turn for
seconds, some past their timeout. A Batches sends what was asked while the
previous batch was on its way as the next batch, in the order it was asked,
on one connection.

With `gather_seconds`, each batch waits that long for more callers before
it goes: for work whose callers do not need a prompt answer (heartbeats),
where each round trip's fixed cost in the worker (a pipeline, its socket
write and read, its reply parsed) was most of the work at thousands a
second.
"""

import asyncio
import logging

logger = logging.getLogger(__name__)


class Batches:
    """`await batches(item)`: `item` goes out with the others waiting, and the
    answer is its own result. `send(items)` sends one batch and returns a
    result per item, or raises for the whole batch; `gather_seconds`: how
    long a batch waits for more callers before it goes.

    `batches.put(item)` sends `item` the same way without waiting for it,
    and answers a future shared by its batch, done (with None) once the
    batch has gone; if it failed, `on_error(error, count)` is called once
    for the batch's `count` items that nobody waited for."""

    def __init__(self, send, gather_seconds=0.0, on_error=None):
        self.send = send
        self.gather_seconds = gather_seconds
        self.on_error = on_error
        self.waiting = []  # (item, future or None) for the next batch
        self.next_sent = None  # done once the next batch has gone, if put() asked
        self.sending = None  # the task sending batches, while there are any

    async def __call__(self, item):
        future = asyncio.get_running_loop().create_future()
        self._add(item, future)
        return await future

    def put(self, item):
        if self.next_sent is None:
            self.next_sent = asyncio.get_running_loop().create_future()
        self._add(item, None)
        return self.next_sent

    def _add(self, item, future):
        self.waiting.append((item, future))
        if self.sending is None:
            self.sending = asyncio.ensure_future(self._send_batches())

    async def _send_batches(self):
        batch, sent = [], None
        try:
            while self.waiting:
                if self.gather_seconds:
                    await asyncio.sleep(self.gather_seconds)
                batch, self.waiting = self.waiting, []
                sent, self.next_sent = self.next_sent, None
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
