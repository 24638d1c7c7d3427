"""The soak: thousands of authenticated chat sockets held on ONE worker of the
shipped application for minutes, the way real people use it, with the checks
a long day needs.

    .venv/bin/python -m bench.soak            # 2,000 sockets in 500 chats for 3 minutes
    .venv/bin/python -m bench.soak --quick    # about 20 s: 200 sockets in 50 chats

It starts its own Redis (free port), prepares its database
(BENCH_DATABASE_URL, default booktime_soak) and one worker,
`python -m booktime.serve` with production settings (DEBUG off, the shipped
limits), pinned to CPU 0 while this load generator runs on CPU 1
(bench.stack.SoakStack, bench.machine). Each chat has its customer on v2
(`booktime.chat.v2`) with a token, the customer's phone on v1 with a token,
and employees on v2 with theirs (employees are shared between chats). Every socket heartbeats every
10 s (the slowest docs/protocol.md allows), staggered; a share of the chats
chat, a message every few seconds, customer and employee alternating. An
employee's dashboard stream (`/customer-service/notify/?format=v2`) is open
for the whole run.

It prints the figures (connect time, server CPU and RSS, Redis connections,
messages, latency, heartbeats/s, presence) and fails (exit status 1) on any
violation:

- a lost or duplicated message: every message the server accepted reaches
  every socket of its chat exactly once (its sender's as the echo; v2 by id,
  v1 by text), with one id and seq for all, and the chat's ChatMessage rows
  (count and text per order, seqs without gaps) are exactly what was sent;
- an error: a failed connection, a socket closed by the server, an `error`
  event, a traceback, over-capacity, ERROR or WARNING line in the server log;
- a presence flap: a (chat, user) whose sockets keep heartbeating that leaves
  the dashboard, or comes back with a new `since` (it expired in between;
  bench.presence_flaps judges);
- memory growth after warm-up (see RSS_SLOPE_TOLERANCE_MB).
"""

import argparse
import asyncio
import collections
import contextlib
import json
import random
import sys
import time
from dataclasses import dataclass

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from harness.servers import ROOT
from main.chat.protocol import V2_SUBPROTOCOL as V2

from .loadgen import HEARTBEAT, open_all, percentile
from .machine import LOADGEN_CPU, SERVER_CPU, cpu_busy_seconds, cpu_seconds, pinned, rss_kb, tcp_to
from .presence_flaps import PresenceWatch
from .stack import SoakStack

HEARTBEAT_SECONDS = 10.0  # docs/protocol.md: every 5-10 s; the soak takes the slowest
# Handshakes in flight while the sockets connect: a storm, as after a worker
# restart (bench.run's row 3 opens its sockets the same way).
CONNECT_AT_ONCE = 100
RSS_SAMPLE_SECONDS = 2.0
DRAIN_SECONDS = 30.0  # for the last messages to arrive everywhere
LISTED_SECONDS = 2.0  # for the dashboard to list the last first heartbeats, sent just before the end
# CPU 0 busy with other processes than the worker and its Redis (the
# machine's other work, and the kernel's share of loopback traffic) above
# this share of the core: the worker got less of it than it would alone, and
# a WARNING says the figures (latency above all) are not the product's alone.
CONTENDED_SHARE = 0.25
# Memory after warm-up may grow by at most this much per minute (least-squares
# slope of VmRSS over the steady window): above a healthy worker's noise
# (allocator arenas, a GC cycle), below a leak of 100 bytes a heartbeat or
# 1 KB a message at the default load. A window shorter than RSS_JUDGED_AFTER
# (the quick mode) is reported, not judged.
RSS_SLOPE_TOLERANCE_MB = 1.0
RSS_JUDGED_AFTER = 60.0
# Entries of the worker's log that fail the soak: stricter than the bench's.
LOG_PROBLEMS = ("over capacity", "Traceback", " ERROR ", " WARNING ", " CRITICAL ")


@dataclass
class Sent:
    """A message one socket sent."""

    chat: int
    order_id: int
    text: str
    ref: str
    sender: "Sock"
    at: float  # time.monotonic(), the event loop's clock
    id: int = None  # from the first v2 socket that got it
    seq: int = None


