"""Row 8: what one dashboard's event stream is sent while a crowd comes
and goes (`Crowd`, made present through the touch script in Redis;
`StreamReader`, the dashboard; `stream_bytes`, one measurement)."""

import asyncio
import collections
import itertools
import json
import math
import random
import statistics

import aiohttp
import redis.asyncio

from main.presence import redis_store, scripts
from main.presence.records import PRESENCE_GRACE_SECONDS, PRESENCE_SECONDS

from .machine import cpu_seconds
from .presence_flaps import apply_v2
from .stack import PRESENCE_KEY_PREFIX

# Row 8: the crowd. Each second CROWD_CHURN of those present arrive and as
# many leave (a stay of 100 s on average); everyone present heartbeats every
# PRESENCE_SECONDS, as the chapter's page and app do.
CROWD_CHURN = 0.01
CROWD_TICK = 0.05  # seconds between the crowd's batches of heartbeats
CROWD_VACANT_SECONDS = 5  # a place left in a chat stays empty about this long (past the grace)
CROWD_ORDER_BASE = 100_000  # the crowd's chats: order ids none of the bench's orders has
FIRST_EVENT_WITHIN = 120.0  # seconds for the stream's first event (the whole list)
STREAM_FORMS = {"P": "?format=v2", "B": ""}  # B's column: the chapter's form, on P's server


