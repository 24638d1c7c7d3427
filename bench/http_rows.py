"""Rows 6 and 7, HTTP on P: the REST API's my-orders against a plain
JsonResponse view (row 6) and the tracker against the courier stand-in
called directly (row 7), each a closed loop of GETs (`http_load`) measured
from outside: requests per second and per server CPU-second, latency, SQL."""

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp

from .loadgen import percentile
from .machine import cpu_seconds, tcp_to
from .stack import SQL_READ_OVERHEAD


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


def http_measure(stack, server, url, seconds, headers=None, concurrency=10, sql_before=None):
    """A closed loop of GETs and the server's CPU; with `sql_before` (the
    statistics read just before), also the SQL statements and connections
    per request, and `sql_after`. A failed request fails the run."""
    pid = server.process.pid
    before_cpu = cpu_seconds(pid)
    result = asyncio.run(http_load(url, seconds, concurrency, headers))
    result.cpu = cpu_seconds(pid) - before_cpu
    if sql_before is not None:
        result.sql_after = stack.sql_stats()
        requests = len(result.latencies) + 1  # and the warm-up request
        result.queries, result.connections = (
            (after - before - overhead) / requests
            for after, before, overhead in zip(result.sql_after, sql_before, SQL_READ_OVERHEAD, strict=True)
        )
    if result.errors:
        raise SystemExit(f"FAIL {url}: {result.errors[:3]}")
    return result


def per_cpu(result):
    return len(result.latencies) / result.cpu if result.cpu else 0.0


def rest(stack, report, counts, seconds):
    """Row 6: my-orders (P) against the plain view (B), same token auth."""
    p_server = stack.targets["P"][1]
    sql = stack.sql_stats()
    for count in counts:
        headers = {"Authorization": f"Token {stack.orders[str(count)]}"}
        p = http_measure(stack, p_server, p_server.url + "/mobile-api/my-orders/", seconds, headers, sql_before=sql)
        url = stack.plain.url + "/bench/plain-orders/"
        b = http_measure(stack, stack.plain, url, seconds, headers, sql_before=p.sql_after)
        sql = b.sql_after
        label = f"6. REST my-orders, {count} orders"
        report.row(f"{label} (B: plain view)", {"P": p.rate, "B": b.rate}, "req/s", "higher")
        report.row(f"{label}, per server CPU-s", {"P": per_cpu(p), "B": per_cpu(b)}, "req/CPU-s", "higher")
        # Counted as transactions: each statement is one (autocommit), and
        # those Django runs on each new connection count too.
        queries = {"P": p.queries, "B": b.queries}
        report.row(f"{label}: SQL statements/request", queries, "queries", "constant")
        connections = {"P": p.connections, "B": b.connections}
        report.row(f"{label}: DB connections opened/request", connections, "conns", "lower")


def tracker(stack, report, seconds):
    """Row 7: the tracker through P (B: the stand-in courier called directly).
    P must keep its connections to the courier open, not open one a request."""
    p_server, courier = stack.targets["P"][1], stack.courier
    order_id, token, _ = stack.rooms[0]
    headers = {"Authorization": f"Token {token}"}
    time_wait_before = tcp_to(courier.port, state="06")
    url = f"{p_server.url}/mobile-api/my-orders/{order_id}/tracker/"
    p = http_measure(stack, p_server, url, seconds, headers, sql_before=stack.sql_stats())
    kept = tcp_to(courier.port, p_server.process.pid)
    closed = tcp_to(courier.port, state="06") - time_wait_before
    direct = f"{courier.url}/track/{order_id}"
    b = http_measure(stack, courier, direct, seconds)
    # One request at a time: the proxy's own latency, with no queue of
    # requests ahead of it as in the closed loop of 10.
    p_alone = http_measure(stack, p_server, url, seconds / 2, headers, concurrency=1)
    b_alone = http_measure(stack, courier, direct, seconds / 2, concurrency=1)
    report.row("7. tracker (B: courier direct)", {"P": p.rate, "B": b.rate}, "req/s", "higher")
    report.row("7. tracker, per server CPU-s", {"P": per_cpu(p)}, "req/CPU-s", "higher")
    for label, (p_result, b_result) in {"10 at a time": (p, b), "one at a time": (p_alone, b_alone)}.items():
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            figures = {"P": 1000 * p_result.percentile(q), "B": 1000 * b_result.percentile(q)}
            report.row(f"7. tracker {name}, {label} (B: courier direct)", figures, "ms", "lower")
    report.row("7. tracker: SQL statements/request", {"P": p.queries}, "queries", "lower")
    report.row("7. tracker: DB connections opened/request", {"P": p.connections}, "conns", "lower")
    report.note(f"7. P's connections to the courier after {len(p.latencies)} requests: {kept} open, {closed} closed")
    if closed > 10:
        raise SystemExit(f"FAIL tracker: {closed} courier connections closed, not reused")
