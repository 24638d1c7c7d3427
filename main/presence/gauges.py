"""Presence's numbers for the worker's metrics (main/infra/metrics.py), read
as Prometheus scrapes them: from the process's live listing, which a read
brings up to date from the log of arrivals and departures (one script call),
and the agents' count (one more)."""

import asyncio

from main.infra import metrics

from . import agents_online, snapshot


async def read():
    listing, agents = await asyncio.gather(snapshot(live=True), agents_online())
    customers = sum(1 for person in listing.people if not person.is_employee)
    chats = len({person.order_id for person in listing.people})
    metrics.presence_counts(customers, len(listing.people) - customers, chats, agents)
