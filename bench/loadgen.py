"""Load generation against a chat server: open-loop (fixed rate) and
closed-loop (ping-pong) message patterns between two clients per room,
counting latency, loss and duplicates exactly."""

import asyncio
import json
import random
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

HEARTBEAT = json.dumps({"type": "heartbeat"})


@dataclass
class Target:
    """How to talk to one server: its URLs and message framing."""

    name: str
    base: str  # ws://127.0.0.1:port
    kind: str  # "product" | "tutorial" | "relay"
    rooms: list = field(default_factory=list)  # product: [(order_id, customer_token, agent_token)]

    def url(self, room, role):
        if self.kind == "product":
            order_id, customer, agent = self.rooms[room]
            return f"{self.base}/ws/customer-service/{order_id}/?token={customer if role == 0 else agent}"
        if self.kind == "tutorial":
            return f"{self.base}/ws/chat/room{room}/"
        return f"{self.base}/room{room}/"

    def encode(self, text):
        if self.kind == "product":
            return json.dumps({"type": "message", "message": text})
        if self.kind == "tutorial":
            return json.dumps({"message": text})
        return text

    def decode(self, frame):
        """The chat text a server frame carries, or None for other events."""
        if self.kind == "relay":
            return frame
        event = json.loads(frame)
        if self.kind == "product":
            return event["message"] if event.get("type") == "chat_message" else None
        return event["message"]


def percentile(values, q):
    """The q-quantile (0..1) of `values`, NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    sent: int = 0
    latencies: list = field(default_factory=list)  # seconds, one per delivery to the peer
    lost: int = 0
    duplicated: int = 0
    errors: list = field(default_factory=list)
    metered: list = field(default_factory=list)  # open_loop's meter, its readings' differences
    elapsed: float = 0.0

    def percentile(self, q):
        return percentile(self.latencies, q)


class Client:
    """One socket: records what it receives from its room's other member."""

    def __init__(self, target, room, role, result, heartbeat):
        self.target, self.room, self.role, self.result = target, room, role, result
        self.heartbeat = heartbeat and target.kind == "product"
        self.seen = set()
        self.expected = set()  # ids the peer sent
        self.on_message = None  # closed loop: called with each id from the peer
        # Each client's beats are 10 s apart from a random start, so a crowd
        # opened at once does not beat in lockstep.
        self.first_beat = random.uniform(0, 10)

    async def open(self):
        self.ws = await connect(
            self.target.url(self.room, self.role), open_timeout=30, max_size=2**20, ping_interval=None, compression=None
        )
        self.reader = asyncio.create_task(self.read())
        if self.heartbeat:
            self.beater = asyncio.create_task(self.beat())

    async def beat(self):
        await asyncio.sleep(self.first_beat)
        while True:
            await self.ws.send(HEARTBEAT)
            await asyncio.sleep(10)

    async def read(self):
        try:
            async for frame in self.ws:
                text = self.target.decode(frame)
                if text is None:
                    continue
                msg_id, sender, sent_at = text.split(" ")
                if int(sender) == self.role:
                    continue  # our own message, echoed to the whole room
                if msg_id in self.seen:
                    self.result.duplicated += 1
                    continue
                self.seen.add(msg_id)
                self.result.latencies.append(time.perf_counter() - float(sent_at))
                if self.on_message:
                    self.on_message(msg_id)
        except Exception as exc:  # a dropped socket is a result, not a crash
            self.result.errors.append(f"{type(exc).__name__}: {exc}")

    async def send(self, msg_id):
        await self.ws.send(self.target.encode(f"{msg_id} {self.role} {time.perf_counter()!r}"))
        self.result.sent += 1

    async def close(self):
        if self.heartbeat:
            self.beater.cancel()
        await self.ws.close()
        self.reader.cancel()


async def open_all(clients, at_once, failed=None):
    """Open every client (anything with an async open()), `at_once` handshakes
    at a time; the ones that opened, in order. Without `failed(client,
    error)`, a failure raises."""
    gate = asyncio.Semaphore(at_once)
    opened = []

    async def open_one(client):
        async with gate:
            try:
                await client.open()
            except Exception as error:
                if failed is None:
                    raise
                failed(client, error)
            else:
                opened.append(client)

    await asyncio.gather(*(open_one(client) for client in clients))
    return opened


async def open_rooms(target, rooms, result, heartbeat=True, connect_concurrency=50):
    pairs = [(Client(target, r, 0, result, heartbeat), Client(target, r, 1, result, heartbeat)) for r in range(rooms)]
    await open_all([c for pair in pairs for c in pair], connect_concurrency)
    return pairs


async def drain(pairs, result, within):
    """Wait until every sent message reached its peer, or the timeout."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(c.expected <= c.seen for pair in pairs for c in pair):
            break
        await asyncio.sleep(0.05)
    result.lost = sum(len(c.expected - c.seen) for pair in pairs for c in pair)


async def paced(rate, total):
    """Yield 0 .. total-1, the k-th at k/rate seconds from the start (open loop)."""
    start = time.perf_counter()
    for k in range(total):
        delay = start + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield k


async def open_loop(target, rooms, rate, seconds, drain_timeout=5.0, meter=None):
    """`rate` messages/s in total, spread over the rooms, alternating sender.
    `meter`, if given, is read as the messages start and once they are
    delivered: its two readings leave out what opening and closing the
    sockets cost."""
    result = Result()
    pairs = await open_rooms(target, rooms, result)
    await asyncio.sleep(0.5)  # let join events pass
    first = meter() if meter else None
    start = time.perf_counter()
    async for k in paced(rate, int(rate * seconds)):
        pair = pairs[k % rooms]
        sender = (k // rooms) % 2
        msg_id = f"{k}"
        pair[1 - sender].expected.add(msg_id)
        await pair[sender].send(msg_id)
    result.elapsed = time.perf_counter() - start
    await drain(pairs, result, drain_timeout)
    if meter:  # once the last messages are delivered: their work counts, and the reading delays none
        result.metered = [after - before for before, after in zip(first, meter(), strict=True)]
    await asyncio.gather(*(c.close() for pair in pairs for c in pair), return_exceptions=True)
    return result


async def closed_loop(target, rooms, seconds, drain_timeout=5.0):
    """Each room plays ping-pong: a message is answered as soon as it
    arrives, so `rooms` messages are in flight at any time."""
    result = Result()
    pairs = await open_rooms(target, rooms, result)
    await asyncio.sleep(0.5)
    counter = iter(range(10**9))
    stop_at = time.perf_counter() + seconds
    pending = set()

    def replier(pair, role):
        def on_message(_):
            if time.perf_counter() < stop_at:
                msg_id = f"{next(counter)}"
                pair[1 - role].expected.add(msg_id)
                task = asyncio.create_task(pair[role].send(msg_id))
                pending.add(task)
                task.add_done_callback(pending.discard)

        return on_message

    start = time.perf_counter()
    for pair in pairs:
        pair[0].on_message = replier(pair, 0)
        pair[1].on_message = replier(pair, 1)
        msg_id = f"{next(counter)}"
        pair[1].expected.add(msg_id)
        await pair[0].send(msg_id)
    await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
    result.elapsed = time.perf_counter() - start
    await drain(pairs, result, drain_timeout)
    await asyncio.gather(*(c.close() for pair in pairs for c in pair), return_exceptions=True)
    return result
