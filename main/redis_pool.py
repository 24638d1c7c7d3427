"""The process's one Redis client (and connection pool) for our own use:
presence and chat rate limits. The channel layer keeps its own pool.

redis.asyncio connections belong to the event loop that opened them, so the
client is kept per loop: a server process has one loop, hence one pool; a test
suite that runs a loop per test gets a fresh pool each time.
"""

import asyncio
import weakref

import redis.asyncio as redis
from django.conf import settings

# Every call fails fast rather than hang a consumer when Redis is unreachable.
SOCKET_TIMEOUT = 2.0
MAX_CONNECTIONS = 10

_clients = weakref.WeakKeyDictionary()


def get_redis():
    """The shared client for the running event loop (settings.REDIS_URL)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            max_connections=MAX_CONNECTIONS,
            health_check_interval=30,
        )
        _clients[loop] = client
    return client


async def close_redis():
    """Close the running loop's pool (at shutdown, and between tests)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()
