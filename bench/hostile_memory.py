"""What hostile clients make a worker hold: its resident memory (RSS) while
sockets of one customer send oversized frames, and while a client stops
reading during a busy chat. One worker of the shipped application, with its
production limits, on the soak's database.

    python -m bench.hostile_memory [--frames 20] [--frame-mib 8] [--busy-seconds 20]

Prints a table for docs/benchmarks.md ("Memory under hostile clients").
"""

import argparse
import contextlib
import json
import os
import threading
import time

from websockets.sync.client import connect

from harness.wire import oversized_frame_header, raw_websocket

from .stack import BENCH_LIMITS, SOAK_DATABASE, Stack

V2 = "booktime.chat.v2"


class HostileStack(Stack):
    """One worker with its production limits but the chat's per-socket rate
    out of the way (a busy chat from one sender), on the soak's database."""

    def __init__(self):
        super().__init__("hostile", os.environ.get("BENCH_DATABASE_URL", SOAK_DATABASE), "hostile-only")
        try:
            self.prepare_database(2)
            self.env.update(BENCH_LIMITS)
            self.server = self.serve("P")
        except BaseException:
            self.stop()
            raise


def rss_mib(server):
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def oversized_frames(server, order_id, key, count, mib):
    """`count` sockets each announce a frame of `mib` MiB and send its first MiB."""
    before, peak = rss_mib(server), 0.0
    started, closed_by_server = time.monotonic(), 0
    for _ in range(count):
        conn = raw_websocket(server.port, order_id, key)
        length = mib * 1024 * 1024
        conn.sendall(oversized_frame_header(length))
        with contextlib.suppress(OSError):
            conn.sendall(os.urandom(min(length, 1024 * 1024)))
        peak = max(peak, rss_mib(server))
        try:
            while conn.recv(65536):
                pass
            closed_by_server += 1
        except ConnectionResetError:
            closed_by_server += 1
        except TimeoutError:
            pass  # the server still waits for the rest of the frame: the client gives up
        conn.close()
    return before, max(peak, rss_mib(server)), time.monotonic() - started, closed_by_server


def busy_chat_with_a_stuck_reader(server, order_id, customer_key, agent_key, seconds):
    """An agent sends 2,000-character messages as fast as they are stored
    while the customer's socket reads nothing: peak RSS, and when the stuck
    socket was cut off (the agent hears its chat_leave)."""
    before = rss_mib(server)
    stuck = raw_websocket(server.port, order_id, customer_key, rcvbuf=4096)
    agent = connect(f"{server.ws_url}/ws/customer-service/{order_id}/?token={agent_key}", subprotocols=[V2])
    peak, left_after, stop = before, None, threading.Event()
    began = time.monotonic()

    def sample():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_mib(server))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sent = 0
    try:
        while time.monotonic() - began < seconds:
            agent.send(json.dumps({"type": "message", "message": f"{sent} " + "b" * 1990}))
            sent += 1
            while True:  # its echo, and whatever else comes first
                event = json.loads(agent.recv(timeout=10))
                if event["type"] == "chat_leave" and left_after is None:
                    left_after = time.monotonic() - began
                if event["type"] == "chat_message" and event.get("mine"):
                    break
    finally:
        stop.set()
        sampler.join()
        agent.close()
        stuck.close()
    return before, peak, left_after, sent


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.hostile_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--frame-mib", type=int, default=8)
    parser.add_argument("--busy-seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    stack = HostileStack()
    try:
        server = stack.server
        (order_id, customer_key, agent_key), _ = stack.rooms
        # Warm: the worker has served a chat once.
        with connect(f"{server.ws_url}/ws/customer-service/{order_id}/?token={customer_key}", subprotocols=[V2]) as ws:
            ws.recv(timeout=10)
        before, peak, took, closed = oversized_frames(server, order_id, customer_key, args.frames, args.frame_mib)
        print(
            f"| {args.frames} sockets one after another, each announcing a {args.frame_mib} MiB frame and sending "
            f"its first MiB | {before:.1f} | {peak:.1f} (peak) | {peak - before:+.1f} | "
            f"{closed} of {args.frames} closed by the server; {took:.1f} s in all |"
        )
        before, peak, left_after, sent = busy_chat_with_a_stuck_reader(
            server, order_id, customer_key, agent_key, args.busy_seconds
        )
        left = f"cut off after {left_after:.1f} s" if left_after is not None else "not cut off"
        print(
            f"| a socket that stops reading, {sent} messages of 2,000 characters in {args.busy_seconds:.0f} s | "
            f"{before:.1f} | {peak:.1f} (peak) | {peak - before:+.1f} | {left} |"
        )
        stack.check_logs()
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
