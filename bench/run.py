"""The benchmark: our shipped configuration (P) against the Channels
tutorial's chat (B) and a plain `websockets` relay (U), side by side.

    .venv/bin/python -m bench.run            # full run, many minutes
    .venv/bin/python -m bench.run --quick    # about a minute: the instrument works
    .venv/bin/python -m bench.run --p-server daphne --targets P    # P on another server
    .venv/bin/python -m bench.run --p-commit async --rows 1     # P's commits not waiting for the disk

It prints the table and writes it to artifacts/bench/: results.json (every
row's figures, the sweep's points, the machine and the versions measured)
and table.md (the table under a line naming the machine, for the README).
The latency sweep's plot goes to docs/bench-latency.png on a full run and
to artifacts/bench/latency.png on a quick one.

Loopback only. It starts its own Redis (on a free port), the courier
stand-in and the servers (P, B, U, and a server with a plain JsonResponse
orders view for the REST row), pins them to CPU 0 and itself to CPU 1,
raises the open-file limit for both, interleaves the targets in each
repetition and reports medians. Rows:

1. chat latency (open loop); 2. chat throughput (closed loop, ramped);
3. idle sockets held after a connect storm (failures, RSS per connection
   from VmRSS, idle CPU, Redis connections per server, connect rate);
4. dashboard refresh cost in Redis (main.presence's live listing after one
   arrival, and a worker's first read of everyone, against the chapter's
   `KEYS customer-service_*`, in B's column) with unrelated keys around,
   and what one arrival costs with several dashboards open;
5. heartbeats one P worker absorbs, with its CPU, Redis commands (INFO
   commandstats, counting those inside scripts) and SQL per heartbeat;
6. REST my-orders against the plain view (B's column), same token auth;
7. the tracker against the courier stand-in called directly (B's column).

Last, latency against load: open-loop runs like row 1's at rising total
rates, each target's sweep stopping at its first sign of overload (p99 past
250 ms, a lost message, a failed socket, the offered rate not reached, a
problem in its server's log), plotted (bench.plot).

SQL is counted from PostgreSQL's own statistics for the bench database
(transactions: one per statement in autocommit; sessions: new connections).

Any lost or duplicated message, any connection error of P's or any
over-capacity line or traceback in a server log fails the run, except
Redis pool exhaustion (MaxConnectionsError), which rows 3 and 4 report as a
figure with a WARNING line. P runs with the chat's per-socket rate limit
raised (BENCH_LIMITS): the closed loop answers far faster than a person.
"""

import argparse
import asyncio
import functools
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import psycopg.sql
import redis

from . import loadgen, rows
from .report import ARTIFACTS, HEADER, Report, describe_machine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from main import presence  # noqa: E402
from main.tests.servers import Server, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOADGEN_CPU = 0, 1
# The chat's per-socket rate limit (5 at once, then 1/s) is an abuse guard
# for people typing; the bench's clients answer each message the moment it
# arrives, far past it, and a v1 socket's refused frame is dropped silently
# (a "lost" message). P runs with the limit out of the way.
# PostgreSQL (15+) publishes a backend's statement counts when it commits at
# least 1 s after its last report, or else once it has been idle for 10 s: a
# pooled connection's burst (the handshakes of a storm, a dashboard's read)
# showed up in the next measurement's window. Each reading waits that long.
SQL_SETTLE = 11.0  # seconds
QUICK_SQL_SETTLE = 0.5  # the quick mode's SQL counts may include late reports: not results
BENCH_LIMITS = {"CHAT_RATE_BURST": "1000000", "CHAT_RATE_PER_SECOND": "1000000"}
PLOT = ROOT / "docs" / "bench-latency.png"  # a full run's; a quick run's stays in ARTIFACTS
SERVE = [sys.executable, "-m", "booktime.serve", "-b", "127.0.0.1", "-v", "0"]  # the shipped worker, B's too
# The servers P can run on, each given its port last: the shipped worker, and
# daphne for comparison (bench.daphne_server; B and U stay as they are).
SHIPPED_SERVER = "uvicorn"
P_SERVERS = {
    SHIPPED_SERVER: SERVE + ["booktime.asgi:application", "-p"],
    "daphne": [sys.executable, "-m", "bench.daphne_server", "--port"],
}
# How P's PostgreSQL commits are made: the shipped durable ones, or, to tell
# the application's latency from the storage's (`--p-commit async`, never
# shipped), commits that do not wait for the WAL to reach the disk. libpq
# reads PGOPTIONS, so every connection of P's (the chat writer's included)
# gets it; a PostgreSQL crash may then lose the last acknowledged messages.
P_COMMITS = {"durable": {}, "async": {"PGOPTIONS": "-c synchronous_commit=off"}}
report = Report()


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pinned(cpu):
    def pin():
        raise_file_limit()
        if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:
            os.sched_setaffinity(0, {cpu})

    return pin


