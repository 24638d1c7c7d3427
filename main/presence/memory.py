"""Presence in this process, when there is no Redis (the embedded default):
the same rules, for one process only."""

import asyncio
import functools
import time

from .records import PRESENCE_GRACE_SECONDS, PRESENCE_SECONDS, Presence, Snapshot, in_order


class MemoryStore:
    def __init__(self):
        self.people = {}  # (order_id, email) -> (Presence, when it ends)
        self.agents = {}  # email -> when they stop counting as an agent online
        self.events = {}  # asyncio.Event -> its loop

    def clear(self):
        self.people.clear()
        self.agents.clear()

    def _prune(self, now):
        for key in [k for k, (_, ends) in self.people.items() if ends <= now - PRESENCE_GRACE_SECONDS]:
            del self.people[key]

    async def touch(self, order_id, email, is_employee):
        self.touch_soon(order_id, email, is_employee)

    def touch_soon(self, order_id, email, is_employee):
        """touch(), done at once: nothing to wait for (None)."""
        now = time.time()
        self._prune(now)
        old = self.people.get((order_id, email))
        since = old[0].since if old else now
        self.people[(order_id, email)] = (Presence(order_id, email, is_employee, since), now + PRESENCE_SECONDS)
        if is_employee:
            self.agents[email] = now + PRESENCE_SECONDS
        if old is None:
            for event, loop in list(self.events.items()):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(event.set)
        return None

    def heartbeat(self, order_id, email, is_employee):
        return functools.partial(self.touch_soon, order_id, email, is_employee)

    async def snapshot(self, live):
        now = time.time()
        grace = PRESENCE_GRACE_SECONDS if live else 0.0
        self._prune(now)
        listed = [(p, ends) for p, ends in self.people.values() if ends > now - grace]
        soonest = min((ends for _, ends in listed), default=None)
        return Snapshot(now, in_order(p for p, _ in listed), soonest, grace)

    async def agents_online(self, emails=()):
        now = time.time()
        for email in emails:
            self.agents[email] = now + PRESENCE_SECONDS
        for email in [e for e, ends in self.agents.items() if ends <= now]:
            del self.agents[email]
        return len(self.agents)

    async def add(self, event):
        self.events[event] = asyncio.get_running_loop()

    async def remove(self, event):
        self.events.pop(event, None)

    def hub(self):
        """What wakes this process's streams on an arrival: the store itself."""
        return self


STORE = MemoryStore()
