"""Latency against load: open-loop runs like row 1's at rising total rates,
each target's sweep stopping at its first sign of overload (p99 past
P99_LIMIT, a lost message, a failed socket, the offered rate not reached, a
problem in its server's log). Its points are what bench.plot draws."""

import asyncio
import math
import statistics
import time

from . import loadgen
from .chat_rows import P99_LIMIT
from .machine import cpu_seconds

SHORT_OF_RATE = 0.9  # a point sent at under 90% of its rate was not offered that rate
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


def one_run(stack, name, rooms, rate, seconds):
    """One open-loop run of the sweep. Unlike chat_rows.measure, lost messages and
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


def point_at(rate, results):
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
        "valid": not (lost or errors) and sent_rate >= SHORT_OF_RATE * rate and math.isfinite(p99),
    }
    if lost or errors:
        reason = f"{lost} messages lost, {errors} sockets failed at {rate} msg/s"
    elif not point["valid"]:
        reason = f"offered only {sent_rate:.0f} of {rate} msg/s"
    elif problems:
        reason = f"problems in its log at {rate} msg/s ({problems[0]})"
    elif p99 > P99_LIMIT:
        reason = f"p99 {1000 * p99:.0f} ms at {rate} msg/s"
    else:
        reason = None
    return point, reason


def report_ms(seconds):
    return round(1000 * seconds, 3) if math.isfinite(seconds) else None


def latency_sweep(stack, report, names, rooms, rates, seconds, reps, budget):
    """Latency against load: open-loop runs (row 1's) at each total rate in
    `rates`, the targets interleaved in each repetition, until each target
    stops (`point_at`). No new rate starts after `budget` seconds."""
    points, stopped = {n: [] for n in names}, {}
    started = time.monotonic()
    for name in names:  # what the rows before left running winds down first
        settle(stack.targets[name][1])
    per_point = seconds + 1.5  # the run, its sockets' opening and closing, the join events
    report.note(
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
                runs[name].append(one_run(stack, name, rooms, rate, seconds))
        for name in active:
            point, reason = point_at(rate, runs[name])
            points[name].append(point)
            report.note(
                f"sweep {name} {rate} msg/s: p50 {point['p50_ms']} ms, p99 {point['p99_ms']} ms, "
                f"sent {point['sent_rate']} msg/s, lost {point['lost']}"
            )
            if reason:
                stopped[name] = reason
                report.note(f"sweep {name} stops: {reason}")
    elapsed = time.monotonic() - started
    report.note(f"latency sweep took {elapsed:.1f} s")
    return {
        "rooms": rooms,
        "rates": rates,
        "seconds_per_point": seconds,
        "repetitions": reps,
        "p99_limit_ms": 1000 * P99_LIMIT,
        "budget_s": budget,
        "elapsed_s": round(elapsed, 1),
        "points": points,
        "stopped": stopped,
    }