def raise_file_limit(wanted=65536):
    """As many open files as the hard limit allows (up to `wanted`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tcp_to(port, pid=None, state="01"):
    """TCP connections (IPv4/6) to 127.0.0.1:`port` in `state` (01
    established, 06 time-wait), of process `pid` only when given."""
    inodes = None
    if pid is not None:
        inodes = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            to_port = int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == state
            if to_port and (inodes is None or fields[9] in inodes):
                count += 1
    return count


def redis_args(port):
    """A throwaway redis-server on loopback that keeps nothing on disk."""
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def server_env(database_url, redis_url, secret):
    """The servers' environment: the shipped settings in production mode, on loopback."""
    return dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="booktime.settings",
        DEBUG="0",
        SECRET_KEY=secret,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )


class Stack:
    """Redis, a bench database, and the three servers."""

    def __init__(self, rooms, orders, sql_settle=SQL_SETTLE, p_server=SHIPPED_SERVER, p_commit="durable"):
        self.procs = []
        self.sql_settle = sql_settle
        redis_port = self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.start(redis_args(redis_port), redis_port, "redis")
        self.database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/booktime_bench")
        self.env = server_env(self.database_url, self.redis_url, "bench-only")
        self.redis = redis.Redis(port=redis_port)
        self.prepare_database(rooms, orders)
        self.courier_port = free_port()
        self.start(
            [sys.executable, "-m", "main.courier_standin", "--port", str(self.courier_port)],
            self.courier_port,
            "courier",
        )
        self.env.update(BENCH_LIMITS, COURIER_API_URL=f"http://127.0.0.1:{self.courier_port}/")
        port = free_port()
        self.targets = {
            "B": (
                loadgen.Target("B", f"ws://127.0.0.1:{port}", "tutorial"),
                self.start(SERVE + ["-p", str(port), "bench.baseline_asgi:application"], port, "B"),
            )
        }
        port = free_port()
        self.targets["U"] = (
            loadgen.Target("U", f"ws://127.0.0.1:{port}", "relay"),
            self.start([sys.executable, "-m", "bench.relay", "--port", str(port)], port, "U"),
        )
        port = free_port()
        self.targets["P"] = (
            loadgen.Target("P", f"ws://127.0.0.1:{port}", "product", rooms=self.rooms),
            self.start(P_SERVERS[p_server] + [str(port)], port, "P", env=dict(self.env, **P_COMMITS[p_commit])),
        )
        # B for the REST row: the same application plus a plain JsonResponse
        # view (bench/urls.py), in a server of its own.
        port = free_port()
        env, self.env = self.env, dict(self.env, DJANGO_SETTINGS_MODULE="bench.settings")
        self.plain = self.start(P_SERVERS[SHIPPED_SERVER] + [str(port)], port, "plain")
        self.env = env

    def start(self, args, port, name, env=None):
        server = Server(
            args,
            port,
            env=env or getattr(self, "env", None),
            log_path=ROOT / "artifacts" / f"bench-{name}.log",
            preexec_fn=pinned(SERVER_CPU),
        )
        self.procs.append(server)
        return server

    def prepare_database(self, rooms, orders):
        """Customers, an agent and one order per room, with API tokens; a
        user per count in `orders` with that many orders."""
        self.create_database()
        manage = [sys.executable, "manage.py", "bench_data", "--rooms", str(rooms)]
        manage += ["--orders", ",".join(map(str, orders))]
        subprocess.run(manage, cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.rooms = json.loads((ROOT / "artifacts" / "bench-rooms.json").read_text())
        self.orders = json.loads((ROOT / "artifacts" / "bench-orders.json").read_text())

    def create_database(self):
        """The bench database, created on first use (a fresh clone's run)."""
        url = self.database_url.replace("postgres://", "postgresql://")
        name = url.rsplit("/", 1)[1].split("?")[0]
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))

    def sql_stats(self):
        """(transactions, sessions) of the bench database so far: each query
        is a transaction (Django runs in autocommit), each new connection a
        session. Read once every server connection has reported what it ran
        (SQL_SETTLE)."""
        time.sleep(self.sql_settle)
        with psycopg.connect(self.database_url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()
        return row

    def redis_commands(self):
        """Commands Redis has run so far, the scripts among them, and the
        ZADDs (run inside scripts too: the touch script runs one for each
        heartbeat of its batch)."""
        stats = self.redis.info("commandstats")
        total = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))
        scripts = sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))
        return total, scripts, stats.get("cmdstat_zadd", {}).get("calls", 0)

    def check_logs(self, tolerate=None):
        """Fail on problem lines logged since the last check (a line, or a
        traceback with the line that announced it). Entries mentioning
        `tolerate` are counted instead, per server name, and returned."""
        problems, tolerated = [], {}
        for server in self.procs:
            for entry in self.new_problems(server):
                name = server.log_path.stem.removeprefix("bench-")
                if tolerate and tolerate in entry:
                    tolerated[name] = tolerated.get(name, 0) + 1
                else:
                    problems.append(f"{server.log_path.name}: {entry.splitlines()[0]}")
        if problems:
            raise SystemExit("FAIL server logs:\n" + "\n".join(problems[:20]))
        return tolerated

    def new_problems(self, server):
        """Problem entries `server` logged since the last look at its log."""
        marks = self.__dict__.setdefault("log_marks", {})
        text = server.log()
        new, marks[server] = text[marks.get(server, 0) :], len(text)
        entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", new)
        return [e for e in entries if any(s in e for s in ("over capacity", "Traceback", " ERROR "))]

    def server_versions(self):
        """The versions of the Redis and PostgreSQL servers measured with."""
        url = self.database_url.replace("postgres://", "postgresql://")
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            postgresql = conn.execute("SHOW server_version").fetchone()[0]
        return self.redis.info("server")["redis_version"], postgresql

    def stop(self):
        self.redis.close()
        for server in reversed(self.procs):
            server.stop()


