"""The benchmark: our shipped configuration (P) against the Channels
tutorial's chat (B) and a plain `websockets` relay (U), side by side.

    .venv/bin/python -m bench.run            # full run, many minutes
    .venv/bin/python -m bench.run --quick    # about a minute: the instrument works
    .venv/bin/python -m bench.run --p-server daphne --targets P    # P on another server
    .venv/bin/python -m bench.run --p-commit async --rows 1     # P's commits not waiting for the disk

It prints the table and writes it to artifacts/bench/: results.json (every
row's figures, the sweep's points, the machine and the versions measured)
and table.md (the table under a line naming the machine, for docs/benchmarks.md).
The latency sweep's plot goes to docs/bench-latency.png on a full run and
to artifacts/bench/latency.png on a quick one.

Loopback only. It starts its own Redis (on a free port), the courier
stand-in and the servers (P, B, U, and a server with a plain JsonResponse
orders view for the REST row), pins them to CPU 0 and itself to CPU 1,
raises the open-file limit for both, interleaves the targets in each
repetition and reports medians. Rows:

1. chat latency (open loop), with what each message costs the server's and
   PostgreSQL's CPU at that rate; 2. chat throughput (closed loop, ramped),
   with what each message costs Redis's and PostgreSQL's CPU at the best rate;
3. idle sockets held after a connect storm (failures, RSS per connection
   from VmRSS, idle CPU, Redis connections per server, connect rate);
4. dashboard refresh cost in Redis (main.presence's live listing after one
   arrival, and a worker's first read of everyone, against the chapter's
   `KEYS customer-service_*`, in B's column) with unrelated keys around,
   and what one arrival costs with several dashboards open;
5. heartbeats one P worker absorbs at 1,000 and 2,000 a second, with its
   CPU, Redis commands (INFO commandstats, counting those inside scripts),
   Redis's CPU and SQL per heartbeat;
6. REST my-orders against the plain view (B's column), same token auth;
7. the tracker against the courier stand-in called directly (B's column);
8. what one dashboard's event stream on P is sent while N people are
   present (made present through the touch script in Redis, each
   heartbeating every 10 s) and 1% of N arrive and as many leave each
   second (a stay of 100 s on average; a departure is a heartbeat not sent,
   so the presence expires): the first event (the whole list), the median
   and largest later event and the bytes a minute after the first, for
   `?format=v2` (only what changed after the first) against the chapter's
   form on the same server (the whole list each time, B's column), each
   measured alone over the same window;
9. a storm of fresh handshakes (100 at a time): server CPU per handshake
   and handshakes per second, v1 on P and B, and P's v2 with its catch-up
   (read markers, the conversation, the latest history page);
10. the reconnect storm: a worker holding N sockets is restarted as a
   deploy does (docs/operations.md): its successor started on its port
   (SO_REUSEPORT), then it is stopped; its clients reconnect at once, after
   a random delay of up to 0.5 s (P's as v2 clients resuming from their
   last seq, with a message stored meanwhile in every 20th room through
   another worker, which each must get); seconds from the stop until all
   are back, until the last was closed, until the old worker exited.

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
raised (BENCH_LIMITS): the closed loop answers far faster than a person;
and without the per-user socket cap (SOCKET_CAPS_OFF): one agent is in
every room.

This module is the command line and the order of the run. The rest:
bench.stack (the processes and what they say), bench.machine (CPUs and
/proc), bench.chat_rows (rows 1-3), bench.presence_rows (rows 4-5),
bench.http_rows (rows 6-7), bench.stream_rows (row 8), bench.sweep, bench.loadgen (the chat clients),
bench.report (the table and results.json) and bench.plot.
"""

import argparse
import sys
import time

from harness.servers import ROOT

from . import chat_rows, handshake_rows, http_rows, presence_rows, stream_rows, sweep
from .machine import LOADGEN_CPU, pinned
from .report import ARTIFACTS, HEADER, Report, describe_machine
from .stack import P_COMMITS, P_SERVERS, QUICK_SQL_SETTLE, SHIPPED_SERVER, SQL_SETTLE, BenchStack

