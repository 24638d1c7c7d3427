"""What the dashboard's stream sends, from a presence snapshot: the
chapter's list, or the v2 form the dashboard page reads."""

import json

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


async def event(snap, form):
    """(what the client sees, the event's bytes) in `form` 1 or 2."""
    if form == 1:
        shown = v1(snap)
        return shown, b"data: %s\n\n" % json.dumps(shown).encode()
    order_ids = sorted({p.order_id for p in snap.people})
    shown = v2(snap, await last_spoken_to(order_ids) if order_ids else {})
    return shown, b"data: %s\n\n" % json.dumps({"now": snap.now, "chats": shown}).encode()