def measure(stack, name, scenario):
    """Run one scenario against one target: the load result and the server's CPU."""
    target, server = stack.targets[name]
    before = cpu_seconds(server.process.pid)
    result = asyncio.run(scenario(target))
    result.cpu = cpu_seconds(server.process.pid) - before
    if result.lost or result.duplicated or result.errors:
        raise SystemExit(f"FAIL {name}: lost={result.lost} duplicated={result.duplicated} errors={result.errors[:3]}")
    return result


# The statistics read before a measurement counts in the one after it: two
# statements on one connection.
SQL_READ_OVERHEAD = (2, 1)


def idle_connections(stack, names, count, idle_seconds):
    """Row 3: `count` sockets opened in a storm, then held idle."""
    figures = {k: {} for k in ("failures", "rss", "cpu", "redis", "rate")}
    for name in names:
        target, server = stack.targets[name]
        pid = server.process.pid
        seen = {}

        def probe(stage, pid=pid, seen=seen):
            seen[stage] = (rss_kb(pid), cpu_seconds(pid), time.perf_counter(), tcp_to(stack.redis_port, pid))

        result = asyncio.run(rows.hold(target, count, idle_seconds, probe))
        opened = count - len(result.errors)
        figures["failures"][name] = len(result.errors)
        figures["rss"][name] = (seen["open"][0] - seen["before"][0]) / max(opened, 1)
        figures["cpu"][name] = 100 * (seen["idle"][1] - seen["open"][1]) / (seen["idle"][2] - seen["open"][2])
        figures["redis"][name] = seen["open"][3]
        figures["rate"][name] = opened / result.elapsed if result.elapsed else 0.0
        if result.errors:
            note(f"{name}: {len(result.errors)} of {count} sockets failed: {result.errors[:3]}")
    row(f"3. idle {count} sockets: failures", figures["failures"], "sockets", "lower")
    row(f"3. idle {count} sockets: RSS per connection", figures["rss"], "KB", "lower")
    row(f"3. idle {count} sockets: idle CPU", figures["cpu"], "% core", "lower")
    row(f"3. idle {count} sockets: Redis connections", figures["redis"], "conns", "lower")
    row(f"3. idle {count} sockets: connect rate in the storm", figures["rate"], "conn/s", "higher")
    return figures["failures"]


