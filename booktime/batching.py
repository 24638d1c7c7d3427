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


class Batches:
    """`await batches(item)`: `item` goes out with the others waiting, and the
    answer is its own result. `send(items)` sends one batch and returns a
    result per item, or raises for the whole batch; `gather_seconds`: how
    long a batch waits for more callers before it goes."""

    def __init__(self, send, gather_seconds=0.0):
        self.send = send
        self.gather_seconds = gather_seconds
        self.waiting = []  # (item, future) for the next batch
        self.sending = None  # the task sending batches, while there are any

    async def __call__(self, item):
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((item, future))
        if self.sending is None:
            self.sending = asyncio.ensure_future(self._send_batches())
        return await future

    async def _send_batches(self):
        batch = []
        try:
            while self.waiting:
                if self.gather_seconds:
                    await asyncio.sleep(self.gather_seconds)
                batch, self.waiting = self.waiting, []
                try:
                    results = await self.send([item for item, _ in batch])
                except Exception as error:
                    results = [error] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.sending = None
            # Cancelled (the event loop closing): no caller is left waiting.
            for _, future in batch + self.waiting:
                future.cancel()
            self.waiting = []
