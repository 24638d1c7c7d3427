"""Who is present in which order chat: user-centric, 10 s per heartbeat.

A heartbeat on an order's chat socket makes that user present in that chat
for PRESENCE_SECONDS; without another heartbeat they are gone, whatever their
sockets do. Several sockets of one user are one presence. The live dashboard
(`snapshot(live=True)`) keeps someone listed PRESENCE_GRACE_SECONDS more,
while their next heartbeat may be on its way; a heartbeat within the grace
continues the presence (same "since", no arrival).

With REDIS_URL presence lives in Redis (redis_store.py, live.py), shared by
every server process; without it in this process (memory.py). The choice is
made in one place, `backend()`. docs/presence.md describes the design.
"""

import asyncio
import functools
from collections.abc import Callable
from contextlib import asynccontextmanager

from django.conf import settings

from main.infra import per_loop

from . import redis_store
from .live import Hub, LiveListing
from .memory import STORE as MEMORY
from .records import PRESENCE_GRACE_SECONDS, PRESENCE_SECONDS, Presence, Snapshot

__all__ = [
    "PRESENCE_GRACE_SECONDS",
    "PRESENCE_SECONDS",
    "Presence",
    "Snapshot",
    "agents_online",
    "changes",
    "heartbeat",
    "listening",
    "snapshot",
    "touch",
    "touch_agent",
]


class RedisPresence:
    """Presence in Redis (redis_store.py, live.py), shared by every process."""

    async def touch(self, order_id, email, is_employee):
        await redis_store.touches()(redis_store.touch_item(order_id, email, is_employee))

    def heartbeat(self, order_id, email, is_employee):
        return functools.partial(redis_store.touches().put, redis_store.touch_item(order_id, email, is_employee))

    async def snapshot(self, live):
        if live:
            return await live_listing().read()
        return await redis_store.listing(0.0)

    async def agents_online(self, emails=()):
        return await redis_store.agents(emails)

    def hub(self):
        """The running loop's hub; closed at server shutdown."""
        return per_loop.get("presence-changes", Hub, Hub.close)


REDIS = RedisPresence()


def backend():
    """Where presence lives: in Redis with REDIS_URL, else in this process.
    The one place that chooses."""
    return REDIS if settings.REDIS_URL else MEMORY


async def touch(order_id: int, email: str, is_employee: bool) -> None:
    """A heartbeat: `email` is present in order `order_id`'s chat for 10 s."""
    await backend().touch(int(order_id), email, bool(is_employee))


def heartbeat(order_id: int, email: str, is_employee: bool) -> Callable[[], asyncio.Future | None]:
    """One socket's heartbeat, its user and order worked out once: call the
    answer at each heartbeat. It does not wait: the touch goes to Redis with
    the next batch and the socket's next frame is handled meanwhile. The
    call answers a future done once it has gone (None: done already); a
    failed batch is logged (redis_store.LOST_HEARTBEATS). For the running
    loop only, as a socket is."""
    return backend().heartbeat(int(order_id), email, bool(is_employee))


async def snapshot(live=False) -> Snapshot:
    """Everyone present now; `live`: and anyone whose next heartbeat may still
    be on its way (the grace), as the live dashboard shows them."""
    return await backend().snapshot(live)


async def touch_agent(email: str) -> int:
    """An employee with the inbox open counts as an agent online for 10 s
    (one heartbeating in a chat counts already); how many are online now."""
    return await backend().agents_online([email])


async def agents_online() -> int:
    """How many employees heartbeat in a chat or have the inbox open."""
    return await backend().agents_online()


@asynccontextmanager
async def changes():
    """An asyncio.Event set whenever someone arrives (in any process). The
    subscription is in place when this yields: take the snapshot after."""
    event = asyncio.Event()
    hub = backend().hub()
    await hub.add(event)
    try:
        yield event
    finally:
        await hub.remove(event)


def listening():
    """How many streams in this process wait on changes (for tests and checks)."""
    return len(backend().hub().events)


def live_listing():
    """The running loop's (the process's) live listing of the current key prefix."""
    return per_loop.get(f"presence-live:{settings.PRESENCE_KEY_PREFIX}", LiveListing)