def presence_cost(stack, present, unrelated, refreshes):
    """Row 4, in a child process on Redis database 1 (nothing else uses it).
    B is the chapter's `KEYS customer-service_*` and parse."""
    env = dict(stack.env, REDIS_URL=f"redis://127.0.0.1:{stack.redis_port}/1")
    args = [sys.executable, "-m", "bench.presence_cost", "--present", ",".join(map(str, present))]
    args += ["--unrelated", ",".join(map(str, unrelated)), "--refreshes", str(refreshes)]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"FAIL bench.presence_cost exited {done.returncode}:\n{done.stderr[-3000:]}")
    for case in map(json.loads, done.stdout.splitlines()):
        label = f"4. dashboard refresh, {case['present']} present, {case['unrelated']} unrelated keys"
        row(f"{label}: Redis time (B: KEYS)", {"P": case["ours_redis_us"], "B": case["keys_redis_us"]}, "us", "lower")
        row(f"{label}: wall time (B: KEYS)", {"P": case["ours_wall_ms"], "B": case["keys_wall_ms"]}, "ms", "lower")
        first = f"4. a worker's first read (everyone), {case['present']} present, {case['unrelated']} unrelated keys"
        row(f"{first}: Redis time (B: KEYS)", {"P": case["first_redis_us"], "B": case["keys_redis_us"]}, "us", "lower")


def open_dashboards(stack, counts, arrivals):
    """Row 4, dashboards: what one arrival costs with K dashboards open on P
    (Redis presence reads, SQL statements). Target: reads not growing with K."""
    target, server = stack.targets["P"]
    prefix = "booktime:presence:"  # the shipped PRESENCE_KEY_PREFIX
    url = f"{server.url}/customer-service/notify/?format=v2"
    headers = {"Authorization": f"Token {stack.rooms[0][2]}"}  # the bench agent, an employee

    def arrive(n):
        # Through the heartbeat's own script (present for 60 s): one more script call per arrival.
        order_id = stack.rooms[n % len(stack.rooms)][0]
        keys = [f"{prefix}{k}" for k in ("expiry", "info", "log")]
        member = json.dumps([order_id, f"arrival-{n}@example.com"], separators=(",", ":"))
        stack.redis.eval(presence._TOUCH, 3, *keys, 60, f"{prefix}changes", member, 0, order_id)

    for count in counts:
        seen = {}

        def probe(stage, seen=seen):
            seen[stage] = (stack.redis_commands()[1], stack.sql_stats()[0])

        stack.redis.delete(*(f"{prefix}{k}" for k in ("expiry", "info", "log")))
        dropped = asyncio.run(rows.dashboards(url, headers, count, arrivals, arrive, probe))
        stack.redis.delete(*(f"{prefix}{k}" for k in ("expiry", "info", "log")))
        # Like the storms, a stream the server ends for an exhausted Redis
        # pool is a figure, not a stop; any other problem in the log stops.
        pool_errors = stack.check_logs(tolerate="MaxConnectionsError").get("P", 0)
        row(f"4. one arrival, {count} dashboards open: streams dropped", {"P": dropped}, "streams", "lower (0)")
        if dropped or pool_errors:
            note(f"WARNING: {dropped} of {count} dashboards dropped, {pool_errors} Redis pool errors in P's log")
        reads = (seen["after"][0] - seen["before"][0] - arrivals) / arrivals  # less the arrivals' own
        sql = (seen["after"][1] - seen["before"][1] - SQL_READ_OVERHEAD[0]) / arrivals
        row(f"4. one arrival, {count} dashboards open: Redis presence reads", {"P": reads}, "reads", "flat in K")
        row(f"4. one arrival, {count} dashboards open: SQL statements", {"P": sql}, "queries", "flat in K")


