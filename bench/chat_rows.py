"""Rows 1-3, chat sockets on every target: latency in an open loop (row 1),
throughput in a ramped closed loop (row 2), and what sockets held idle
after a connect storm cost a server (row 3). The message patterns are
bench.loadgen's; the idle sockets' pattern is `hold` below."""

import asyncio
import functools
import statistics
import time

from . import loadgen
from .machine import cpu_seconds, processes_cpu_seconds, rss_kb, tcp_to

P99_LIMIT = 0.25  # seconds: a rate served with a p99 past it is not sustained (row 2, the sweep)


def measure(stack, name, scenario):
    """Run one scenario against one target: the load result and the server's
    CPU. A lost or duplicated message or a failed socket fails the run."""
    target, server = stack.targets[name]
    before, redis_before = cpu_seconds(server.process.pid), stack.redis_cpu()
    pg_before = processes_cpu_seconds("postgres")
    result = asyncio.run(scenario(target))
    result.cpu = cpu_seconds(server.process.pid) - before
    result.redis_cpu = stack.redis_cpu() - redis_before
    result.pg_cpu = processes_cpu_seconds("postgres") - pg_before
    if result.lost or result.duplicated or result.errors:
        raise SystemExit(f"FAIL {name}: lost={result.lost} duplicated={result.duplicated} errors={result.errors[:3]}")
    return result


def latency(stack, report, names, cases, seconds, reps):
    """Row 1: p50 and p99 for each (rooms, total msg/s) in `cases`, the
    targets interleaved in each repetition, and what a message costs the
    server and PostgreSQL at that rate, where batches are small."""
    for rooms, rate in cases:
        runs = {n: [] for n in names}
        for _ in range(reps):
            for name in names:
                meter = functools.partial(server_and_postgresql_cpu, stack.targets[name][1].process.pid)
                scenario = functools.partial(loadgen.open_loop, rooms=rooms, rate=rate, seconds=seconds, meter=meter)
                runs[name].append(measure(stack, name, scenario))
        case = f"{rooms} rooms, {rate} msg/s"
        for q, label in ((0.5, "p50"), (0.99, "p99")):
            figures = {n: 1000 * statistics.median(r.percentile(q) for r in runs[n]) for n in names}
            report.row(f"1. latency {label}, {case}", figures, "ms", "lower")
        # The CPU of the messages alone: the sockets' opening and closing are left out.
        server = {n: statistics.median(per_message(r, r.metered[0]) for r in runs[n]) for n in names}
        report.row(f"1. server CPU per message, {case}", server, "us", "lower")
        if "P" in runs:
            pg = statistics.median(per_message(r, r.metered[1]) for r in runs["P"])
            report.row(f"1. PostgreSQL CPU per message, {case}", {"P": pg}, "us", "lower")


def server_and_postgresql_cpu(pid):
    """CPU seconds used so far by a server's process and by PostgreSQL's."""
    return cpu_seconds(pid), processes_cpu_seconds("postgres")


def per_message(result, cpu_seconds):
    """CPU seconds spent over a run, in µs per message delivered."""
    return 1e6 * cpu_seconds / max(len(result.latencies), 1)


def throughput(stack, report, names, ramp, seconds, reps):
    """Row 2: each target's best closed-loop rate over the rooms in `ramp`
    with a p99 under P99_LIMIT, and its messages per server CPU-second."""
    # sustained msg/s, msg per server CPU-second, Redis and PostgreSQL CPU per msg
    best = {n: (0.0, 0.0, 0.0, 0.0) for n in names}
    for name in names:
        for rooms in ramp:
            scenario = functools.partial(loadgen.closed_loop, rooms=rooms, seconds=seconds)
            results = [measure(stack, name, scenario) for _ in range(reps)]
            rate = statistics.median(len(r.latencies) / r.elapsed for r in results)
            per_cpu = statistics.median(len(r.latencies) / r.cpu if r.cpu else 0.0 for r in results)
            redis_cpu = statistics.median(per_message(r, r.redis_cpu) for r in results)
            pg_cpu = statistics.median(per_message(r, r.pg_cpu) for r in results)
            if statistics.median(r.percentile(0.99) for r in results) > P99_LIMIT:
                break
            if rate > best[name][0]:
                best[name] = (rate, per_cpu, redis_cpu, pg_cpu)
    report.row("2. throughput, closed loop (p99 < 250 ms)", {n: best[n][0] for n in names}, "msg/s", "higher")
    report.row("2. throughput per server CPU-second", {n: best[n][1] for n in names}, "msg/CPU-s", "higher")
    redis = {n: best[n][2] for n in names if n != "U"}  # U has no Redis
    report.row("2. Redis CPU per message, at that rate", redis, "us", "lower")
    report.row("2. PostgreSQL CPU per message, at that rate", {"P": best["P"][3]} if "P" in best else {}, "us", "lower")


