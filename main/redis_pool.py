"""The process's one Redis client (and connection pool) for our own use:
presence. The channel layer keeps its own pool. Kept per event loop (see
main/per_loop.py) and closed at server shutdown."""

import redis.asyncio as redis
from django.conf import settings

from . import per_loop

# Every call fails fast rather than hang a consumer when Redis is unreachable.
SOCKET_TIMEOUT = 2.0
# At most this many connections; a caller past it waits for a free one (up
# to SOCKET_TIMEOUT) rather than fail, as redis-py's plain pool would. With
# the pub/sub channel layer's two, a worker holds at most 20 in all.
MAX_CONNECTIONS = 18


def _client():
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=SOCKET_TIMEOUT,
        health_check_interval=30,
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool


async def _close(client):
    await client.aclose()


def get_redis():
    """The shared client for the running event loop (settings.REDIS_URL)."""
    return per_loop.get("redis", _client, _close)


async def close_redis():
    """Close the running loop's pool (at shutdown, and between tests)."""
    await per_loop.close("redis")