def heartbeat_cost(stack, sockets, rate, seconds):
    """Row 5: heartbeats one P worker absorbs, and what each costs."""
    target, server = stack.targets["P"]
    pid = server.process.pid
    seen = {}

    def probe(stage):
        seen[stage] = (cpu_seconds(pid), *stack.redis_commands(), stack.sql_stats()[0])

    sent, elapsed = asyncio.run(rows.heartbeats(target, sockets, rate, seconds, probe))
    cpu, commands, _, touches, sql = (a - b for a, b in zip(seen["after"], seen["before"], strict=True))
    sql -= SQL_READ_OVERHEAD[0]
    if touches < sent:
        note(f"heartbeats: {sent} sent, {touches} reached Redis")
    # Per heartbeat sent: the worker handles each; Redis renews each member
    # with one ZADD (in one script call per batch of heartbeats).
    row(f"5. heartbeats absorbed, {rate}/s offered", {"P": touches / elapsed}, "beats/s", "higher")
    row("5. server CPU per heartbeat", {"P": 1e6 * cpu / max(sent, 1)}, "us", "lower")
    row("5. Redis commands per heartbeat", {"P": commands / max(sent, 1)}, "cmds", "lower")
    row("5. SQL queries per heartbeat", {"P": sql / max(sent, 1)}, "queries", "lower (0)")


def http_measure(stack, server, url, seconds, headers=None, concurrency=10, sql_before=None):
    """A closed loop of GETs; with `sql_before` (the statistics read just
    before), also the SQL statements per request, and `sql_after`."""
    pid = server.process.pid
    before_cpu = cpu_seconds(pid)
    result = asyncio.run(rows.http_load(url, seconds, concurrency, headers))
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


def rest(stack, counts, seconds):
    """Row 6: my-orders (P) against the plain view (B), same token auth."""
    p_server = stack.targets["P"][1]
    sql = stack.sql_stats()
    for count in counts:
        headers = {"Authorization": f"Token {stack.orders[str(count)]}"}
        p = http_measure(stack, p_server, p_server.url + "/mobile-api/my-orders/", seconds, headers, sql_before=sql)
        url = stack.plain.url + "/bench/plain-orders/"
        b = http_measure(stack, stack.plain, url, seconds, headers, sql_before=p.sql_after)
        sql = b.sql_after
        row(f"6. REST my-orders, {count} orders (B: plain view)", {"P": p.rate, "B": b.rate}, "req/s", "higher")
        per_cpu = {"P": len(p.latencies) / p.cpu if p.cpu else 0.0, "B": len(b.latencies) / b.cpu if b.cpu else 0.0}
        row(f"6. REST my-orders, {count} orders, per server CPU-s", per_cpu, "req/CPU-s", "higher")
        # Counted as transactions: each statement is one (autocommit), and
        # those Django runs on each new connection count too.
        queries = {"P": p.queries, "B": b.queries}
        row(f"6. REST my-orders, {count} orders: SQL statements/request", queries, "queries", "constant")
        connections = {"P": p.connections, "B": b.connections}
        row(f"6. REST my-orders, {count} orders: DB connections opened/request", connections, "conns", "lower")


def tracker(stack, seconds):
    """Row 7: the tracker through P (B: the stand-in courier called directly)."""
    p_server = stack.targets["P"][1]
    order_id, token, _ = stack.rooms[0]
    time_wait_before = tcp_to(stack.courier_port, state="06")
    url = f"{p_server.url}/mobile-api/my-orders/{order_id}/tracker/"
    p = http_measure(stack, p_server, url, seconds, {"Authorization": f"Token {token}"}, sql_before=stack.sql_stats())
    kept = tcp_to(stack.courier_port, p_server.process.pid)
    closed = tcp_to(stack.courier_port, state="06") - time_wait_before
    courier = next(s for s in stack.procs if s.port == stack.courier_port)
    direct = f"http://127.0.0.1:{stack.courier_port}/track/{order_id}"
    b = http_measure(stack, courier, direct, seconds)
    # One request at a time: the proxy's own latency, with no queue of
    # requests ahead of it as in the closed loop of 10.
    p_alone = http_measure(stack, p_server, url, seconds / 2, {"Authorization": f"Token {token}"}, concurrency=1)
    b_alone = http_measure(stack, courier, direct, seconds / 2, concurrency=1)
    row("7. tracker (B: courier direct)", {"P": p.rate, "B": b.rate}, "req/s", "higher")
    row("7. tracker, per server CPU-s", {"P": len(p.latencies) / p.cpu if p.cpu else 0.0}, "req/CPU-s", "higher")
    for label, (p_result, b_result) in {"10 at a time": (p, b), "one at a time": (p_alone, b_alone)}.items():
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            figures = {"P": 1000 * p_result.percentile(q), "B": 1000 * b_result.percentile(q)}
            row(f"7. tracker {name}, {label} (B: courier direct)", figures, "ms", "lower")
    row("7. tracker: SQL statements/request", {"P": p.queries}, "queries", "lower")
    row("7. tracker: DB connections opened/request", {"P": p.connections}, "conns", "lower")
    note(f"7. P's connections to the courier after {len(p.latencies)} requests: {kept} open, {closed} closed")
    if closed > 10:
        raise SystemExit(f"FAIL tracker: {closed} courier connections closed, not reused")


