"""Rows 9 and 10: what opening a socket costs the server (row 9: a storm of
fresh handshakes, v1 and v2 with its catch-up, server CPU per handshake),
and how long the clients of a restarted worker take to be back with its
successor (row 10: the reconnect storm, every v2 client resuming with
nothing lost)."""

import asyncio
import contextlib
import gc
import json
import random
import time

import uvloop
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from main.chat.protocol import V2_SUBPROTOCOL

from .machine import SERVER_CPU, cpu_busy_seconds, cpu_seconds, listen_overflows

AT_ONCE = 100  # handshakes in flight at a time in row 9's storm
OPEN_TIMEOUT = 30.0
# Row 10's clients come back at once, as the worker's 1012 (service
# restart) asks: each tries after a random delay of up to this long, again
# as long as it is refused.
RETRY_SECONDS = 0.5
RESTART_DEADLINE = 120.0  # row 10 fails past this
MISSING_AFTER = 10.0  # seconds a message sent meanwhile has to reach a client that is back


def socket_url(target, i, v2=False, after_seq=None):
    """Socket i's URL: room i // 2, the customer or the agent by parity."""
    room = (i // 2) % max(1, len(target.rooms)) if target.kind == "product" else i // 2
    url = target.url(room, i % 2)
    if after_seq is not None:
        url += f"&after_seq={after_seq}"
    return url


async def open_socket(url, v2):
    """A socket, once its handshake (and for v2 the catch-up: `ready`, then
    the history or the missed messages) is done; with the frames read."""
    ws = await connect(
        url,
        open_timeout=OPEN_TIMEOUT,
        subprotocols=[V2_SUBPROTOCOL] if v2 else None,
        ping_interval=None,
        compression=None,
        max_size=2**22,
        proxy=None,  # loopback; looking the proxy up in the environment costs each connect
    )
    frames = []
    if v2:
        async with asyncio.timeout(OPEN_TIMEOUT):
            while True:
                frame = json.loads(await ws.recv())
                frames.append(frame)
                if frame["type"] in ("history", "resumed"):
                    break
    return ws, frames


@contextlib.contextmanager
def no_collections():
    """The load generator's garbage collector off while it holds thousands
    of clients: each of its full collections scans them all and stops it,
    and a storm measured through those stops is the load generator's time,
    not the server's. Collected once the clients are closed."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


async def storm(target, count, v2):
    """Open `count` sockets, AT_ONCE at a time; the sockets, the seconds taken, the failures."""
    gate = asyncio.Semaphore(AT_ONCE)
    failures = []

    async def one(i):
        async with gate:
            try:
                return (await open_socket(socket_url(target, i, v2), v2))[0]
            except Exception as error:
                failures.append(f"{type(error).__name__}: {error}")

    start = time.perf_counter()
    sockets = await asyncio.gather(*(one(i) for i in range(count)))
    return [s for s in sockets if s is not None], time.perf_counter() - start, failures


async def quiet(pid, busy=0.02, window=0.5, longest=30.0):
    """Wait until process `pid` uses under `busy` of a core over `window`
    seconds (what came before has been handled), at most `longest`."""
    deadline = time.monotonic() + longest
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        await asyncio.sleep(window)
        if cpu_seconds(pid) - before < busy * window:
            return


async def close_all(sockets):
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def handshakes(stack, report, names, count, reps):
    """Row 9: server CPU per handshake and handshakes per second in a storm
    of `count` fresh sockets, v1 on every target that speaks it and v2 (P's
    catch-up: read markers, conversation, the latest history page) on P."""
    cases = [("v1", False, n) for n in names if n in ("P", "B")] + [("v2", True, "P")] * ("P" in names)
    figures = {}
    for _ in range(reps):
        for version, v2, name in cases:
            target, server = stack.targets[name]
            pid = server.process.pid

            async def run(target=target, v2=v2, pid=pid):
                # A first handful opens the worker's pools and warms its caches.
                await close_all((await storm(target, AT_ONCE, v2))[0])
                await quiet(pid)
                before = cpu_seconds(pid)
                with no_collections():
                    sockets, elapsed, failures = await storm(target, count, v2)
                    await asyncio.sleep(0.3)  # the join events that follow each handshake
                    cpu = cpu_seconds(pid) - before
                    await close_all(sockets)
                await asyncio.sleep(1.0)  # the closes run before the next storm
                return len(sockets), elapsed, cpu, failures

            opened, elapsed, cpu, failures = asyncio.run(run())
            if failures:
                raise SystemExit(f"FAIL handshakes {name} {version}: {len(failures)} failed: {failures[:3]}")
            figures.setdefault(version, {}).setdefault(name, []).append((1e6 * cpu / opened, opened / elapsed))
    for version, by_name in figures.items():
        label = f"9. {version} handshake, {count} sockets, {AT_ONCE} at once"
        cpu = {n: sorted(r[0] for r in runs)[len(runs) // 2] for n, runs in by_name.items()}
        rate = {n: sorted(r[1] for r in runs)[len(runs) // 2] for n, runs in by_name.items()}
        b = figures.get("v1", {}).get("B")
        if version == "v2" and b:  # against B's v1, the only handshake B has
            cpu["B"] = sorted(r[0] for r in b)[len(b) // 2]
            rate["B"] = sorted(r[1] for r in b)[len(b) // 2]
        report.row(f"{label}: server CPU per handshake (B: v1)", cpu, "us", "lower")
        report.row(f"{label}: handshakes/s (B: v1)", rate, "conn/s", "higher")


class Resumer:
    """A row-10 client: a v2 socket (v1 for B) that, once closed, reconnects
    and, on P, resumes from the last seq it has."""

    def __init__(self, target, i, v2):
        self.target, self.i, self.v2 = target, i, v2
        self.last_seq = None
        self.seqs = set()
        self.ws = None
        self.told = self.back = None  # when the old worker closed it, when it was back
        self.reading = None

    def take(self, frames):
        for frame in frames:
            if frame.get("type") == "chat_message":
                self.seqs.add(frame["seq"])
            elif frame.get("type") == "history" and frame["messages"]:
                self.seqs.update(m["seq"] for m in frame["messages"])
        if self.seqs:
            self.last_seq = max(self.seqs)

    async def open(self):
        self.ws, frames = await open_socket(socket_url(self.target, self.i, self.v2, self.last_seq), self.v2)
        self.take(frames)

    async def come_back(self):
        """Once the old worker closed the socket: back (after a random
        delay, again as long as it is refused), resumed, then reading what
        comes live."""
        await self.read()
        self.told = time.perf_counter()
        while True:
            await asyncio.sleep(random.uniform(0, RETRY_SECONDS))
            try:
                await self.open()
            except Exception:  # refused, reset, timed out, closed: try again
                continue
            self.back = time.perf_counter()
            self.reading = asyncio.ensure_future(self.read())
            return

    async def read(self):
        try:
            async for frame in self.ws:
                self.take([json.loads(frame)])
        except ConnectionClosed:
            pass


async def send_meanwhile(stack, rooms, every):
    """While the clients come back: a message from the customer of every
    `every`-th room, stored through the REST API of another worker of the
    same application; {room: seq}."""
    import aiohttp

    sent = {}
    # A connection per message: one kept alive may be closed by the server
    # (idle past its keep-alive timeout while the storm holds the loadgen)
    # just as the next message goes out on it.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), connector=connector) as http:
        for room in range(0, rooms, every):
            order_id, customer, _ = stack.rooms[room]
            async with http.post(
                f"{stack.plain.url}/mobile-api/conversations/{order_id}/messages/",
                json={"message": f"sent while the worker restarts ({room})"},
                headers={"Authorization": f"Token {customer}"},
            ) as answer:
                body = await answer.json()
                if answer.status != 201:
                    raise SystemExit(f"FAIL reconnect storm: a message not stored ({answer.status} {body})")
                sent[room] = body["seq"]
    return sent


async def missing(clients, sent):
    """The clients still without the message sent to their room meanwhile
    once MISSING_AFTER has passed (each has it in its catch-up or live)."""
    deadline = time.monotonic() + MISSING_AFTER
    while True:
        lost = [c for c in clients if (c.i // 2) in sent and sent[c.i // 2] not in c.seqs]
        if not lost or time.monotonic() > deadline:
            return lost
        await asyncio.sleep(0.05)


def reconnect_storm(stack, report, names, count):
    """Row 10: `count` sockets on one worker (P's v2, resuming; B's v1), the
    worker restarted as a deploy does (docs/operations.md): its successor
    started on its port, then it is stopped; seconds from the stop until
    every client is back (P: and resumed, with every message stored
    meanwhile)."""
    figures = {k: {} for k in ("back", "half", "told", "exit", "start", "busy", "core", "loadgen", "overflows", "rate")}
    for name in names:
        if name not in ("P", "B"):
            continue
        if name not in stack.restartable:
            report.note(f"row 10: {name} is not on a server that can hand its port over; not measured")
            continue
        v2 = name == "P"
        target, _ = stack.targets[name]

        async def run(target=target, v2=v2, name=name):
            clients = [Resumer(target, i, v2) for i in range(count)]
            gate = asyncio.Semaphore(AT_ONCE)

            async def first_open(client):
                async with gate:
                    await client.open()

            await asyncio.gather(*(first_open(c) for c in clients))
            starting_at = time.perf_counter()
            old = await asyncio.to_thread(stack.start_next, name)
            pid = stack.targets[name][1].process.pid
            returning = [asyncio.ensure_future(c.come_back()) for c in clients]
            stopping_at = time.perf_counter()
            cpu_at_stop, own_at_stop, core_at_stop = cpu_seconds(pid), time.process_time(), cpu_busy_seconds(SERVER_CPU)
            overflows_at_stop = listen_overflows()
            stopping = asyncio.ensure_future(asyncio.to_thread(stack.stop_server, old))
            sent = await send_meanwhile(stack, min(count // 2, len(stack.rooms)), 20) if v2 else {}
            await asyncio.wait_for(asyncio.gather(*returning), RESTART_DEADLINE)
            backs = sorted(c.back for c in clients)
            back = backs[-1]
            overflows = listen_overflows() - overflows_at_stop
            busy = (cpu_seconds(pid) - cpu_at_stop) / (back - stopping_at)
            loadgen = (time.process_time() - own_at_stop) / (back - stopping_at)
            core = (cpu_busy_seconds(SERVER_CPU) - core_at_stop) / (back - stopping_at)
            exited = await stopping
            lost = await missing(clients, sent)
            for c in clients:
                c.reading.cancel()
            await close_all([c.ws for c in clients])
            await asyncio.sleep(1.0)
            return {
                "back": back - stopping_at,
                "half": backs[len(backs) // 2] - stopping_at,
                "overflows": overflows,
                "told": max(c.told for c in clients) - stopping_at,
                "exit": exited - stopping_at,
                "start": stopping_at - starting_at,
                "busy": 100 * busy,
                "loadgen": 100 * loadgen,
                "core": 100 * core,
                "lost": len(lost),
            }

        # On uvloop, as the servers are, and without its collector's stops,
        # so that the load generator keeps up with the storm (docs/benchmarks.md).
        with no_collections():
            timings = uvloop.run(run())
        if timings["lost"]:
            raise SystemExit(f"FAIL reconnect storm {name}: {timings['lost']} clients missed a message sent meanwhile")
        for figure in figures.keys() & timings.keys():
            figures[figure][name] = timings[figure]
        figures["rate"][name] = count / timings["back"]
    label = f"10. reconnect storm, {count} sockets (P: v2, resumed; B: v1)"
    report.row(f"{label}: all back, from the stop", figures["back"], "s", "lower")
    report.row(f"{label}: half back, from the stop", figures["half"], "s", "lower")
    report.row(f"{label}: every client closed by the old worker", figures["told"], "s", "lower")
    report.row(f"{label}: the old worker's exit", figures["exit"], "s", "lower")
    report.row(f"{label}: the new worker's start, before the stop", figures["start"], "s", "lower")
    report.row(f"{label}: handshakes/s from the stop", figures["rate"], "conn/s", "higher")
    report.row(f"{label}: the new worker's CPU until all are back", figures["busy"], "% core", "lower")
    report.row(
        f"{label}: the servers' core busy meanwhile (both workers, Redis, PostgreSQL)", figures["core"], "%", "lower"
    )
    report.row(f"{label}: the load generator's CPU meanwhile", figures["loadgen"], "% core", "lower")
    report.row(
        f"{label}: connection attempts dropped by a full listen queue (machine-wide)",
        figures["overflows"],
        "attempts",
        "lower (0)",
    )
