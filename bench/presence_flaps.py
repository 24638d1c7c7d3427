"""The soak's presence judge: what an employee's dashboard stream showed
while every socket kept heartbeating. A (chat, user) that leaves the
dashboard, or comes back with a new `since` (it expired in between), is a
flap: presence failing the people it describes."""

import asyncio
import collections
import contextlib
from dataclasses import dataclass, field

from .loadgen import percentile


def role(member):
    """A member's role, from its email (bench_data's employees are bench-agent*)."""
    return "employee" if member[1].startswith("bench-agent") else "customer"


def apply_v2(chats, event):
    """The dashboard's chats (order id -> chat) after one `?format=v2` event:
    the whole list, or what changed since the last."""
    if "chats" in event:
        return {c["order_id"]: c for c in event["chats"]}
    chats.update((c["order_id"], c) for c in event["changed"])
    for order_id in event["removed"]:
        chats.pop(order_id, None)
    return chats


@dataclass
class PresenceWatch:
    """The dashboard's events, judged while `judging`."""

    judging: bool = True
    events: int = 0
    last: dict = field(default_factory=dict)  # (order id, email) -> since, in the last event
    ever: set = field(default_factory=set)
    gone: collections.Counter = field(default_factory=collections.Counter)  # by role
    restarted: collections.Counter = field(default_factory=collections.Counter)
    gone_at: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)  # seconds a member was missing
    flaps: list = field(default_factory=list)  # (loop time, role, "gone" | "restarted")
    max_event_bytes: int = 0
    chats: dict = field(default_factory=dict)  # order id -> chat, as the events so far say
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # set by each event

    def event(self, data, now):
        """One dashboard event at loop time `now`: everyone present (the
        first), or what changed since the last."""
        self.events += 1
        self.chats = apply_v2(self.chats, data)
        current = {(c["order_id"], p["email"]): p["since"] for c in self.chats.values() for p in c["present"]}
        if self.judging:
            for member in self.last.keys() - current.keys():
                self.gone[role(member)] += 1
                self.gone_at[member] = now
                self.flaps.append((now, role(member), "gone"))
            for member, since in current.items():
                if member in self.gone_at:
                    self.gaps.append(now - self.gone_at.pop(member))
                elif member in self.last and self.last[member] != since:
                    self.restarted[role(member)] += 1
                    self.flaps.append((now, role(member), "restarted"))
        self.last = current
        self.ever.update(current)
        self.changed.set()

    async def until_listed(self, members, within):
        """Wait until the dashboard lists every one of `members`, or `within`
        seconds have passed (those still missing are then reported)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while not members <= self.last.keys():
                    self.changed.clear()
                    await self.changed.wait()

    def report(self, members, present_at_end, phases, figure):
        """Print the figures with `figure(what, text)`, over `phases` ((label,
        start, stop) in loop time); answers the problems: any flap, and any
        of `members` ((order id, email) with sockets) never listed or not
        listed at the end."""
        ever = len(self.ever & members)
        figure(
            "presence",
            f"{self.events} dashboard events (largest {self.max_event_bytes / 1024:.0f} KB); "
            f"{ever} of {len(members)} (chat, user) arrived, {len(present_at_end)} present at the end",
        )
        for kind in ("customer", "employee"):
            figure(
                "presence flaps",
                f"{kind}s: {self.gone[kind]} left the dashboard while heartbeating, "
                f"{self.restarted[kind]} came back with a new since (expired between two events)",
            )
        for label, start, stop in phases:
            flaps = collections.Counter(who for t, who, _ in self.flaps if start <= t < stop)
            figure("presence flaps", f"{flaps['customer']} customer, {flaps['employee']} employee {label}")
        if self.gaps:
            gaps = f"p50 {1000 * percentile(self.gaps, 0.5):.0f} ms, max {1000 * max(self.gaps):.0f} ms"
            figure("presence flaps", f"gone from the dashboard for {gaps}")
        problems = []
        flaps = sum(self.gone.values()) + sum(self.restarted.values())
        if flaps:
            problems.append(f"{flaps} flaps while heartbeating")
        if ever < len(members) or len(present_at_end) < len(members):
            problems.append(f"{ever} arrived, {len(present_at_end)} present at the end, of {len(members)}")
        return problems