SWEEP_P99_LIMIT = 0.25  # seconds, as in row 2
SWEEP_SHORT_OF_RATE = 0.9  # a point sent at under 90% of its rate was not offered that rate
SETTLE_LIMIT = 10.0  # seconds to wait for a server to go idle between sweep points


def settle(server, limit=SETTLE_LIMIT, interval=0.2, idle=0.1):
    """Wait (at most `limit` s) until the server uses under `idle` of a core:
    a backlog from an overloaded point must not weigh on the next."""
    pid = server.process.pid
    deadline = time.monotonic() + limit
    before = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = cpu_seconds(pid)
        if now - before <= idle * interval:
            return
        before = now


def sweep_run(stack, name, rooms, rate, seconds):
    """One open-loop run of the sweep. Unlike `measure`, lost messages and
    failed sockets are results (they end that target's sweep); duplicates
    still fail the run."""
    target, server = stack.targets[name]
    try:
        result = asyncio.run(loadgen.open_loop(target, rooms=rooms, rate=rate, seconds=seconds))
    except Exception as exc:  # a refused connection under overload
        result = loadgen.Result(errors=[f"{type(exc).__name__}: {exc}"])
    if result.duplicated:
        raise SystemExit(f"FAIL sweep {name} at {rate} msg/s: {result.duplicated} messages duplicated")
    settle(server)  # and the disconnects have run, so their log lines are in
    result.problems = [f"{server.log_path.name}: {e.splitlines()[0]}" for e in stack.new_problems(server)]
    return result


def sweep_point(rate, results):
    """A target's point at `rate` from its repetitions (medians), and why
    its sweep stops there (None if it goes on)."""
    lost, errors = sum(r.lost for r in results), sum(len(r.errors) for r in results)
    # n messages paced at `rate` span (n - 1) / rate seconds
    sent_rate = statistics.median((r.sent - 1) / r.elapsed if r.elapsed else 0.0 for r in results)
    problems = [p for r in results for p in r.problems]
    p50, p99 = (statistics.median(r.percentile(q) for r in results) for q in (0.5, 0.99))
    point = {
        "rate": rate,
        "sent_rate": round(sent_rate, 1),
        "p50_ms": report_ms(p50),
        "p99_ms": report_ms(p99),
        "sent": sum(r.sent for r in results),
        "lost": lost,
        "socket_errors": errors,
        "log_problems": problems[:5],
        # Latencies of a run that lost messages or was not offered its rate
        # describe some other load: kept here, not plotted.
        "valid": not (lost or errors) and sent_rate >= SWEEP_SHORT_OF_RATE * rate and math.isfinite(p99),
    }
    if lost or errors:
        reason = f"{lost} messages lost, {errors} sockets failed at {rate} msg/s"
    elif not point["valid"]:
        reason = f"offered only {sent_rate:.0f} of {rate} msg/s"
    elif problems:
        reason = f"problems in its log at {rate} msg/s ({problems[0]})"
    elif p99 > SWEEP_P99_LIMIT:
        reason = f"p99 {1000 * p99:.0f} ms at {rate} msg/s"
    else:
        reason = None
    return point, reason


def report_ms(seconds):
    return round(1000 * seconds, 3) if math.isfinite(seconds) else None


