"""What keeps a process's dashboards live: the live listing, kept from the
log of arrivals and departures, and the hub that wakes them on an arrival."""

import asyncio
import json
import logging
from contextlib import suppress

from main.infra.redis_client import TellingPubSub, get_redis

from . import redis_store
from .records import PRESENCE_GRACE_SECONDS, Snapshot, in_order

logger = logging.getLogger(__name__)


class LiveListing:
    """One process's live listing, kept from the log: its first read lists
    everyone, each later read fetches only the log's entries since the last
    one it saw, and lists everyone again when they are no longer all there
    (trimmed, or the keys expired or were lost with Redis), or when it has
    not as many people as the expiry set. The log expires no later than the
    expiry set, so a member can't vanish unlogged while the log lives. One
    read at a time: entries apply in order."""

    def __init__(self):
        self.people = {}  # (order_id, email) -> Presence
        self.listing = ()  # self.people, sorted
        self.last = [b"", b""]  # the newest log entry applied: its id and value
        self.present = 0  # how many the expiry set held at the last read
        self.lock = asyncio.Lock()

    async def read(self):
        async with self.lock:
            snapshot = await self._read()
            if len(self.people) != self.present:
                # Someone came or went unlogged (a worker of an earlier
                # version during a rolling restart, the expiry set changed by
                # hand): list everyone.
                self.last = [b"", b""]
                snapshot = await self._read()
            return snapshot

    async def _read(self):
        now, soonest, newest_id, newest_value, kind, *body = await redis_store.read_log(self.last)
        if kind == b"all":
            self.last = [b"", b""]  # until everyone is in hand
            self.people = {(p.order_id, p.email): p for p in redis_store.people(*body)}
            self.listing = in_order(self.people.values())
            self.present = len(self.people)
        else:
            changes, self.present = body
            if changes:
                self.last = [b"", b""]
                for op, value in zip(changes[::2], changes[1::2], strict=True):
                    if op == b"a":
                        info, _, member = value.partition(b" ")
                        order_id, email = json.loads(member)
                        self.people[(order_id, email)] = redis_store.person(order_id, email, info)
                    else:
                        for order_id, email in json.loads(b"[" + value + b"]"):
                            self.people.pop((order_id, email), None)
                self.listing = in_order(self.people.values())
        self.last = [newest_id, newest_value]
        return Snapshot(float(now), self.listing, redis_store.epoch(soonest), PRESENCE_GRACE_SECONDS)


class Hub:
    """One pub/sub subscription per process (per event loop) to the changes
    channel, shared by every stream listening in it; open while anyone
    listens. Its events are set whenever someone arrives, in any process."""

    def __init__(self):
        self.events = set()
        self.lock = asyncio.Lock()
        self.pubsub = None
        self.reader = None

    async def add(self, event):
        async with self.lock:
            if self.reader is None or self.reader.done():
                await self._open()
            self.events.add(event)

    async def remove(self, event):
        async with self.lock:
            self.events.discard(event)
            if not self.events:
                await self.close()

    async def _open(self):
        await self.close()
        pubsub = TellingPubSub(get_redis().connection_pool, on_reconnect=self.reconnected)
        try:
            await pubsub.subscribe(redis_store.keys()[3])
            # Wait for the confirmation: from here on no arrival is missed.
            async with asyncio.timeout(5):
                while await pubsub.get_message(timeout=1.0) is None:
                    pass
        except BaseException:
            await pubsub.aclose()
            raise
        self.pubsub = pubsub
        self.reader = asyncio.get_running_loop().create_task(self._read(pubsub))

    async def close(self):
        reader, pubsub, self.reader, self.pubsub = self.reader, self.pubsub, None, None
        if reader is not None:
            reader.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await reader
        if pubsub is not None:
            await pubsub.aclose()

    async def _read(self, pubsub):
        lost = False
        while True:
            try:
                # A bounded wait, so the connection's health check runs.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=15.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Listeners re-read the store now (and fail there if Redis is
                # down); the next read reconnects and subscribes again.
                if not lost:
                    logger.warning("presence: lost the change subscription", exc_info=True)
                lost = True
                self.wake()
                await asyncio.sleep(1)
                continue
            if message is not None or lost:
                if lost:
                    logger.info("presence: change subscription back")
                lost = False  # arrivals while it was down: listeners re-read
                self.wake()

    def reconnected(self):
        # Arrivals while the connection was down never came: listeners re-read.
        logger.info("presence: change subscription reconnected")
        self.wake()

    def wake(self):
        for event in self.events:
            event.set()
