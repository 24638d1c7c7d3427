"""Resources that belong to one event loop, as redis.asyncio and aiohttp
connection pools do: one per loop, so one per server process (a worker runs
a single loop) and a fresh one for each test's loop.

They are closed as the server stops: by the ASGI lifespan's shutdown under
uvicorn (`lifespan` below, routed in booktime.asgi), and under runserver,
whose daphne runs on a Twisted reactor without a lifespan, by a reactor
shutdown trigger before the loop stops.
"""

import asyncio
import logging
import sys
import weakref

logger = logging.getLogger(__name__)

_by_loop = weakref.WeakKeyDictionary()  # loop -> {name: (resource, close)}


async def _nothing_to_release(resource):
    pass


def get(name, create, close=_nothing_to_release):
    """The running loop's resource `name`, made by `create()` on first use;
    `await close(resource)` releases it."""
    loop = asyncio.get_running_loop()
    resources = _by_loop.get(loop)
    if resources is None:
        resources = _by_loop[loop] = {}
        _close_all_at_reactor_shutdown()
    if name not in resources:
        resources[name] = (create(), close)
    return resources[name][0]


def loops():
    """The loops that hold resources now."""
    return list(_by_loop)


async def close(name):
    """Release the running loop's resource `name`, if it has one."""
    entry = _by_loop.get(asyncio.get_running_loop(), {}).pop(name, None)
    if entry is not None:
        resource, release = entry
        await release(resource)


async def close_all():
    names = list(_by_loop.get(asyncio.get_running_loop(), {}))
    for name in names:
        await close(name)
    logger.info("Closed the shared connections: %s", ", ".join(names) or "none")


async def lifespan(scope, receive, send):
    """The ASGI lifespan: nothing to open at start-up (resources are made on
    first use); at shutdown, once every connection has been served, close them."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await close_all()
            await send({"type": "lifespan.shutdown.complete"})
            return


def _close_all_at_reactor_shutdown():
    # Twisted's reactor is imported in every process (daphne is an installed
    # app, for runserver) but runs only under runserver.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is not None and reactor.running:
        from twisted.internet.defer import Deferred

        reactor.addSystemEventTrigger(
            "before", "shutdown", lambda: Deferred.fromFuture(asyncio.ensure_future(close_all()))
        )