class Sock:
    """One chat socket: counts every chat_message it receives."""

    def __init__(self, soak, chat, slot, url, v2, email, employee):
        self.soak, self.chat, self.slot, self.url = soak, chat, slot, url
        self.v2, self.email, self.employee = v2, email, employee
        self.received = collections.Counter()  # v2: message id -> times; v1: text -> times
        self.closing = False
        self.ready = asyncio.Event()

    def __str__(self):
        return f"chat {self.chat} socket {self.slot} ({'employee' if self.employee else 'customer'} v{1 + self.v2})"

    async def open(self):
        kwargs = dict(open_timeout=30, ping_interval=None, compression=None, max_size=2**22, close_timeout=5)
        self.ws = await connect(self.url, subprotocols=[V2] if self.v2 else None, **kwargs)
        if self.v2 and self.ws.subprotocol != V2:
            raise RuntimeError(f"{self}: the server did not accept {V2}")
        self.reader = asyncio.create_task(self.read())
        if self.v2:  # ready, then the latest history page: the socket is set up
            async with asyncio.timeout(30):
                await self.ready.wait()
        self.beater = asyncio.create_task(self.beat(random.uniform(0, HEARTBEAT_SECONDS)))

    async def beat(self, first):
        """A heartbeat every 10 s exactly (on a fixed schedule, so it never
        drifts below that rate), the first after `first` seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time() + first
        for k in range(10**9):
            await asyncio.sleep(max(0.0, start + k * HEARTBEAT_SECONDS - loop.time()))
            try:
                await self.ws.send(HEARTBEAT)
            except ConnectionClosed:
                return  # reported by read()
            self.soak.heartbeats += 1

    async def read(self):
        try:
            async for frame in self.ws:
                now = time.monotonic()
                event = json.loads(frame)
                kind = event.get("type")
                if kind == "chat_message":
                    self.soak.delivered(self, event, now)
                elif kind == "history":
                    self.ready.set()
                elif kind == "error":
                    self.soak.error("error event", f"{self}: {event}")
        except ConnectionClosed:
            pass
        except Exception as exc:
            self.soak.error("socket", f"{self}: {type(exc).__name__}: {exc}")
        if not self.closing:
            self.soak.error("closed", f"{self}: {self.ws.close_code} {self.ws.close_reason!r}")

    async def send(self, sent):
        frame = {"type": "message", "message": sent.text}
        if self.v2:
            frame["ref"] = sent.ref
        await self.ws.send(json.dumps(frame))

    async def close(self):
        self.closing = True
        self.beater.cancel()
        await self.ws.close()
        await self.reader


class Soak:
    """One soak run: its sockets and their chats, what each received, and the checks."""

    def __init__(self, stack, args):
        self.stack, self.args = stack, args
        self.errors = collections.defaultdict(list)  # kind -> descriptions
        self.heartbeats = 0
        self.latencies = []
        self.deliveries = 0  # to sockets other than the sender
        self.sent = {}  # text -> Sent
        self.presence = PresenceWatch()
        self.progress = asyncio.Event()  # set on each delivery
        self.series = collections.defaultdict(list)  # for artifacts/soak-series.json
        self.chats = []
        base = stack.server.ws_url
        agents = stack.agents
        per_chat = args.sockets // args.chats
        for chat in range(args.chats):
            order_id, customer, _ = stack.rooms[chat]
            url = f"{base}/ws/customer-service/{order_id}/?token="
            socks = []
            employee = 0
            for slot in range(per_chat):
                if slot in (0, 2):  # the customer: the web page (v2), then the phone (v1)
                    email = f"bench-customer-{chat}@example.com"  # bench_data's
                    socks.append(Sock(self, chat, slot, url + customer, slot == 0, email, False))
                else:
                    k = (chat + employee) % len(agents)
                    email = f"bench-agent-{k}@booktime.domain" if k else "bench-agent@booktime.domain"
                    socks.append(Sock(self, chat, slot, url + agents[k], True, email, True))
                    employee += 1
            self.chats.append((order_id, socks))

    def error(self, kind, text):
        self.errors[kind].append(text)

    def delivered(self, sock, event, now):
        sent = self.sent.get(event["message"])
        if sent is None or sent.chat != sock.chat:
            self.error("foreign message", f"{sock}: {event['message'][:60]!r}")
            return
        if sock.v2:
            if sent.id is None:
                sent.id, sent.seq = event["id"], event["seq"]
            elif (sent.id, sent.seq) != (event["id"], event["seq"]):
                self.error(
                    "id/seq", f"{sock}: {sent.text!r} as {event['id']}/{event['seq']}, else {sent.id}/{sent.seq}"
                )
            sock.received[event["id"]] += 1
            if sock is sent.sender and event.get("ref") != sent.ref:
                self.error("ref", f"{sock}: own message {sent.text!r} came back with ref {event.get('ref')!r}")
        else:
            sock.received[sent.text] += 1
        times = sock.received[event["id"] if sock.v2 else sent.text]
        if times > 1:
            late = now - sent.at
            self.error(
                "duplicated", f"{sock}: {sent.text!r} (id {event.get('id')}) again, {late:.1f} s after it was sent"
            )
        self.progress.set()
        if sock is not sent.sender:
            self.deliveries += 1
            self.latencies.append(now - sent.at)
            self.series["latency"].append((sent.at, now - sent.at))

    async def chatting(self, chat, stop_at, opened):
        """A message every `interval` s, customer and employee alternating
        (each side's sockets in turn: the customer's page, then phone)."""
        order_id, socks = self.chats[chat]
        socks = [s for s in socks if s in opened]
        sides = [s for s in socks if not s.employee], [s for s in socks if s.employee]
        if not all(sides):
            return
        loop = asyncio.get_running_loop()
        start = loop.time() + random.uniform(0, self.args.interval)
        k = 0
        while start + k * self.args.interval < stop_at:
            await asyncio.sleep(max(0.0, start + k * self.args.interval - loop.time()))
            side = sides[k % 2] or sides[0]
            sock = side[(k // 2) % len(side)]
            text = f"chat {chat} message {k} from {sock.slot}: is my order on its way? ✓"
            sent = self.sent[text] = Sent(chat, order_id, text, f"r{k}", sock, time.monotonic())
            try:
                await sock.send(sent)
            except ConnectionClosed:
                return  # reported by the socket's reader
            k += 1

    async def dashboard(self):
        url = f"{self.stack.server.url}/customer-service/notify/?format=v2"
        headers = {"Authorization": f"Token {self.stack.agents[0]}"}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=None)
        loop = asyncio.get_running_loop()
        # An event lists everyone present: far longer than aiohttp's default line.
        session = aiohttp.ClientSession(timeout=timeout, read_bufsize=2**24)
        async with session, session.get(url, headers=headers) as response:
            if response.status != 200:
                self.error("dashboard", f"HTTP {response.status}")
                return
            self.dashboard_open.set()
            async for line in response.content:
                if line.startswith(b"data: "):
                    self.presence.max_event_bytes = max(self.presence.max_event_bytes, len(line))
                    self.presence.event(json.loads(line[6:]), loop.time())
        if self.presence.judging:
            self.error("dashboard", "the stream was ended by the server")

    def others(self):
        """Seconds CPU 0 has spent on anything but the worker and its Redis."""
        ours = sum(cpu_seconds(server.process.pid) for server in (self.stack.server, self.stack.redis_server))
        return cpu_busy_seconds(SERVER_CPU) - ours

    async def sample(self, samples):
        pid = self.stack.server.process.pid
        loop = asyncio.get_running_loop()
        while True:
            samples.append((loop.time(), rss_kb(pid), cpu_seconds(pid), self.others()))
            await asyncio.sleep(RSS_SAMPLE_SECONDS)

    async def run(self):
        args, loop = self.args, asyncio.get_running_loop()
        pid = self.stack.server.process.pid
        socks = [s for _, chat in self.chats for s in chat]
        samples = []
        sampler = asyncio.create_task(self.sample(samples))
        self.dashboard_open = asyncio.Event()
        dashboard = asyncio.create_task(self.dashboard())
        is_open = asyncio.create_task(self.dashboard_open.wait())
        await asyncio.wait([dashboard, is_open], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        is_open.cancel()

        def failed(sock, error):
            self.error("connect", f"{sock}: {type(error).__name__}: {error}")

        cpu0, t0 = cpu_seconds(pid), loop.time()
        opened = set(await open_all(socks, args.connect_at_once, failed))
        t1, cpu1 = loop.time(), cpu_seconds(pid)
        self.figure("connect", f"{len(opened)} of {len(socks)} sockets in {t1 - t0:.1f} s")
        cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
        self.figure("connect", f"{len(opened) / (t1 - t0):.0f} sockets/s, server CPU {cpu:.0f}% of one core")

        end, warm_end = t1 + args.duration, t1 + args.warmup
        chatting = random.sample(range(args.chats), round(args.chatting * args.chats))
        talkers = [asyncio.create_task(self.chatting(c, end, opened)) for c in chatting]
        await asyncio.sleep(max(0.0, warm_end - loop.time()))
        steady = (loop.time(), cpu_seconds(pid), self.heartbeats, len(self.sent), self.deliveries, self.others())
        await asyncio.sleep(max(0.0, end - loop.time()))
        finish = (loop.time(), cpu_seconds(pid), self.heartbeats, len(self.sent), self.deliveries, self.others())
        redis_conns = tcp_to(self.stack.redis_port, pid)
        redis_clients = self.stack.redis.info("clients")["connected_clients"]
        await asyncio.gather(*talkers)
        await self.drain(opened)
        # Every socket's first heartbeat went out by `end`; the last of them
        # reach the dashboard a moment later (presence gathers heartbeats).
        members = {(order_id, s.email) for order_id, socks in self.chats for s in socks}
        await self.presence.until_listed(members, LISTED_SECONDS)
        self.presence.judging = False
        present_at_end = dict(self.presence.last)
        sampler.cancel()
        for sock in opened:
            sock.closing = True
        await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
        dashboard.cancel()
        await asyncio.gather(dashboard, return_exceptions=True)

        wall = finish[0] - steady[0]
        self.figure("server CPU", f"{100 * (finish[1] - steady[1]) / wall:.0f}% of one core after warm-up")
        others = (finish[5] - steady[5]) / wall
        self.figure("server CPU", f"other work on CPU 0: {100 * others:.0f}% of the core after warm-up")
        if others > CONTENDED_SHARE:
            print(f"# WARNING: other work took {100 * others:.0f}% of CPU 0, the worker's: figures not clean")
        self.figure("redis", f"{redis_conns} connections from the worker, {redis_clients} clients in Redis")
        self.figure("heartbeats", f"{(finish[2] - steady[2]) / wall:.0f}/s after warm-up ({self.heartbeats} sent)")
        rate = (finish[3] - steady[3]) / wall
        self.figure("messages", f"{len(self.sent)} sent in {len(chatting)} chats ({rate:.1f}/s after warm-up)")
        self.figure("messages", f"{self.deliveries} received by the other sockets of their chats")
        phases = (("in the warm-up", t1, warm_end), ("after warm-up", warm_end, end))
        for label, start, stop in phases:
            latencies = [latency for at, latency in self.series["latency"] if start <= at < stop]
            p50, p99 = (1000 * percentile(latencies, q) for q in (0.5, 0.99))
            top = 1000 * max(latencies or [float("nan")])
            self.figure("latency", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms {label}")
        self.check_messages(opened)
        phases = (("in the connect storm", t0, t1),) + phases
        for problem in self.presence.report(members, present_at_end, phases, self.figure):
            self.error("presence", problem)
        self.report_memory(samples, warm_end)
        self.save_series(t0, t1, warm_end, end, samples)
        return opened

    def save_series(self, t0, t1, warm_end, end, samples):
        """The run over time, for a closer look: seconds from the first connect."""
        series = {
            "connected": t1 - t0,
            "warm_end": warm_end - t0,
            "end": end - t0,
            "rss_kb": [(t - t0, rss) for t, rss, _, _ in samples],
            "cpu_seconds": [(t - t0, cpu) for t, _, cpu, _ in samples],
            "cpu0_others_seconds": [(t - t0, others) for t, _, _, others in samples],
            "latency": [(at - t0, latency) for at, latency in self.series["latency"]],
            "flaps": [(t - t0, who, kind) for t, who, kind in self.presence.flaps],
        }
        path = ROOT / "artifacts" / "soak-series.json"
        path.write_text(json.dumps(series))
        self.figure("series", f"{path.relative_to(ROOT)}")

    async def drain(self, opened):
        """Wait until every socket has every message of its chat (or the timeout)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_SECONDS
        while loop.time() < deadline and self.missing(opened):
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), deadline - loop.time())

    def missing(self, opened):
        return sum(1 for s in self.sent.values() for k in self.keys(s, opened) if k[0].received[k[1]] == 0)

    def keys(self, sent, opened):
        """(socket, key) for every open socket in the message's chat."""
        for sock in self.chats[sent.chat][1]:
            if sock in opened:
                yield sock, (sent.id if sock.v2 else sent.text)

    def check_messages(self, opened):
        """Every socket got every message of its chat exactly once, and the
        database holds exactly what was sent."""
        by_id = {s.id: s for s in self.sent.values() if s.id is not None}
        lost = duplicated = unconfirmed = 0
        for sent in self.sent.values():
            if sent.id is None and any(s.v2 for s in self.chats[sent.chat][1]):
                unconfirmed += 1
                self.error("unconfirmed", f"{sent.sender}: {sent.text!r} reached no v2 socket of its chat")
            for sock, key in self.keys(sent, opened):
                times = sock.received[key]
                if times == 0:
                    lost += 1
                    self.error("lost", f"{sock}: never got {sent.text!r}")
                elif times > 1:
                    duplicated += times - 1
                    self.error("duplicated", f"{sock}: got {sent.text!r} {times} times in all")
        for sock in opened:  # v2: nothing else either (v1 is by text, checked when received)
            extra = [k for k in sock.received if sock.v2 and k not in by_id]
            if extra:
                self.error("foreign message", f"{sock}: ids nobody sent here: {extra[:5]}")
        order_ids = [order_id for order_id, _ in self.chats]
        rows = self.stack.sql(
            "SELECT order_id, id, seq, text FROM main_chatmessage WHERE id > %s AND order_id = ANY(%s)",
            (self.first_id, order_ids),
        )
        stored = collections.defaultdict(list)
        for order_id, msg_id, seq, text in rows:
            stored[order_id].append((msg_id, seq, text))
            sent = by_id.get(msg_id)
            if sent is None or (sent.order_id, sent.seq, sent.text) != (order_id, seq, text):
                self.error("database", f"message {msg_id} (order {order_id}, seq {seq}) {text!r} is not what was sent")
        expected = collections.Counter(s.order_id for s in self.sent.values())
        for order_id in order_ids:
            seqs = sorted(seq for _, seq, _ in stored[order_id])
            if len(seqs) != expected[order_id] or seqs != list(range(seqs[0], seqs[0] + len(seqs)) if seqs else []):
                found = f"{len(seqs)} messages (seqs {seqs[:10]})"
                self.error("database", f"order {order_id} has {found}, {expected[order_id]} sent")
        self.figure("messages", f"{len(rows)} ChatMessage rows for {len(self.sent)} sent")
        deliveries = sum(1 for s in self.sent.values() for _ in self.keys(s, opened))
        counts = f"{lost} lost, {duplicated} duplicated, {unconfirmed} unconfirmed"
        self.figure("check", f"{counts} of {deliveries} deliveries (every socket of the chat, the sender too)")

    def report_memory(self, samples, warm_end):
        after = [(t, rss) for t, rss, _, _ in samples if t >= warm_end]
        if len(after) < 2:
            self.error("memory", "too few RSS samples after warm-up")
            return
        first, last = after[0][1] / 1024, after[-1][1] / 1024
        peak = max(rss for _, rss, _, _ in samples) / 1024
        window = after[-1][0] - after[0][0]
        slope = 60 * slope_per_second(after) / 1024
        self.figure(
            "memory",
            f"RSS {first:.1f} MB at warm-up end, {last:.1f} MB at the end, max {peak:.1f} MB; "
            f"slope {slope:+.2f} MB/min over {window:.0f} s (tolerance {RSS_SLOPE_TOLERANCE_MB:.1f} MB/min)",
        )
        if window < RSS_JUDGED_AFTER:
            self.figure("memory", f"not judged: under {RSS_JUDGED_AFTER:.0f} s after warm-up")
        elif slope > RSS_SLOPE_TOLERANCE_MB:
            self.error("memory", f"RSS grows {slope:.2f} MB/min after warm-up")

    def figure(self, what, text):
        print(f"{what}: {text}", flush=True)


