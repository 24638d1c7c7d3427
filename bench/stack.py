"""The processes a bench run measures, and what they say between
measurements. A Stack is a Redis of its own, a database on the shared
PostgreSQL and the servers started for the run, each pinned to SERVER_CPU
with its log in artifacts/; BenchStack is bench.run's (P, B, U, the plain
REST view and the courier stand-in), SoakStack bench.soak's (one worker).
The processes are started by harness.servers, as the tests' are."""

import json
import os
import re
import subprocess
import sys
import time

import psycopg
import psycopg.sql
import redis

from harness.servers import ROOT, RedisServer, Server, courier_standin, free_port, serve

from . import loadgen
from .machine import SERVER_CPU, pinned

# PostgreSQL (15+) publishes a backend's statement counts when it commits at
# least 1 s after its last report, or else once it has been idle for 10 s:
# without the wait, a pooled connection's burst (a storm's handshakes, a
# dashboard's read) would be counted in the next measurement's window.
SQL_SETTLE = 11.0  # seconds
QUICK_SQL_SETTLE = 0.5  # the quick mode's SQL counts may include late reports: not results
# The statistics read before a measurement counts in the one after it: two
# statements (transactions) on one connection (session).
SQL_READ_OVERHEAD = (2, 1)
# Entries of a server's log that fail a run.
LOG_PROBLEMS = ("over capacity", "Traceback", " ERROR ")
# The chat's per-socket rate limit is an abuse guard for people typing; the
# bench's clients answer each message the moment it arrives, far past it,
# and a v1 socket's refused frame is dropped silently (a "lost" message).
BENCH_LIMITS = {"CHAT_RATE_BURST": "1000000", "CHAT_RATE_PER_SECOND": "1000000"}
# Likewise the cap on one user's sockets: the bench's and the soak's agents
# are each in hundreds of chats at once.
SOCKET_CAPS_OFF = {"CHAT_MAX_SOCKETS_PER_USER": "1000000", "CHAT_MAX_SOCKETS_PER_EMPLOYEE": "1000000"}
# The servers P can run on: the shipped worker (booktime.serve, on uvicorn),
# and daphne for comparison (bench.daphne_server; B and U stay as they are).
SHIPPED_SERVER = "uvicorn"
P_SERVERS = (SHIPPED_SERVER, "daphne")
# How P's PostgreSQL commits are made: the shipped durable ones, or, to tell
# the application's latency from the storage's (`--p-commit async`, never
# shipped), commits that do not wait for the WAL to reach the disk. libpq
# reads PGOPTIONS, so every connection of P's (the chat writer's included)
# gets it; a PostgreSQL crash may then lose the last acknowledged messages.
P_COMMITS = {"durable": {}, "async": {"PGOPTIONS": "-c synchronous_commit=off"}}
BENCH_DATABASE = "postgres://postgres@127.0.0.1:5432/booktime_bench"
SOAK_DATABASE = "postgres://postgres@127.0.0.1:5432/booktime_soak"


# Presence's keys in the bench's Redis (row 4 adds arrivals under it itself).
PRESENCE_KEY_PREFIX = "bench:presence:"


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
        PRESENCE_KEY_PREFIX=PRESENCE_KEY_PREFIX,
        PYTHONUNBUFFERED="1",
    )


def libpq_url(database_url):
    """A DATABASE_URL as psycopg takes it."""
    return database_url.replace("postgres://", "postgresql://")


def create_database(database_url):
    """The database, created on first use (a fresh clone's run)."""
    url = libpq_url(database_url)
    name = url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))


