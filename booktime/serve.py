"""Run a production worker: our application on uvicorn (uvloop, httptools,
the `websockets` package's sans-I/O protocol), the server the bench measured
fastest (docs/benchmarks.md, "Which server").

    python -m booktime.serve -b 127.0.0.1 -p 8101

Logging goes through Django's LOGGING (settings.py), whose handler keeps
query strings out of every line (the mobile app sends its token as
`?token=`): uvicorn's access and WebSocket lines included. Proxy headers
(X-Forwarded-For, X-Forwarded-Proto) are trusted from FORWARDED_ALLOW_IPS,
by default 127.0.0.1 (nginx on the same host, deploy/nginx.conf).
"""

import argparse
import asyncio
import contextlib
import functools
import gc
import logging
import os
import signal
import socket
import sys
import time

import uvicorn
from uvicorn.importer import import_from_string

from main.infra import lifecycle, server

logger = logging.getLogger("uvicorn.error")  # with uvicorn's start-up lines, at its verbosity

# A stop (SIGTERM or Ctrl-C) closes every chat socket with 1012 (service
# restart: clients reconnect and resume), lets their consumers leave their
# chats, then closes the shared connections (ASGI lifespan, main.per_loop).
# A response still streaming after this long (a dashboard's event stream) is
# cancelled; the browser reconnects to another worker.
SHUTDOWN_GRACE_SECONDS = 5


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m booktime.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument(
        "-v", "--verbosity", type=int, default=1, choices=(0, 1), help="0: warnings only, no access log"
    )
    parser.add_argument(
        "--reuse-port",
        action="store_true",
        help="let a worker started later on this port take over from this one (SO_REUSEPORT)",
    )
    parser.add_argument("application", nargs="?", default="booktime.asgi:application")
    args = parser.parse_args(argv)

    application = import_from_string(args.application)  # sets Django and its logging up
    from django.conf import settings

    collector = Collector()
    server.configure(
        on_close=collector.closed,
        max_header_bytes=settings.SERVER_MAX_HEADER_BYTES,
        header_timeout=settings.SERVER_HEADER_TIMEOUT,
        send_timeout=settings.SERVER_SEND_TIMEOUT,
    )
    # uvicorn re-raises the SIGTERM it handled once it has shut down; a
    # clean stop then exits with 0 rather than die of the signal.
    signal.signal(signal.SIGTERM, lambda signum, frame: exit_now(0))
    tune_garbage_collection()  # the application and Django are loaded by now
    try:
        sockets = shared_sockets(args.bind, args.port, settings.SERVER_LISTEN_BACKLOG) if args.reuse_port else None
    except OSError as error:
        parser.exit(3, f"cannot listen on {args.bind}:{args.port}: {error}\n")
    config = uvicorn.Config(
        application,
        host=args.bind,
        port=args.port,
        loop="uvloop",
        http=server.LimitedHttpProtocol,  # httptools, with header limits and a send timeout
        ws=server.LimitedWebSocketProtocol,  # websockets' sans-I/O protocol, likewise
        ws_max_size=settings.CHAT_MAX_FRAME_BYTES,
        ws_ping_interval=settings.WS_PING_INTERVAL,
        ws_ping_timeout=settings.WS_PING_TIMEOUT,
        timeout_keep_alive=settings.SERVER_KEEPALIVE_TIMEOUT,
        # Chat frames are small: compressing them saves little and costs each
        # socket a compressor and a decompressor (zlib state, tens of KB).
        ws_per_message_deflate=False,
        lifespan="auto",  # ours closes the shared connections; the bench's baseline has none
        log_config=None,  # Django's LOGGING, with its query-string filter
        log_level=None if args.verbosity else "warning",
        access_log=bool(args.verbosity),
        server_header=False,
        backlog=settings.SERVER_LISTEN_BACKLOG,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    worker = Worker(config, collector)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, re-raised once uvicorn has shut down
        worker.run(sockets=sockets)
    if not worker.started:
        sys.exit(3)  # as uvicorn.run: the application's start-up failed
    exit_now(0)


def exit_now(code):
    """Exit once the server has shut down (its connections closed, the
    shared ones too) without freeing the heap object by object, which takes
    a worker that held thousands of sockets a second or more of CPU, taken
    from the worker that has its port now."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class Worker(uvicorn.Server):
    """uvicorn's server, saying where it listens when it is given its
    sockets (uvicorn says so only of sockets it binds itself), and saying
    once how many connections its stop closes."""

    def __init__(self, config, collector):
        super().__init__(config)
        self.collector = collector

    async def shutdown(self, sockets=None):
        lifecycle.begin_stop()
        # The process exits once its connections are closed. Until then the
        # collector would scan the objects of thousands of closing sockets,
        # CPU the successor needs for their reconnections; what has no
        # cycles is freed as ever.
        self.collector.stop()
        logger.info("Stopping: closing %d connections (chat sockets with 1012)", len(self.server_state.connections))
        await super().shutdown(sockets)

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started and sockets:
            host, port = sockets[0].getsockname()[:2]
            backlog = min(self.config.backlog, somaxconn())
            logger.info("Listening on %s:%d: %d sockets, a backlog of %d each", host, port, len(sockets), backlog)


def shared_sockets(host, port, backlog):
    """The worker's listening sockets, which a worker started later binds as
    well: while both listen the kernel spreads new connections over them,
    so the old one can stop (closing its sockets with 1012) with its clients
    reconnecting to the new one, never to a closed port. The kernel caps
    each socket's backlog at net.core.somaxconn, so the worker listens on
    as many as together hold `backlog` connections."""
    return [shared_socket(host, port) for _ in range(-(-backlog // somaxconn()))]


@functools.cache  # read once, for the sockets and for the line that describes them
def somaxconn():
    """The kernel's cap on a listening socket's backlog."""
    try:
        with open("/proc/sys/net/core/somaxconn") as cap:
            return max(1, int(cap.read()))
    except (OSError, ValueError):
        return 4096  # Linux's default since 5.4


def shared_socket(host, port):
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


# Python's cyclic garbage collector scans every object it tracks in a full
# collection, and a worker holding thousands of sockets tracks millions, so
# each full collection stops the event loop for a long moment. Objects made
# while the server starts are frozen out of the scans, and collections run
# far less often. Garbage without cycles is freed at once as ever; cyclic
# garbage waits a little longer. The middle generation runs every 20th
# young collection: running it more often shortens its pauses while a
# worker takes thousands of sockets at once, but moves cyclic garbage on to
# the oldest generation sooner, where it waits for a full collection, so a
# steady worker holds more memory and spends more CPU.
GC_THRESHOLDS = (50_000, 20, 100)  # Python's defaults: (700, 10, 10)


# A closed HTTP connection leaves some of its objects (Django's request
# handling: tasks, exceptions and their tracebacks) as cyclic garbage, old
# by then, which only a full collection frees; with the thresholds above one
# seldom comes, and a worker grows, and slows, with each wave of closes. So
# a full collection follows every COLLECT_AFTER_CLOSES closes, a moment
# after the last of them (a wave of closes is freed in one), once the worker
# is quiet: the collection stops the event loop for a moment, better between
# bursts of messages than in one. A chat socket leaves no garbage, and a
# collection scans every live object, garbage or not: one that found under
# FEW_PER_CLOSE objects per close doubles the closes before the next, up to
# COLLECT_AFTER_CLOSES_MAX, and one that found more brings them back.
COLLECT_AFTER_CLOSES = 1000
COLLECT_AFTER_CLOSES_MAX = 64 * COLLECT_AFTER_CLOSES
FEW_PER_CLOSE = 10
COLLECT_DELAY_SECONDS = 1.0
QUIET_CHECK_SECONDS = 0.25  # how often a due collection looks whether the worker is quiet
QUIET_SHARE = 0.25  # quiet: it used less than this share of a core since the last look
COLLECT_WAIT_MAX_SECONDS = 10.0  # a busy worker collects anyway once due this long


class Collector:
    """Counts closed connections (`closed`, server.ON_CLOSE) and runs a full
    collection after every `every` of them (COLLECT_AFTER_CLOSES, more while
    collections find little): COLLECT_DELAY_SECONDS later, at the first look
    that finds the worker quiet, or at the latest COLLECT_WAIT_MAX_SECONDS
    later; none once the worker stops (`stop`)."""

    def __init__(self):
        self.closes = 0
        self.every = COLLECT_AFTER_CLOSES
        self.pending = None
        self.due_since = self.cpu = self.at = 0.0
        self.stopped = False

    def closed(self):
        self.closes += 1
        if self.closes >= self.every and self.pending is None and not self.stopped:
            loop = asyncio.get_running_loop()
            self.due_since = loop.time() + COLLECT_DELAY_SECONDS
            self.pending = loop.call_later(COLLECT_DELAY_SECONDS - QUIET_CHECK_SECONDS, self.look, loop)

    def look(self, loop):
        """Collect if the worker was quiet since the last look, or has waited long enough."""
        cpu, at = time.process_time(), loop.time()
        quiet = at >= self.due_since and cpu - self.cpu < QUIET_SHARE * (at - self.at)
        if quiet or at - self.due_since >= COLLECT_WAIT_MAX_SECONDS:
            self.collect()
        else:
            self.cpu, self.at = cpu, at
            self.pending = loop.call_later(QUIET_CHECK_SECONDS, self.look, loop)

    def collect(self):
        self.pending = None
        closes, self.closes = self.closes, 0
        found = gc.collect()
        if found < FEW_PER_CLOSE * closes:
            self.every = min(2 * self.every, COLLECT_AFTER_CLOSES_MAX)
        else:
            self.every = COLLECT_AFTER_CLOSES

    def stop(self):
        """No collection from now on: the process is about to exit."""
        self.stopped = True
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        gc.disable()


def tune_garbage_collection():
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


if __name__ == "__main__":
    main()
