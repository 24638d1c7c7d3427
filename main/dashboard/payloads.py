"""What the dashboard's stream sends, from a presence snapshot: the
chapter's list, or the v2 form the dashboard page reads."""

import asyncio
import json
from dataclasses import dataclass

from django.urls import reverse

from main.infra.db import db_sync_to_async
from main.models import Order


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


def v2(snap, last_spoken_to):
    """Per chat: who is present with their role, whether an employee is, since
    when its customers have waited (None once an employee is present), and who
    last spoke to them (`last_spoken_to`: order id -> dict or None). Waiting
    chats come first, longest wait first."""
    chats = []
    for order_id, people in _by_order(snap).items():
        employee_present = any(p.is_employee for p in people)
        customers = [p.since for p in people if not p.is_employee]
        chats.append(
            {
                "order_id": order_id,
                "link": chat_link(order_id),
                "present": [
                    {"email": p.email, "role": "employee" if p.is_employee else "customer", "since": p.since}
                    for p in people
                ],
                "employee_present": employee_present,
                "waiting_since": None if employee_present or not customers else min(customers),
                "last_spoken_to": last_spoken_to.get(order_id),
            }
        )
    chats.sort(key=lambda c: (c["waiting_since"] is None, c["waiting_since"] or 0, c["order_id"]))
    return chats


@db_sync_to_async
def last_spoken_to(order_ids):
    """Order id -> {"email", "name"} of the employee who last joined its chat."""
    orders = Order.objects.filter(pk__in=order_ids, last_spoken_to__isnull=False).select_related("last_spoken_to")
    return {o.pk: {"email": o.last_spoken_to.email, "name": o.last_spoken_to.display_name} for o in orders}


def data(payload):
    return b"data: %s\n\n" % json.dumps(payload).encode()


@dataclass(frozen=True)
class View:
    """What a process's dashboard streams of one form get from one read:
    the list in full, and (v2) what changed since the version before."""

    version: int  # counts the changes this process has seen
    shown: list  # what the client sees
    full: bytes  # the whole list, as an event
    since: int | None  # the version `changes` goes on from
    changes: bytes | None  # the v2 event with what changed since then: {"now", "changed", "removed"}
    next_expiry: float | None  # seconds to the next expiry


class Versions:
    """One process's succession of dashboard lists of one form, so that the
    streams that saw the one before get only what changed (encoded once for
    all of them), not the whole list again."""

    def __init__(self, form):
        self.form = form
        self.version, self.shown, self.by_order = 0, None, {}
        self.lock = asyncio.Lock()  # one view at a time: each follows the one before

    async def view(self, snap):
        async with self.lock:
            return await self._view(snap)

    async def _view(self, snap):
        if self.form == 1:
            shown = v1(snap)
            if shown != self.shown:
                self.version += 1
            self.shown = shown
            event = data(shown)
            return View(self.version, shown, event, self.version - 1, event, snap.seconds_to_next_expiry)
        order_ids = sorted({p.order_id for p in snap.people})
        shown = v2(snap, await last_spoken_to(order_ids) if order_ids else {})
        by_order = {chat["order_id"]: chat for chat in shown}
        changed = [chat for chat in shown if self.by_order.get(chat["order_id"]) != chat]
        removed = sorted(set(self.by_order) - set(by_order))
        changes = None
        if changed or removed or self.shown is None:
            self.version += 1
            changes = data({"now": snap.now, "changed": changed, "removed": removed})
        self.shown, self.by_order = shown, by_order
        full = data({"now": snap.now, "chats": shown})
        return View(
            self.version, shown, full, self.version - 1 if changes else None, changes, snap.seconds_to_next_expiry
        )


async def event(snap, form):
    """(what the client sees, the event's bytes) in `form` 1 or 2, in full."""
    if form == 1:
        shown = v1(snap)
        return shown, data(shown)
    order_ids = sorted({p.order_id for p in snap.people})
    shown = v2(snap, await last_spoken_to(order_ids) if order_ids else {})
    return shown, data({"now": snap.now, "chats": shown})