class Stack:
    """Redis and a database, the servers started on them (artifacts/<log_prefix>-<name>.log),
    and readings of the three: SQL statistics, Redis commands, problems in the logs."""

    def __init__(self, log_prefix, database_url, secret, sql_settle=SQL_SETTLE):
        self.procs, self.log_marks = [], {}
        self.log_prefix, self.sql_settle = log_prefix, sql_settle
        self.redis_server = self.track(RedisServer(**self.options("redis")))
        self.redis_port, self.redis_url = self.redis_server.port, self.redis_server.url
        self.redis = redis.Redis(port=self.redis_port)
        self.database_url = database_url
        self.env = server_env(database_url, self.redis_url, secret)
        try:
            create_database(database_url)
        except BaseException:
            self.stop()
            raise

    def options(self, name):
        """How a server is started: its log file, and pinned to SERVER_CPU with the open-file limit raised."""
        return {"log_path": ROOT / "artifacts" / f"{self.log_prefix}-{name}.log", "preexec_fn": pinned(SERVER_CPU)}

    def track(self, server):
        """`server` is stopped with the stack and its log checked."""
        self.procs.append(server)
        return server

    def start(self, args, port, name, env=None):
        """A server started by its command line `args`, listening on `port`."""
        return self.track(Server(args, port, env=env or self.env, **self.options(name)))

    def serve(self, name, application="booktime.asgi:application", env=None, port=None, reuse_port=False):
        """`application` in a production worker (booktime.serve, no access log)."""
        options = self.options(name)
        return self.track(
            serve(env or self.env, port, application=application, quiet=True, reuse_port=reuse_port, **options)
        )

    def prepare_database(self, rooms, orders=(), agents=1):
        """bench_data: an order per room with its customer, `agents`
        employees, a user per count in `orders` with that many orders, and
        their API tokens (self.rooms, self.orders, self.agents)."""
        manage = [sys.executable, "manage.py", "bench_data", "--rooms", str(rooms)]
        manage += ["--orders", ",".join(map(str, orders)), "--agents", str(agents)]
        subprocess.run(manage, cwd=ROOT, env=self.env, check=True, capture_output=True)
        self.rooms, self.orders, self.agents = (
            json.loads((ROOT / "artifacts" / f"bench-{name}.json").read_text())
            for name in ("rooms", "orders", "agents")
        )

    def sql(self, query, args=()):
        """The rows of one query on the database."""
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            return conn.execute(query, args).fetchall()

    def sql_stats(self):
        """(transactions, sessions) of the database so far: each query is a
        transaction (Django runs in autocommit), each new connection a
        session. Read once every server connection has reported what it ran
        (SQL_SETTLE)."""
        time.sleep(self.sql_settle)
        with psycopg.connect(libpq_url(self.database_url), autocommit=True) as conn:
            conn.execute("SELECT pg_stat_clear_snapshot()")
            return conn.execute(
                "SELECT xact_commit + xact_rollback, sessions FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()

    def redis_commands(self):
        """Commands Redis has run so far, the scripts among them, and the
        ZSCOREs (run inside scripts too: the touch script runs one for each
        heartbeat of its batch, and a second ZADD for an employee's)."""
        stats = self.redis.info("commandstats")
        total = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))
        scripts = sum(stats.get(k, {}).get("calls", 0) for k in ("cmdstat_evalsha", "cmdstat_eval"))
        return total, scripts, stats.get("cmdstat_zscore", {}).get("calls", 0)

    def redis_cpu(self):
        """CPU seconds the bench's Redis server has used so far (INFO cpu)."""
        cpu = self.redis.info("cpu")
        return cpu["used_cpu_sys"] + cpu["used_cpu_user"]

    def check_logs(self, tolerate=None):
        """Fail on problem lines logged since the last check (a line, or a
        traceback with the line that announced it). Entries mentioning
        `tolerate` are counted instead, per server name, and returned."""
        problems, tolerated = [], {}
        for server in self.procs:
            for entry in self.new_problems(server):
                name = server.log_path.stem.removeprefix(f"{self.log_prefix}-")
                if tolerate and tolerate in entry:
                    tolerated[name] = tolerated.get(name, 0) + 1
                else:
                    problems.append(f"{server.log_path.name}: {entry.splitlines()[0]}")
        if problems:
            raise SystemExit("FAIL server logs:\n" + "\n".join(problems[:20]))
        return tolerated

    def new_problems(self, server, markers=LOG_PROBLEMS):
        """Entries of `server`'s log with one of `markers`, logged since the last look at it."""
        text = server.log()
        new, self.log_marks[server] = text[self.log_marks.get(server, 0) :], len(text)
        entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", new)
        return [e for e in entries if any(s in e for s in markers)]

    def server_versions(self):
        """The versions of the Redis and PostgreSQL servers measured with."""
        with psycopg.connect(libpq_url(self.database_url), autocommit=True, connect_timeout=10) as conn:
            postgresql = conn.execute("SHOW server_version").fetchone()[0]
        return self.redis.info("server")["redis_version"], postgresql

    def stop(self):
        self.redis.close()
        for server in reversed(self.procs):
            server.stop()