def slope_per_second(points):
    """Least-squares slope of (t, y) points."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / var if var else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 20 s, 200 sockets in 50 chats")
    parser.add_argument("--sockets", type=int, help="chat sockets in all (default 2000)")
    parser.add_argument("--chats", type=int, help="order chats (default 500); sockets per chat = sockets / chats")
    parser.add_argument("--duration", type=float, help="seconds held after the connect storm (default 180)")
    parser.add_argument("--warmup", type=float, help="seconds of it before the steady window (default 60)")
    parser.add_argument("--chatting", type=float, default=0.2, help="share of the chats chatting (default 0.2)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between a chatting chat's messages")
    parser.add_argument("--connect-at-once", type=int, default=CONNECT_AT_ONCE, help="handshakes in flight")
    args = parser.parse_args()
    defaults = (200, 50, 10.0, 3.0) if args.quick else (2000, 500, 180.0, 60.0)
    for name, value in zip(("sockets", "chats", "duration", "warmup"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, value)
    per_chat = args.sockets // args.chats
    if per_chat < 2 or args.sockets % args.chats:
        parser.error("--sockets must be a multiple of --chats, at least 2 per chat")
    employees_per_chat = len([s for s in range(per_chat) if s not in (0, 2)])
    agents = max(employees_per_chat, args.chats // 25, 1)

    pinned(LOADGEN_CPU)()
    started = time.monotonic()
    stack = SoakStack(args.chats, agents)
    try:
        print(
            f"soak: {args.sockets} sockets in {args.chats} chats ({per_chat} each: the customer on v2 and on v1, "
            f"{employees_per_chat} employee(s) on v2; {agents} employees in all), one worker, "
            f"{args.duration:.0f} s (warm-up {args.warmup:.0f} s), {round(args.chatting * args.chats)} chats chatting "
            f"every {args.interval:g} s, heartbeats every {HEARTBEAT_SECONDS:g} s; set up in "
            f"{time.monotonic() - started:.1f} s",
            flush=True,
        )
        soak = Soak(stack, args)
        soak.first_id = stack.sql("SELECT coalesce(max(id), 0) FROM main_chatmessage")[0][0]
        asyncio.run(soak.run())
        time.sleep(1.0)  # the server's disconnects logged
        for entry in stack.new_problems(stack.server, LOG_PROBLEMS):
            soak.error("server log", f"{stack.server.log_path.name}: {entry.strip().splitlines()[0]}")
    finally:
        stack.stop()
    if soak.errors:
        path = ROOT / "artifacts" / "soak-problems.txt"
        path.write_text("".join(f"{kind}: {text}\n" for kind, texts in soak.errors.items() for text in texts))
        print(f"FAIL: {sum(map(len, soak.errors.values()))} problems (all in {path.relative_to(ROOT)})", flush=True)
        for kind, texts in soak.errors.items():
            print(f"  {kind}: {len(texts)}, e.g. " + " | ".join(texts[:3]), flush=True)
        sys.exit(1)
    print("PASS", flush=True)


if __name__ == "__main__":
    main()