def latency_sweep(stack, names, rooms, rates, seconds, reps, budget):
    """Latency against load: open-loop runs (row 1's) at each total rate in
    `rates`, the targets interleaved in each repetition, until each target
    stops (`sweep_point`). No new rate starts after `budget` seconds."""
    points, stopped = {n: [] for n in names}, {}
    started = time.monotonic()
    for name in names:  # what the rows before left running winds down first
        settle(stack.targets[name][1])
    per_point = seconds + 1.5  # the run, its sockets' opening and closing, the join events
    note(
        f"latency sweep: {', '.join(map(str, rates))} msg/s over {rooms} rooms, {seconds:g} s per point, "
        f"{reps} repetition(s): about {len(rates) * len(names) * reps * per_point:.0f} s if no target stops "
        f"early; no new rate after {budget:.0f} s"
    )
    for rate in rates:
        active = [n for n in names if n not in stopped]
        if not active:
            break
        if time.monotonic() - started > budget:
            for name in active:
                stopped[name] = f"time budget ({budget:.0f} s) spent before {rate} msg/s"
            break
        runs = {n: [] for n in active}
        for _ in range(reps):
            for name in active:
                runs[name].append(sweep_run(stack, name, rooms, rate, seconds))
        for name in active:
            point, reason = sweep_point(rate, runs[name])
            points[name].append(point)
            note(
                f"sweep {name} {rate} msg/s: p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms, "
                f"sent {point['sent_rate']} msg/s, lost {point['lost']}"
            )
            if reason:
                stopped[name] = reason
                note(f"sweep {name} stops: {reason}")
    elapsed = time.monotonic() - started
    note(f"latency sweep took {elapsed:.1f} s")
    return {
        "rooms": rooms,
        "rates": rates,
        "seconds_per_point": seconds,
        "repetitions": reps,
        "p99_limit_ms": 1000 * SWEEP_P99_LIMIT,
        "budget_s": budget,
        "elapsed_s": round(elapsed, 1),
        "points": points,
        "stopped": stopped,
    }


def row(label, figures, unit, better):
    """One table line: a figure per target and P's ratio to B and U."""
    report.row(label, figures, unit, better)