async def hold(target, count, idle_seconds, probe, heartbeat=True):
    """Open `count` sockets at once (a storm), keep them idle with a heartbeat
    every 10 s (first beats spread over 10 s), then close them. `probe(stage)`
    is called before the storm, after it, and after the idle window."""
    result = loadgen.Result()
    rooms = max(1, len(target.rooms)) if target.kind == "product" else count
    clients = [loadgen.Client(target, (i // 2) % rooms, i % 2, result, heartbeat) for i in range(count)]

    def failed(client, error):
        result.errors.append(f"{type(error).__name__}: {error}")

    probe("before")
    start = time.perf_counter()
    opened = await loadgen.open_all(clients, 100, failed)
    result.elapsed = time.perf_counter() - start
    await asyncio.sleep(0.5)  # join events and first group writes settle
    probe("open")
    await asyncio.sleep(idle_seconds)
    probe("idle")
    await asyncio.gather(*(c.close() for c in opened), return_exceptions=True)
    await asyncio.sleep(0.5)  # the server's disconnects run after the close handshakes
    return result


def idle_sockets(stack, report, names, count, idle_seconds):
    """Row 3: `count` sockets opened in a storm, then held idle: failures,
    RSS per connection, idle CPU, Redis connections, connect rate. Redis
    pool exhaustion is a figure of this row; P's failed sockets fail the run."""
    figures = {k: {} for k in ("failures", "rss", "cpu", "redis", "rate")}
    for name in names:
        target, server = stack.targets[name]
        pid = server.process.pid
        seen = {}

        def probe(stage, pid=pid, seen=seen):
            seen[stage] = (rss_kb(pid), cpu_seconds(pid), time.perf_counter(), tcp_to(stack.redis_port, pid))

        result = asyncio.run(hold(target, count, idle_seconds, probe))
        opened = count - len(result.errors)
        figures["failures"][name] = len(result.errors)
        figures["rss"][name] = (seen["open"][0] - seen["before"][0]) / max(opened, 1)
        figures["cpu"][name] = 100 * (seen["idle"][1] - seen["open"][1]) / (seen["idle"][2] - seen["open"][2])
        figures["redis"][name] = seen["open"][3]
        figures["rate"][name] = opened / result.elapsed if result.elapsed else 0.0
        if result.errors:
            report.note(f"{name}: {len(result.errors)} of {count} sockets failed: {result.errors[:3]}")
    label = f"3. idle {count} sockets"
    report.row(f"{label}: failures", figures["failures"], "sockets", "lower")
    report.row(f"{label}: RSS per connection", figures["rss"], "KB", "lower")
    report.row(f"{label}: idle CPU", figures["cpu"], "% core", "lower")
    report.row(f"{label}: Redis connections", figures["redis"], "conns", "lower")
    report.row(f"{label}: connect rate in the storm", figures["rate"], "conn/s", "higher")
    # The storms overrun the Redis pools (redis-py raises rather than waits
    # past max_connections): counted, not a stop.
    errors = stack.check_logs(tolerate="MaxConnectionsError")
    report.row(f"{label}: Redis pool errors in the storms", {n: errors.get(n, 0) for n in names}, "errors", "lower (0)")
    if errors:
        report.note(f"WARNING: Redis pool exhausted (MaxConnectionsError) in {errors}; see bench-*.log")
    if figures["failures"].get("P"):
        raise SystemExit(f"FAIL idle connections: {figures['failures']['P']} of P's {count} sockets failed")
