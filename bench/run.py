"""The benchmark: our shipped configuration (P) against the Channels
tutorial's chat (B) and a plain `websockets` relay (U), side by side.

    .venv/bin/python -m bench.run            # full run, several minutes
    .venv/bin/python -m bench.run --quick    # a few seconds: the instrument works

Loopback only. It starts its own Redis (on a free port) and the three
servers, pins them to CPU 0 and itself to CPU 1, interleaves the targets in
each repetition and reports medians. Any lost or duplicated message, any
connection error or any over-capacity line in a server log fails the run.
"""

import argparse
import asyncio
import functools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from . import loadgen

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from main.tests.servers import Server, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOADGEN_CPU = 0, 1


def cpu_seconds(pid):
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def pinned(cpu):
    def pin():
        if hasattr(os, "sched_setaffinity") and os.cpu_count() > 1:
            os.sched_setaffinity(0, {cpu})

    return pin


class Stack:
    """Redis, a bench database, and the three servers."""

    def __init__(self, rooms):
        self.procs = []
        redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        self.start(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            redis_port,
            "redis",
        )
        self.database_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/booktime_bench")
        self.env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="booktime.settings",
            DEBUG="0",
            SECRET_KEY="bench-only",
            ALLOWED_HOSTS="127.0.0.1,localhost",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            PYTHONUNBUFFERED="1",
        )
        self.prepare_database(rooms)
        serve = [sys.executable, "-m", "booktime.serve", "-b", "127.0.0.1", "-v", "0"]
        port = free_port()
        self.targets = {
            "B": (
                loadgen.Target("B", f"ws://127.0.0.1:{port}", "tutorial"),
                self.start(serve + ["-p", str(port), "bench.baseline_asgi:application"], port, "B"),
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
            self.start(serve + ["-p", str(port), "booktime.asgi:application"], port, "P"),
        )

    def start(self, args, port, name):
        server = Server(
            args,
            port,
            env=getattr(self, "env", None),
            log_path=ROOT / "artifacts" / f"bench-{name}.log",
            preexec_fn=pinned(SERVER_CPU),
        )
        self.procs.append(server)
        return server

    def prepare_database(self, rooms):
        """Customers, an agent and one order per room, with API tokens."""
        manage = [sys.executable, "manage.py"]
        subprocess.run(
            manage + ["bench_data", "--rooms", str(rooms)], cwd=ROOT, env=self.env, check=True, capture_output=True
        )
        self.rooms = json.loads((ROOT / "artifacts" / "bench-rooms.json").read_text())

    def check_logs(self):
        problems = []
        for server in self.procs:
            for line in server.log().splitlines():
                if "over capacity" in line or "Traceback" in line or " ERROR " in line:
                    problems.append(f"{server.log_path.name}: {line}")
        return problems

    def stop(self):
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


def row(label, figures, unit, better):
    """One table line: a figure per target and P's ratio to B and U."""
    p, b, u = (figures.get(k, float("nan")) for k in "PBU")
    ratio_b = p / b if b else float("nan")
    ratio_u = p / u if u else float("nan")
    print(f"| {label} | {p:.1f} | {b:.1f} | {u:.1f} | {unit} | {ratio_b:.2f} | {ratio_u:.2f} | {better} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few seconds, small load: checks the instrument")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (median reported)")
    parser.add_argument("--targets", default="P,B,U")
    args = parser.parse_args()
    pinned(LOADGEN_CPU)()

    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    latency_cases = [(10, 50)] if quick else [(100, 200), (500, 200), (100, 500), (500, 500)]
    seconds = 2 if quick else 30
    ramp = [5, 20] if quick else [10, 25, 50, 100, 200, 400]
    names = args.targets.split(",")

    stack = Stack(rooms=max(r for r, _ in latency_cases) if not quick else max(ramp + [10]))
    try:
        print("| row | P | B | U | unit | P/B | P/U | better |")
        print("|---|---|---|---|---|---|---|---|")
        for rooms, rate in latency_cases:
            runs = {n: [] for n in names}
            for _ in range(reps):
                for name in names:
                    scenario = functools.partial(loadgen.open_loop, rooms=rooms, rate=rate, seconds=seconds)
                    runs[name].append(measure(stack, name, scenario))
            for q, label in ((0.5, "p50"), (0.99, "p99")):
                figures = {n: 1000 * statistics.median(r.percentile(q) for r in runs[n]) for n in names}
                row(f"1. latency {label}, {rooms} rooms, {rate} msg/s", figures, "ms", "lower")

        best = {n: (0.0, 0.0) for n in names}  # sustained msg/s, msg per server CPU-second
        for name in names:
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
        row("2. throughput, closed loop (p99 < 250 ms)", {n: best[n][0] for n in names}, "msg/s", "higher")
        row("2. throughput per server CPU-second", {n: best[n][1] for n in names}, "msg/CPU-s", "higher")

        problems = stack.check_logs()
        if problems:
            raise SystemExit("FAIL server logs:\n" + "\n".join(problems[:20]))
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
