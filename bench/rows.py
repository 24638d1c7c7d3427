"""Rows 3, 5, 6 and 7 of the bench: load patterns for idle sockets,
heartbeats, the REST API and the tracker proxy. The harness (bench.run)
measures the servers from outside around them."""

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from .loadgen import HEARTBEAT, Client, Result, paced, percentile


async def hold(target, count, idle_seconds, probe, heartbeat=True):
    """Open `count` sockets at once (a storm), keep them idle with a heartbeat
    every 10 s (first beats spread over 10 s), then close them. `probe(stage)`
    is called before the storm, after it, and after the idle window."""
    result = Result()
    rooms = max(1, len(target.rooms)) if target.kind == "product" else count
    clients = [Client(target, (i // 2) % rooms, i % 2, result, heartbeat) for i in range(count)]
    gate = asyncio.Semaphore(100)
    opened = []

    async def open_one(client):
        async with gate:
            try:
                await client.open()
                opened.append(client)
            except Exception as exc:
                result.errors.append(f"{type(exc).__name__}: {exc}")

    probe("before")
    start = time.perf_counter()
    await asyncio.gather(*(open_one(c) for c in clients))
    result.elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)  # join events and first group writes settle
    probe("open")
    await asyncio.sleep(idle_seconds)
    probe("idle")
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
    await asyncio.sleep(0.5)  # the server's disconnects run after the close handshakes
    return result


async def heartbeats(target, sockets, rate, seconds, probe):
    """`rate` heartbeats/s in total over `sockets` sockets, for `seconds`;
    `probe(stage)` before and after. Answers (heartbeats sent, seconds)."""
    result = Result()
    clients = [Client(target, (i // 2) % len(target.rooms), i % 2, result, heartbeat=False) for i in range(sockets)]
    await asyncio.gather(*(c.open() for c in clients))
    await asyncio.sleep(0.5)
    probe("before")
    total = int(rate * seconds)
    start = time.perf_counter()
    async for k in paced(rate, total):
        await clients[k % len(clients)].ws.send(HEARTBEAT)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)  # the last ones absorbed
    probe("after")
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    if result.errors:
        raise SystemExit(f"FAIL heartbeats: {result.errors[:3]}")
    return total, elapsed


@dataclass
class HttpResult:
    latencies: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    elapsed: float = 0.0
    cpu: float = 0.0

    def percentile(self, q):
        return percentile(self.latencies, q)

    @property
    def rate(self):
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


async def http_load(url, seconds, concurrency=10, headers=None):
    """Closed loop of GETs on `concurrency` keep-alive connections."""
    result = HttpResult()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers or {}) as session:
        async with session.get(url) as response:  # warm: the connection pool and the server's first request
            await response.read()
        stop_at = time.perf_counter() + seconds

        async def worker():
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        if response.status != 200:
                            result.errors.append(f"HTTP {response.status}")
                            return
                except aiohttp.ClientError as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    return
                result.latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result


SHOWN_WITHIN = 10.0  # seconds for every dashboard to show an arrival


async def dashboards(url, headers, count, arrivals, arrive, probe):
    """`count` dashboards (event streams) open; `arrive(n)` makes someone new
    present `arrivals` times, each once every live dashboard showed the last.
    `probe(stage)` before the first arrival and after the last was shown.
    Answers how many streams ended early (the server gave up on them)."""
    seen = [0] * count
    changed = asyncio.Event()

    async def follow(session, k):
        try:
            async with session.get(url) as response:
                if response.status != 200:
                    raise RuntimeError(f"dashboard stream: HTTP {response.status}")
                async for line in response.content:
                    if line.startswith(b"data: "):
                        seen[k] += 1
                        changed.set()
        finally:
            changed.set()

    async def shown(wanted):
        async with asyncio.timeout(SHOWN_WITHIN):
            while any(seen[k] < wanted and not readers[k].done() for k in range(count)):
                changed.clear()
                await changed.wait()

    timeout_all = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout_all) as session:
        readers = [asyncio.create_task(follow(session, k)) for k in range(count)]
        try:
            await shown(1)  # every stream's first event
            probe("before")
            for n in range(arrivals):
                arrive(n)
                await shown(n + 2)
            probe("after")
            return sum(1 for reader in readers if reader.done())
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
