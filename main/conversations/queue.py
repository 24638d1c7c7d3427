"""The queue of waiting customers: where one stands, and how long the wait
is likely to be.

The expected wait is the median time customers waited for a first reply
over the last hours (state.median_first_reply), times the rounds of
replies ahead of this customer: ceil(position / agents online). Agents
online are employees heartbeating in a chat or with the inbox open. With
nobody online the customer is told their message is kept for later; with
too few recent replies to go by, that they will be answered as soon as
possible."""

import functools
import math
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.utils.translation import gettext, ngettext

from main import presence
from main.infra import per_loop
from main.infra.batching import Shared
from main.infra.db import db_sync_to_async

from . import state

# A change wakes every waiting customer's socket in a process: they share
# one read, gathered over this long.
GATHER_SECONDS = 0.25


@dataclass(frozen=True)
class Queue:
    waiting: tuple  # order ids, the longest wait first
    median_reply: float | None  # seconds
    agents_online: int

    @functools.cached_property
    def positions(self):
        """{order id: its place, from 1}: every waiting socket of the process
        looks itself up in one read of the queue."""
        return {order_id: n for n, order_id in enumerate(self.waiting, 1)}

    def place(self, order_id):
        """Where the conversation about `order_id` stands, or None if it is not waiting."""
        position = self.positions.get(order_id)
        if position is None:
            return None
        expected = None
        if self.agents_online and self.median_reply is not None:
            expected = round(self.median_reply * math.ceil(position / self.agents_online))
        return {
            "position": position,
            "waiting": len(self.waiting),
            "agents_online": self.agents_online,
            "expected_wait_seconds": expected,
            "message": message(position, self.agents_online, expected),
        }


def message(position, agents_online, expected):
    """The place said for people, in the active language (the REST API's
    caller's; English on the chat socket, whose page says it from the
    numbers in its own language)."""
    if not agents_online:
        return gettext(
            "Nobody from customer service is online right now. "
            "Your message is kept, and we will answer as soon as someone is back."
        )
    if position == 1:
        ahead = gettext("You are next.")
    else:
        ahead = gettext("You are number %(position)s in the queue.") % {"position": position}
    if expected is None:
        return gettext("%(ahead)s We will answer as soon as we can.") % {"ahead": ahead}
    minutes = max(1, round(expected / 60))
    return ngettext(
        "%(ahead)s Expected wait: about %(minutes)s minute.",
        "%(ahead)s Expected wait: about %(minutes)s minutes.",
        minutes,
    ) % {"ahead": ahead, "minutes": minutes}


def _waiting():
    """(the waiting orders, the median first reply), from the database."""
    return tuple(state.waiting_orders()), state.median_first_reply()


async def _read():
    (waiting, median), agents = await db_sync_to_async(_waiting)(), await presence.agents_online()
    return Queue(waiting, median, agents)


def now():
    """The queue now, read at once (for sync code: the REST API)."""
    return Queue(*_waiting(), async_to_sync(presence.agents_online)())


async def current():
    """The queue now, read once for every caller of the moment in this process."""
    return await per_loop.get("conversation-queue", lambda: Shared(_read, GATHER_SECONDS))()


async def place(order_id):
    return (await current()).place(order_id)
