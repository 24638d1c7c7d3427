"""Rows 4 and 5, presence: what a dashboard refresh costs Redis (measured
in a child process, bench.presence_cost) and what one arrival costs with
several dashboards open (row 4), and the heartbeats one P worker absorbs
(row 5), with the client side of each (`dashboards`, `heartbeats`)."""

import asyncio
import json
import subprocess
import sys
import time

import aiohttp

from harness.servers import ROOT
from main.presence import redis_store, scripts

from . import loadgen
from .machine import cpu_seconds
from .stack import PRESENCE_KEY_PREFIX, SQL_READ_OVERHEAD

SHOWN_WITHIN = 10.0  # seconds for every dashboard to show an arrival


def presence_cost(stack, report, present, unrelated, refreshes):
    """Row 4, in a child process on Redis database 1 (nothing else uses it).
    B is the chapter's `KEYS customer-service_*` and parse."""
    env = dict(stack.env, REDIS_URL=f"redis://127.0.0.1:{stack.redis_port}/1")
    args = [sys.executable, "-m", "bench.presence_cost", "--present", ",".join(map(str, present))]
    args += ["--unrelated", ",".join(map(str, unrelated)), "--refreshes", str(refreshes)]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"FAIL bench.presence_cost exited {done.returncode}:\n{done.stderr[-3000:]}")
    for case in map(json.loads, done.stdout.splitlines()):
        keys = f"{case['present']} present, {case['unrelated']} unrelated keys"
        refresh, first = f"4. dashboard refresh, {keys}", f"4. a worker's first read (everyone), {keys}"
        figures = {"P": case["ours_redis_us"], "B": case["keys_redis_us"]}
        report.row(f"{refresh}: Redis time (B: KEYS)", figures, "us", "lower")
        figures = {"P": case["ours_wall_ms"], "B": case["keys_wall_ms"]}
        report.row(f"{refresh}: wall time (B: KEYS)", figures, "ms", "lower")
        figures = {"P": case["first_redis_us"], "B": case["keys_redis_us"]}
        report.row(f"{first}: Redis time (B: KEYS)", figures, "us", "lower")


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


def open_dashboards(stack, report, counts, arrivals):
    """Row 4, dashboards: what one arrival costs with K dashboards open on P
    (Redis presence reads, SQL statements). Target: reads not growing with K."""
    target, server = stack.targets["P"]
    url = f"{server.url}/customer-service/notify/?format=v2"
    headers = {"Authorization": f"Token {stack.rooms[0][2]}"}  # the bench agent, an employee

    def arrive(n):
        # Through the heartbeat's own script (present for 60 s): one more script call per arrival.
        order_id = stack.rooms[n % len(stack.rooms)][0]
        heartbeat = redis_store.touch_item(order_id, f"arrival-{n}@example.com", False)
        [(keys, args)] = redis_store.touch_calls([heartbeat], seconds=60, prefix=PRESENCE_KEY_PREFIX)
        stack.redis.eval(scripts.TOUCH, len(keys), *keys, *args)

    for count in counts:
        seen = {}

        def probe(stage, seen=seen):
            seen[stage] = (stack.redis_commands()[1], stack.sql_stats()[0])

        stack.redis.delete(*redis_store.keys(PRESENCE_KEY_PREFIX)[:3])
        dropped = asyncio.run(dashboards(url, headers, count, arrivals, arrive, probe))
        stack.redis.delete(*redis_store.keys(PRESENCE_KEY_PREFIX)[:3])
        # Like the storms, a stream the server ends for an exhausted Redis
        # pool is a figure, not a stop; any other problem in the log stops.
        pool_errors = stack.check_logs(tolerate="MaxConnectionsError").get("P", 0)
        label = f"4. one arrival, {count} dashboards open"
        report.row(f"{label}: streams dropped", {"P": dropped}, "streams", "lower (0)")
        if dropped or pool_errors:
            report.note(f"WARNING: {dropped} of {count} dashboards dropped, {pool_errors} Redis pool errors in P's log")
        reads = (seen["after"][0] - seen["before"][0] - arrivals) / arrivals  # less the arrivals' own
        sql = (seen["after"][1] - seen["before"][1] - SQL_READ_OVERHEAD[0]) / arrivals
        report.row(f"{label}: Redis presence reads", {"P": reads}, "reads", "flat in K")
        report.row(f"{label}: SQL statements", {"P": sql}, "queries", "flat in K")


async def heartbeats(target, sockets, rate, seconds, probe):
    """`rate` heartbeats/s in total over `sockets` sockets, for `seconds`;
    `probe(stage)` before and after. Answers (heartbeats sent, seconds)."""
    result = loadgen.Result()
    clients = [
        loadgen.Client(target, (i // 2) % len(target.rooms), i % 2, result, heartbeat=False) for i in range(sockets)
    ]
    await asyncio.gather(*(c.open() for c in clients))
    await asyncio.sleep(0.5)
    probe("before")
    total = int(rate * seconds)
    start = time.perf_counter()
    async for k in loadgen.paced(rate, total):
        await clients[k % len(clients)].ws.send(loadgen.HEARTBEAT)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)  # the last ones absorbed
    probe("after")
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    if result.errors:
        raise SystemExit(f"FAIL heartbeats: {result.errors[:3]}")
    return total, elapsed


def heartbeat_cost(stack, report, sockets, rate, seconds):
    """Row 5: heartbeats one P worker absorbs, and what each costs."""
    target, server = stack.targets["P"]
    pid = server.process.pid
    seen = {}

    def probe(stage):
        seen[stage] = (cpu_seconds(pid), *stack.redis_commands(), stack.sql_stats()[0], stack.redis_cpu())

    sent, elapsed = asyncio.run(heartbeats(target, sockets, rate, seconds, probe))
    cpu, commands, _, touches, sql, redis_cpu = (a - b for a, b in zip(seen["after"], seen["before"], strict=True))
    sql -= SQL_READ_OVERHEAD[0]
    if touches < sent:
        report.note(f"heartbeats: {sent} sent, {touches} reached Redis")
    # Per heartbeat sent: the worker handles each; Redis renews each member
    # with one ZSCORE and ZADD (in one script call per batch of heartbeats).
    label = f"5. {rate} heartbeats/s offered"
    report.row(f"{label}: absorbed", {"P": touches / elapsed}, "beats/s", "higher")
    report.row(f"{label}: server CPU per heartbeat", {"P": 1e6 * cpu / max(sent, 1)}, "us", "lower")
    report.row(f"{label}: Redis commands per heartbeat", {"P": commands / max(sent, 1)}, "cmds", "lower")
    report.row(f"{label}: Redis CPU per heartbeat", {"P": 1e6 * redis_cpu / max(sent, 1)}, "us", "lower")
    report.row(f"{label}: SQL queries per heartbeat", {"P": sql / max(sent, 1)}, "queries", "lower (0)")