def note(text):
    """A line under the table (`# text`), kept in results.json."""
    report.note(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds, small load: checks the instrument")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (median reported)")
    parser.add_argument("--targets", default="P,B,U")
    parser.add_argument(
        "--p-server", choices=sorted(P_SERVERS), default=SHIPPED_SERVER, help="the server P runs on (default: shipped)"
    )
    parser.add_argument(
        "--p-commit",
        choices=sorted(P_COMMITS),
        default="durable",
        help="P's PostgreSQL commits: durable (shipped) or async (for comparison, see P_COMMITS)",
    )
    parser.add_argument(
        "--rows", default="1,2,3,4,5,6,7,sweep", help="the rows to measure, and `sweep` for the latency sweep"
    )
    args = parser.parse_args()
    rows_wanted = set(args.rows.split(","))
    pinned(LOADGEN_CPU)()

    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    latency_cases = [(10, 50)] if quick else [(100, 200), (500, 200), (100, 500), (500, 500)]
    seconds = 1 if quick else 30
    ramp = [10] if quick else [10, 25, 50, 100, 200, 400]
    idle_counts, idle_seconds = ([200], 1) if quick else ([2000, 10000], 20)
    present, unrelated = ([1000], [0, 10000]) if quick else ([1000, 10000, 100000], [0, 100000])
    order_counts = [10, 100] if quick else [10, 100, 1000]
    http_seconds = 0.5 if quick else 10
    # The sweep: (rooms, total rates in msg/s, seconds per point, budget in s).
    sweep = (4, [25, 100], 0.5, 15) if quick else (100, [100, 200, 500, 1000, 2000, 5000], 5, 600)
    names = args.targets.split(",")
    raise_file_limit()
    started = time.monotonic()

    def mark(what):
        print(f"# {what} done at {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

    stack = Stack(
        rooms=max(r for r, _ in latency_cases) if not quick else max(ramp + [10]),
        orders=order_counts,
        sql_settle=QUICK_SQL_SETTLE if quick else SQL_SETTLE,
        p_server=args.p_server,
        p_commit=args.p_commit,
    )
    report.p_server, report.p_commit = args.p_server, args.p_commit
    status = "interrupted"
    try:
        report.machine = describe_machine(*stack.server_versions())
        mark("servers up")
        print(HEADER)
        for rooms, rate in latency_cases if "1" in rows_wanted else ():
            runs = {n: [] for n in names}
            for _ in range(reps):
                for name in names:
                    scenario = functools.partial(loadgen.open_loop, rooms=rooms, rate=rate, seconds=seconds)
                    runs[name].append(measure(stack, name, scenario))
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                figures = {n: 1000 * statistics.median(r.percentile(q) for r in runs[n]) for n in names}
                row(f"1. latency {label}, {rooms} rooms, {rate} msg/s", figures, "ms", "lower")

        best = {n: (0.0, 0.0) for n in names}  # sustained msg/s, msg per server CPU-second
        for name in names if "2" in rows_wanted else ():
            for rooms in ramp:
                results = [
                    measure(stack, name, functools.partial(loadgen.closed_loop, rooms=rooms, seconds=seconds))
                    for _ in range(reps)
                ]
                rate = statistics.median(len(r.latencies) / r.elapsed for r in results)
                per_cpu = statistics.median(len(r.latencies) / r.cpu if r.cpu else 0.0 for r in results)
                if statistics.median(r.percentile(0.99) for r in results) > 0.25:
                    break
                if rate > best[name][0]:
                    best[name] = (rate, per_cpu)
        if "2" in rows_wanted:
            row("2. throughput, closed loop (p99 < 250 ms)", {n: best[n][0] for n in names}, "msg/s", "higher")
            row("2. throughput per server CPU-second", {n: best[n][1] for n in names}, "msg/CPU-s", "higher")

        stack.check_logs()
        mark("rows 1-2")
        for count in idle_counts if "3" in rows_wanted else ():
            failed = idle_connections(stack, names, count, idle_seconds)
            # The storms overrun the Redis pools (redis-py raises rather than
            # waits past max_connections): a figure of this row, not a stop.
            errors = stack.check_logs(tolerate="MaxConnectionsError")
            pool_errors = {n: errors.get(n, 0) for n in names}
            row(f"3. idle {count} sockets: Redis pool errors in the storms", pool_errors, "errors", "lower (0)")
            if errors:
                note(f"WARNING: Redis pool exhausted (MaxConnectionsError) in {errors}; see bench-*.log")
            if failed.get("P"):
                raise SystemExit(f"FAIL idle connections: {failed['P']} of P's {count} sockets failed")
        mark("row 3")
        if "4" in rows_wanted:
            presence_cost(stack, present, unrelated, refreshes=5 if quick else 20)
        if "4" in rows_wanted and "P" in names:
            open_dashboards(stack, [1, 10] if quick else [1, 10, 50], arrivals=3 if quick else 20)
        mark("row 4")
        if "P" in names and "5" in rows_wanted:
            heartbeat_cost(stack, 20 if quick else 200, 400 if quick else 2000, 1 if quick else 10)
            mark("row 5")
        if "P" in names and "6" in rows_wanted:
            rest(stack, order_counts, http_seconds)
            mark("row 6")
        if "P" in names and "7" in rows_wanted:
            tracker(stack, http_seconds)
            mark("row 7")
        if "sweep" in rows_wanted:
            # Last: it takes each target into overload, which must not weigh on the rows.
            rooms, rates, point_seconds, budget = sweep
            report.sweep = latency_sweep(stack, names, rooms, rates, point_seconds, reps, budget)
            mark("latency sweep")

        stack.check_logs()
        status = "ok"
    except BaseException as exc:
        status = str(exc) if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stack.stop()
        mode = "quick" if quick else "full"
        if status == "ok" and report.sweep:
            from .plot import latency_plot  # matplotlib, a dev dependency, only once there is something to draw

            # docs/ holds the shipped configuration's plot only.
            shipped = args.p_server == SHIPPED_SERVER and args.p_commit == "durable"
            path = PLOT if shipped and not quick else ARTIFACTS / "latency.png"
            plot = latency_plot(report.sweep, path, report.machine_line(mode, reps))
            report.plot = str(plot.relative_to(ROOT))
        written = report.write(ARTIFACTS, mode, reps, names, status)
        paths = [str(p.relative_to(ROOT)) for p in written] + ([report.plot] if report.plot else [])
        print(f"# wrote {', '.join(paths)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