PLOT = ROOT / "docs" / "bench-latency.png"  # a full run's; a quick run's stays in ARTIFACTS


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
        "--rows", default="1,2,3,4,5,6,7,8,9,10,sweep", help="the rows to measure, and `sweep` for the latency sweep"
    )
    args = parser.parse_args()
    rows_wanted = set(args.rows.split(","))
    pinned(LOADGEN_CPU)()  # and the open-file limit raised, for row 3's sockets

    quick = args.quick
    reps = args.reps or (1 if quick else 3)
    latency_cases = [(10, 50)] if quick else [(100, 200), (500, 200), (100, 500), (500, 500)]
    seconds = 1 if quick else 30
    ramp = [10] if quick else [10, 25, 50, 100, 200, 400]
    idle_counts, idle_seconds = ([200], 1) if quick else ([2000, 10000], 20)
    present, unrelated = ([1000], [0, 10000]) if quick else ([1000, 10000, 100000], [0, 100000])
    refreshes = 5 if quick else 20
    dashboards, arrivals = ([1, 10], 3) if quick else ([1, 10, 50], 20)
    # (sockets, heartbeats/s, seconds): no socket beats twice in a batch's window
    heartbeats = (100, [400], 1) if quick else (1000, [1000, 2000], 10)
    order_counts = [10, 100] if quick else [10, 100, 1000]
    http_seconds = 0.5 if quick else 10
    stream_present, stream_window = ([150], 3) if quick else ([1500, 15000], 60)  # (people present, seconds)
    handshake_count = 100 if quick else 2000  # row 9's storm
    restart_counts = [100] if quick else [2000, 10000]  # row 10's worker holds this many
    # The sweep: (rooms, total rates in msg/s, seconds per point, budget in s).
    sweep_plan = (4, [25, 100], 0.5, 15) if quick else (100, [100, 200, 500, 1000, 2000, 5000], 5, 600)
    names = args.targets.split(",")
    report = Report()
    started = time.monotonic()

    def mark(what):
        print(f"# {what} done at {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)

    stack = BenchStack(
        # A chat per two sockets in rows 3, 9 and 10 (a customer and an agent
        # each), as many as a customer-service crowd has.
        rooms=max(r for r, _ in latency_cases) if not quick else max(ramp + [10]),
        chats=max(idle_counts + restart_counts + [handshake_count]) // 2,
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
        if "1" in rows_wanted:
            chat_rows.latency(stack, report, names, latency_cases, seconds, reps)
        if "2" in rows_wanted:
            chat_rows.throughput(stack, report, names, ramp, seconds, reps)
        stack.check_logs()
        mark("rows 1-2")
        for count in idle_counts if "3" in rows_wanted else ():
            chat_rows.idle_sockets(stack, report, names, count, idle_seconds)
        mark("row 3")
        if "4" in rows_wanted:
            presence_rows.presence_cost(stack, report, present, unrelated, refreshes)
        if "4" in rows_wanted and "P" in names:
            presence_rows.open_dashboards(stack, report, dashboards, arrivals)
        mark("row 4")
        if "P" in names and "5" in rows_wanted:
            sockets, rates, beat_seconds = heartbeats
            for rate in rates:
                presence_rows.heartbeat_cost(stack, report, sockets, rate, beat_seconds)
            mark("row 5")
        if "P" in names and "6" in rows_wanted:
            http_rows.rest(stack, report, order_counts, http_seconds)
            mark("row 6")
        if "P" in names and "7" in rows_wanted:
            http_rows.tracker(stack, report, http_seconds)
            mark("row 7")
        if "P" in names and "8" in rows_wanted:
            stream_rows.dashboard_stream(stack, report, stream_present, stream_window)
            mark("row 8")
        if "9" in rows_wanted:
            handshake_rows.handshakes(stack, report, names, handshake_count, reps)
            stack.check_logs()
            mark("row 9")
        for count in restart_counts if "10" in rows_wanted else ():
            handshake_rows.reconnect_storm(stack, report, names, count)
            stack.check_logs()
            mark(f"row 10, {count} sockets")
        if "sweep" in rows_wanted:
            # Last: it takes each target into overload, which must not weigh on the rows.
            rooms, rates, point_seconds, budget = sweep_plan
            report.sweep = sweep.latency_sweep(stack, report, names, rooms, rates, point_seconds, reps, budget)
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
