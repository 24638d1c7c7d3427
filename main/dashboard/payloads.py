"""What the dashboard's stream sends, from a presence snapshot: the
chapter's list, or the v2 form the dashboard page reads."""

import asyncio
import functools

from django.urls import reverse

from main.infra.db import db_sync_to_async
from main.models import Order

from .streams import sse


def chat_link(order_id):
    return reverse("cs_chat", kwargs={"order_id": order_id})


def _by_order(snap):
    orders = {}
    for p in snap.people:
        orders.setdefault(p.order_id, []).append(p)
    return orders


def v1(snap):
    """The chapter's event: [{"link", "text": "<order id> (<emails>)"}], by order id."""
    return [
        {"link": chat_link(order_id), "text": f"{order_id} ({', '.join(p.email for p in people)})"}
        for order_id, people in _by_order(snap).items()
    ]


def v2_chat(order_id, people, last_spoken_to):
    """One chat of the v2 list: who is present with their role, whether an
    employee is, since when its customers have waited (None once an employee
    is present), and who last spoke to them (a dict or None)."""
    employee_present = any(p.is_employee for p in people)
    customers = [p.since for p in people if not p.is_employee]
    return {
        "order_id": order_id,
        "link": chat_link(order_id),
        "present": [
            {"email": p.email, "role": "employee" if p.is_employee else "customer", "since": p.since} for p in people
        ],
        "employee_present": employee_present,
        "waiting_since": None if employee_present or not customers else min(customers),
        "last_spoken_to": last_spoken_to,
    }


def v2_order(chats):
    """Waiting chats first, longest wait first, then by order id."""
    return sorted(chats, key=lambda c: (c["waiting_since"] is None, c["waiting_since"] or 0, c["order_id"]))


@db_sync_to_async
def last_spoken_to(order_ids):
    """Order id -> {"email", "name"} of the employee who last joined its chat."""
    orders = Order.objects.filter(pk__in=order_ids, last_spoken_to__isnull=False).select_related("last_spoken_to")
    return {o.pk: {"email": o.last_spoken_to.email, "name": o.last_spoken_to.display_name} for o in orders}


class View:
    """What a process's dashboard streams of one form get from one read: the
    list in full (encoded when a stream first needs it) and, for v2, what
    changed since the version before."""

    def __init__(self, version, chats, since, changes, next_expiry, form):
        self.version = version  # counts the changes this process has seen
        self.since = since  # the version `changes` goes on from, or None
        self.changes = changes  # the event with what changed since then (v2: {"now", "changed", "removed"})
        self.next_expiry = next_expiry  # seconds to the next expiry
        self._chats, self._form = chats, form

    @functools.cached_property
    def full(self):
        """The whole list, as an event."""
        if self._form == 1:
            return self.changes
        now, chats = self._chats
        return sse({"now": now, "chats": v2_order(chats)})


class Versions:
    """One process's succession of dashboard lists of one form, so that the
    streams that saw the one before get only what changed (encoded once for
    all of them), not the whole list again. A v2 view rebuilds only the chats
    whose people changed, and asks the database only about those."""

    def __init__(self, form):
        self.form = form
        self.version, self.shown = 0, None
        self.people, self.chats = {}, {}  # v2: order id -> its people, and its chat as last sent
        self.lock = asyncio.Lock()  # one view at a time: each follows the one before

    async def view(self, snap):
        async with self.lock:
            if self.form == 1:
                return self._v1(snap)
            return await self._v2(snap)

    def _v1(self, snap):
        shown = v1(snap)
        if shown != self.shown:
            self.version += 1
        self.shown = shown
        return View(self.version, None, self.version - 1, sse(shown), snap.seconds_to_next_expiry, 1)

    async def _v2(self, snap):
        people = {order_id: tuple(chat) for order_id, chat in _by_order(snap).items()}
        # last_spoken_to changes only when an employee joins, before their presence begins.
        touched = [order_id for order_id, chat in people.items() if self.people.get(order_id) != chat]
        spoken = await last_spoken_to(touched) if touched else {}
        removed = sorted(set(self.chats) - set(people))
        for order_id in removed:
            del self.chats[order_id]
        changed = []
        for order_id in touched:
            chat = v2_chat(order_id, people[order_id], spoken.get(order_id))
            if self.chats.get(order_id) != chat:
                changed.append(chat)
            self.chats[order_id] = chat
        changes = None
        if changed or removed or self.version == 0:
            self.version += 1
            changes = sse({"now": snap.now, "changed": v2_order(changed), "removed": removed})
        self.people = people
        since = self.version - 1 if changes else None
        chats = (snap.now, list(self.chats.values()))
        return View(self.version, chats, since, changes, snap.seconds_to_next_expiry, 2)
