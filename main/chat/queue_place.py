"""Where a waiting customer's socket stands in the queue, read beside the
chat rather than in its way: a message to or from the socket is not held up
by the read, and changes that come while it runs make one more read after it."""

import asyncio
import logging

from main.conversations import queue

logger = logging.getLogger(__name__)


class QueuePlace:
    """One socket's place: `changed()` on every change of the queue;
    `tell(place)` (async) sends a new place and returns whether it was sent."""

    def __init__(self, order_id, tell):
        self.order_id, self.tell = order_id, tell
        self.place = None  # as the client was last told
        self.reading = None  # the task reading it, while it runs
        self.stale = False

    def changed(self):
        if self.tell is None:
            return  # cancelled: the socket has ended
        if self.reading is None or self.reading.done():
            self.reading = asyncio.ensure_future(self._read())
        else:
            self.stale = True

    def forget(self):
        """Waiting again later, the client is told its place again."""
        self.place = None

    def cancel(self):
        """The socket has ended: no read runs or starts again."""
        # Its consumer holds this place, and a cancelled read's traceback its
        # frame: letting go of the read and of the consumer's method frees
        # them all as the socket ends, not at the collector's next full
        # collection.
        reading, self.reading, self.tell = self.reading, None, None
        if reading is not None:
            reading.cancel()

    async def _read(self):
        while True:
            self.stale = False
            try:
                place = await queue.place(self.order_id)
            except Exception:
                # The chat goes on; the next change tells the customer again.
                logger.warning("Queue not read: order %s", self.order_id, exc_info=True)
                return
            if place is not None and place != self.place and await self.tell(place):
                self.place = place
            if not self.stale:
                return