class Crowd:
    """`present` people in order chats of two places each (a customer's and
    an employee's), made present through the touch script directly in Redis
    as a worker's batches of heartbeats are, under the bench's
    PRESENCE_KEY_PREFIX (so P's live listing reads them from the log). Each
    heartbeats every PRESENCE_SECONDS, for PRESENCE_SECONDS, landing within
    the grace of their last; `rate` per second arrive (a new person in an
    empty place, a script call of their own: it logs them and wakes the
    streams) and as many leave (a person due to heartbeat who does not:
    their presence expires, and the next script to run prunes them and logs
    it, as with a closed tab). Everyone is there within its first second
    (the heartbeats' phases spread over PRESENCE_SECONDS); the coming and
    going starts after it. The calls go as a worker's do: whatever is due
    goes in one round trip (`send`), so a busy Redis, on the servers' CPU,
    makes the next round trip larger rather than the schedule late. Counts
    its arrivals, departures and flaps (heartbeats the script took for
    arrivals: the bench late past the grace)."""

    def __init__(self, client, present, start, churn=CROWD_CHURN, seed=8):
        self.client, self.present = client, present
        self.start = start  # on the event loop's clock: tick 0, the population's first
        self.rate = present * churn
        places = present + math.ceil(self.rate * CROWD_VACANT_SECONDS)
        self.vacant = collections.deque(range(present, places))
        self.generation = [0] * places  # a place's occupants, numbered
        self.due = collections.defaultdict(list)  # tick -> places whose occupant heartbeats then
        self.random = random.Random(seed)
        self.arrived = self.departed = self.flaps = 0
        self.lag = 0.0  # the most the crowd fell behind its schedule, seconds
        self.largest_trip = 0  # the most script calls in one round trip
        self.queued, self.wake = [], asyncio.Event()  # (calls, arrivals, then) for the next round trip
        self.populated = asyncio.Event()
        self.stopped = False

    def item(self, place):
        order_id, employee, n = CROWD_ORDER_BASE + place // 2, place % 2, self.generation[place]
        email = f"agent{place}.{n}@booktime.domain" if employee else f"customer{place}.{n}@example.com"
        return redis_store.touch_item(order_id, email, bool(employee))

    def touch(self, places, seconds, arrivals, then=None):
        """The touch script for `places` (present for `seconds`, an integer),
        of which `arrivals` are new, in the next round trip; sets the event
        `then` once it ran."""
        batch = [self.item(place) for place in places]
        calls = redis_store.touch_calls(batch, seconds=seconds, prefix=PRESENCE_KEY_PREFIX)
        self.queued.append((calls, arrivals, then))
        self.wake.set()

    async def send(self):
        """Whatever is queued, in order, in one round trip each time, until
        `stop()`. (Not stopped by cancelling: redis-py may take a cancelled
        call for a lost connection and send it again.)"""
        while True:
            await self.wake.wait()
            if self.stopped:
                return
            self.wake.clear()
            jobs, self.queued = self.queued, []
            calls = [call for job_calls, _, _ in jobs for call in job_calls]
            self.largest_trip = max(self.largest_trip, len(calls))
            answers = iter(await redis_store.run_scripts(self.client, scripts.TOUCH, calls) if calls else [])
            for job_calls, arrivals, then in jobs:
                self.flaps += max(0, sum(next(answers) for _ in job_calls) - arrivals)
                if then is not None:
                    then.set()

    def stop(self):
        """No more round trips after the one under way."""
        self.stopped = True
        self.wake.set()

    async def wait_until(self, at):
        loop = asyncio.get_running_loop()
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            self.lag = max(self.lag, -delay)

    async def beat(self):
        """Everyone in the first second, then the heartbeats, one batch a
        tick, and the departures among them."""
        per_second = round(1 / CROWD_TICK)
        period = PRESENCE_SECONDS * per_second  # ticks between a person's heartbeats
        owed = 0.0
        for tick in itertools.count():
            await self.wait_until(self.start + tick * CROWD_TICK)
            if tick < per_second:
                # A twentieth of them each tick, each for 1..10 s: as if they
                # had heartbeaten over the last 10 s, their next heartbeat
                # is due when that ends (a call per length, the longest last:
                # each sets the keys' expiry from its own).
                by_seconds = collections.defaultdict(list)
                for place in range(tick, self.present, per_second):
                    seconds = 1 + (place // per_second) % PRESENCE_SECONDS
                    by_seconds[seconds].append(place)
                    self.due[tick + seconds * per_second].append(place)
                for seconds in sorted(by_seconds):
                    self.touch(by_seconds[seconds], seconds, len(by_seconds[seconds]))
                if tick == per_second - 1:
                    self.touch([], PRESENCE_SECONDS, 0, then=self.populated)  # once all of them ran
                continue
            places = self.due.pop(tick, [])
            owed += self.rate * CROWD_TICK
            leaving = min(int(owed), len(places))
            owed -= leaving
            gone = set(self.random.sample(places, leaving))
            staying = [place for place in places if place not in gone]
            self.vacant.extend(place for place in places if place in gone)
            self.departed += leaving
            if staying:
                self.touch(staying, PRESENCE_SECONDS, 0)
            self.due[tick + period].extend(staying)

    async def arrive(self):
        """`rate` arrivals a second, evenly spaced, from the population's
        end, each in an empty place."""
        for k in itertools.count():
            at = self.start + 1.0 + k / self.rate
            await self.wait_until(at)
            if self.vacant:
                place = self.vacant.popleft()
            else:
                place = len(self.generation)
                self.generation.append(0)
            self.generation[place] += 1
            # Its next heartbeat when this one's presence ends.
            self.due[math.ceil((at + PRESENCE_SECONDS - self.start) / CROWD_TICK)].append(place)
            self.arrived += 1
            self.touch([place], PRESENCE_SECONDS, 1)


def listed(event):
    """How many people an event's whole list shows (either form), or None
    for an event of v2's changes."""
    payload = json.loads(event.removeprefix(b"data: "))
    if isinstance(payload, list):  # the chapter's: "<order id> (<email>, <email>)"
        return sum(chat["text"].count(",") + 1 for chat in payload)
    if "chats" in payload:
        return sum(len(chat["present"]) for chat in payload["chats"])
    return None


class StreamReader:
    """An event stream read with aiohttp, as a dashboard does: each event
    (`data: ...` and the blank line after it) and each comment, with when it
    arrived and its size in bytes. v2's events of changes are applied to
    the list the first event gave, to count who the dashboard shows."""

    def __init__(self):
        self.events = []  # (arrival time, bytes) of each data event
        self.comments = []  # (arrival time, bytes) of each comment (keep-alive)
        self.first = None  # the first event
        self.last_whole = None  # the last event that was a whole list
        self.wholes = 0  # later events that were a whole list
        self.chats = {}  # v2: order id -> the chat as the dashboard has it
        self.arrived = asyncio.Event()
        self.response = None

    def close(self):
        """Close the stream's connection: the reading ends."""
        if self.response is not None:
            self.response.close()

    async def follow(self, session, url):
        async with session.get(url) as response:
            self.response = response
            if response.status != 200:
                raise RuntimeError(f"dashboard stream: HTTP {response.status}")
            buffer, scanned = bytearray(), 0
            async for chunk in response.content.iter_any():
                now = asyncio.get_running_loop().time()
                buffer += chunk
                while (end := buffer.find(b"\n\n", scanned)) >= 0:
                    self.take(now, bytes(buffer[: end + 2]))
                    del buffer[: end + 2]
                    scanned = 0
                scanned = max(len(buffer) - 1, 0)
        raise RuntimeError("dashboard stream: ended by the server")

    def take(self, now, event):
        if event.startswith(b":"):
            self.comments.append((now, len(event)))
            return
        if not event.startswith(b"data: "):
            raise RuntimeError(f"dashboard stream: not an event: {event[:80]!r}")
        self.events.append((now, len(event)))
        if event.startswith(b"data: ["):  # the chapter's form: the whole list each time
            self.last_whole = event
            self.first = self.first or event
        else:
            payload = json.loads(event.removeprefix(b"data: "))
            if "chats" in payload:  # the whole list (the first, or again after a missed version)
                self.wholes += self.first is not None
                self.first = self.first or event
            self.chats = apply_v2(self.chats, payload)
        self.arrived.set()

    def shown(self):
        """How many people the dashboard shows now."""
        if self.last_whole is not None:
            return listed(self.last_whole)
        return sum(len(chat["present"]) for chat in self.chats.values())


async def stream_bytes(stack, url, headers, present, window):
    """One dashboard stream at `url` on P while a Crowd of `present` comes
    and goes: its first event (the whole list), then `window` seconds once
    the coming and going is steady (departures reach the listing GRACE
    after a missed heartbeat). Answers the figures and what to note."""
    loop = asyncio.get_running_loop()
    pid = stack.targets["P"][1].process.pid
    presence_keys = [*redis_store.keys(PRESENCE_KEY_PREFIX)[:3], redis_store.agents_key(PRESENCE_KEY_PREFIX)]
    client = redis.asyncio.Redis(port=stack.redis_port)
    await client.delete(*presence_keys)  # nobody left over from the rows before
    crowd, reader = Crowd(client, present, loop.time() + 0.1), StreamReader()
    sending = loop.create_task(crowd.send())
    tasks = [loop.create_task(crowd.beat()), loop.create_task(crowd.arrive()), sending]

    async def until(at, event=None, what=None):
        """Wait until `at` (or `event`, else fail: `what` did not come),
        failing if the crowd or the stream ends first."""
        waiting = loop.create_task(event.wait() if event else asyncio.sleep(max(0.0, at - loop.time())))
        try:
            done, _ = await asyncio.wait([waiting, *tasks], timeout=at - loop.time(), return_when="FIRST_COMPLETED")
        finally:
            waiting.cancel()
        for task in done:
            if task is not waiting:
                task.result()  # its exception
                raise RuntimeError("row 8: a task ended early")
        if event is not None and waiting not in done:
            raise SystemExit(f"FAIL row 8: {what}")

    async def measure(session):
        await until(loop.time() + 30, crowd.populated, f"{present} people not made present in 30 s")
        tasks.append(loop.create_task(reader.follow(session, url)))
        await until(loop.time() + FIRST_EVENT_WITHIN, reader.arrived, f"no event from {url}")
        shown = listed(reader.first)
        if not present - crowd.departed <= shown <= present + crowd.arrived:
            raise SystemExit(f"FAIL row 8: the first event lists {shown} people, {present} were made present")
        opened = max(crowd.start + 1.0 + PRESENCE_GRACE_SECONDS + 1.0, reader.events[0][0])
        await until(opened)
        before = (cpu_seconds(pid), crowd.arrived, crowd.departed, crowd.flaps)
        await until(opened + window)
        after = (cpu_seconds(pid), crowd.arrived, crowd.departed, crowd.flaps)
        return opened, shown, [a - b for a, b in zip(after, before, strict=True)], await stack_listed(client)

    try:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            try:
                opened, shown, (cpu, arrivals, departures, flaps), end_listed = await measure(session)
            finally:
                # The stream closed first (its connection with it), then the
                # crowd stopped; the session ends once nothing uses it.
                reader.close()
                crowd.stop()
                for task in tasks:
                    if task is not sending:
                        task.cancel()
                done, pending = await asyncio.wait(tasks, timeout=10)
                for task in done:
                    if not task.cancelled():
                        task.exception()  # retrieved: the measurement's own exception, if any, says more
                if pending:
                    raise RuntimeError(f"row 8: tasks not stopping: {pending}")
    finally:
        await asyncio.sleep(0.1)  # a touch already sent lands before the keys go
        await client.delete(*presence_keys)
        await client.aclose()
    later = [size for at, size in reader.events[1:] if opened <= at < opened + window]
    comments = sum(size for at, size in reader.comments if opened <= at < opened + window)
    return {
        "first_kb": reader.events[0][1] / 1024,
        "median_kb": statistics.median(later) / 1024 if later else float("nan"),
        "largest_kb": max(later) / 1024 if later else float("nan"),
        "kb_per_minute": (sum(later) + comments) / 1024 * 60 / window,
        "events_per_minute": len(later) * 60 / window,
        "first_listed": shown,
        "wholes": reader.wholes,
        "arrivals": arrivals,
        "departures": departures,
        "flaps": flaps,
        "lag_ms": 1000 * crowd.lag,
        "largest_trip": crowd.largest_trip,
        "cpu_percent": 100 * cpu / window,
        "shown": reader.shown(),
        "listed": end_listed,
    }


async def stack_listed(client):
    """How many people the live listing holds now (those within the grace)."""
    expiry = redis_store.keys(PRESENCE_KEY_PREFIX)[0]
    seconds, microseconds = await client.time()
    now = seconds + microseconds / 1e6
    return await client.zcount(expiry, now - PRESENCE_GRACE_SECONDS, "+inf")


def dashboard_stream(stack, report, counts, window):
    """Row 8: the bytes one dashboard's stream (`?format=v2`, P's column)
    is sent while a Crowd of N people comes and goes (CROWD_CHURN a second
    each way), against the chapter's form on the same server (the whole
    list each time, B's column), each measured alone: its first event, its
    later events in a `window` of seconds (the median and the largest) and
    the bytes a minute after the first (keep-alives included)."""
    server = stack.targets["P"][1]
    headers = {"Authorization": f"Token {stack.rooms[0][2]}"}  # the bench agent, an employee
    for present in counts:
        figures = {}
        for column, query in STREAM_FORMS.items():
            url = f"{server.url}/customer-service/notify/{query}"
            figures[column] = asyncio.run(stream_bytes(stack, url, headers, present, window))
            stack.check_logs()
            f = figures[column]
            form = "v2" if query else "the chapter's form"
            report.note(
                f"8. {present} present, {form}: {f['events_per_minute']:.0f} events/min after the first; "
                f"{f['arrivals']} arrivals, {f['departures']} departures in {window:g} s; "
                f"whole lists after the first: {f['wholes']}; P's CPU {f['cpu_percent']:.0f}% of a core; "
                f"the first event listed {f['first_listed']}, the last shows {f['shown']} (the listing: "
                f"{f['listed']}); the crowd's heartbeats taken for arrivals: {f['flaps']}, "
                f"most behind its schedule: {f['lag_ms']:.0f} ms, most script calls in a round trip: "
                f"{f['largest_trip']}"
            )
            if f["flaps"]:
                report.note(f"WARNING: row 8's crowd fell behind: {f['flaps']} heartbeats landed past the grace")
        rate = present * CROWD_CHURN
        label = f"8. dashboard stream, {present} present, {rate:g} arrive and {rate:g} leave per s"
        for key, what, unit in (
            ("first_kb", "first event, the whole list", "KB"),
            ("median_kb", "later events, median", "KB"),
            ("largest_kb", "later events, largest", "KB"),
            ("kb_per_minute", "bytes per minute after the first", "KB/min"),
        ):
            values = {column: f[key] for column, f in figures.items()}
            report.row(f"{label}: {what} (B: chapter's form)", values, unit, "lower")