class BenchStack(Stack):
    """bench.run's: the courier stand-in, B (the Channels tutorial), U (the
    relay), P (our application on `p_server` with `p_commit` commits, the
    chat's rate limit out of the way: BENCH_LIMITS), and the plain REST
    view's server, on the bench database (BENCH_DATABASE_URL)."""

    def __init__(self, rooms, orders, sql_settle=SQL_SETTLE, p_server=SHIPPED_SERVER, p_commit="durable", chats=0):
        super().__init__("bench", os.environ.get("BENCH_DATABASE_URL", BENCH_DATABASE), "bench-only", sql_settle)
        try:
            self.prepare_database(max(rooms, chats), orders)
            self.courier = self.track(courier_standin(env=self.env, **self.options("courier")))
            self.courier_port = self.courier.port
            self.env.update(BENCH_LIMITS, **SOCKET_CAPS_OFF, COURIER_API_URL=f"{self.courier.url}/")
            # How B and P are started: on the port they share with the worker
            # started next to take over from them (start_next), as deploys do
            # (docs/operations.md); P on another server than the shipped one
            # cannot be taken over from.
            self.starters = {
                "B": lambda name, port=None: self.serve(
                    name, "bench.baseline_asgi:application", port=port, reuse_port=True
                ),
                "P": lambda name, port=None: self.start_p(p_server, dict(self.env, **P_COMMITS[p_commit]), name, port),
            }
            self.restartable = {"B"} | ({"P"} if p_server == SHIPPED_SERVER else set())
            self.restarts = {}
            b = self.starters["B"]("B")
            port = free_port()
            u = self.start([sys.executable, "-m", "bench.relay", "--port", str(port)], port, "U")
            p = self.starters["P"]("P")
            self.targets = {
                "B": (loadgen.Target("B", b.ws_url, "tutorial"), b),
                "U": (loadgen.Target("U", u.ws_url, "relay"), u),
                "P": (loadgen.Target("P", p.ws_url, "product", rooms=self.rooms), p),
            }
            # B for the REST row: the same application plus a plain
            # JsonResponse view (bench/urls.py), in a server of its own.
            self.plain = self.serve("plain", env=dict(self.env, DJANGO_SETTINGS_MODULE="bench.settings"))
        except BaseException:
            self.stop()
            raise

    def start_p(self, p_server, env, name="P", port=None):
        if p_server == SHIPPED_SERVER:
            return self.serve(name, env=env, port=port, reuse_port=True)
        port = port or free_port()
        return self.start([sys.executable, "-m", "bench.daphne_server", "--port", str(port)], port, name, env=env)

    def start_next(self, name):
        """Target `name`'s next worker, started on the port of the one serving
        it (its log: <name>-again-<k> for the k-th), which it returns:
        stopping that one (stop_server) hands its clients over."""
        target, old = self.targets[name]
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.targets[name] = (target, self.starters[name](f"{name}-again-{self.restarts[name]}", old.port))
        return old

    def stop_server(self, server):
        """Stop `server` (SIGTERM, as a deploy does); when it had exited."""
        server.stop()
        self.procs.remove(server)
        return time.perf_counter()


class SoakStack(Stack):
    """bench.soak's: one worker of the shipped application with its
    production limits, on the soak's database (BENCH_DATABASE_URL), with
    `chats` orders and `agents` employees."""

    def __init__(self, chats, agents):
        super().__init__("soak", os.environ.get("BENCH_DATABASE_URL", SOAK_DATABASE), "soak-only")
        try:
            self.prepare_database(chats, agents=agents)
            self.env.update(SOCKET_CAPS_OFF)
            self.server = self.serve("P")
        except BaseException:
            self.stop()
            raise
