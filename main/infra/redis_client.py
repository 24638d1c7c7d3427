"""The process's one Redis client (and connection pool) for our own use,
kept per event loop (main/infra/per_loop.py) and closed at server shutdown;
and the one retry policy for every Redis connection we make."""

import redis.asyncio as redis
from django.conf import settings
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError
from redis.retry import Retry as SyncRetry
from redis.utils import HIREDIS_AVAILABLE

from . import per_loop

# Every call fails fast rather than hang a consumer when Redis is unreachable.
SOCKET_TIMEOUT = 2.0
# At most this many connections; a caller past it waits for a free one (up
# to SOCKET_TIMEOUT) rather than fail, as redis-py's plain pool would. With
# the pub/sub channel layer's two, a worker holds at most 20 in all.
MAX_CONNECTIONS = 18


class Connection(redis.Connection):
    """redis.asyncio's TCP connection, its commands packed by hiredis (in C)
    as redis-py's sync connections pack theirs: its own packs each argument
    in Python, copying the command so far for each, which made a batch of
    heartbeats cost more to pack than to send."""

    if HIREDIS_AVAILABLE:
        _packer = HiredisRespSerializer()

        def pack_command(self, *args):
            return self._packer.pack(*args)


def retry_once(sync=False):
    """A command whose connection failed is sent once more on a fresh one:
    after a Redis restart every pooled connection is dead, and without this
    the first command on each would fail. Timeouts are not retried. For
    redis.asyncio's connections, or with `sync` redis-py's (main.infra.cache)."""
    return (SyncRetry if sync else Retry)(NoBackoff(), 1, supported_errors=(ConnectionError,))


class TellingPubSub(PubSub):
    """A subscription that calls `on_reconnect()` each time redis-py mends
    its broken connection and subscribes again by itself: whatever was
    published in between never arrived, and its listeners must know."""

    def __init__(self, connection_pool, on_reconnect, keep=None):
        super().__init__(connection_pool)
        self.on_reconnect = on_reconnect
        self.keep = keep

    async def on_connect(self, connection):
        # Called on every reconnection (the first connection comes from the
        # pool, already open). redis-py subscribes again to every channel it
        # knows, also those whose unsubscribe failed while Redis was away:
        # only those its owner still `keep`s.
        if self.keep is not None:
            for name in [name for name in self.channels if not self.keep(self._text(name))]:
                del self.channels[name]
            self.pending_unsubscribe_channels.clear()
        await super().on_connect(connection)
        self.on_reconnect()

    @staticmethod
    def _text(name):
        return name.decode() if isinstance(name, bytes) else name


def pool_options(**options):
    """What every Redis pool of ours is made with (from_url's keyword
    arguments), unless `options` say otherwise: our connections, and
    retry_once. A unix:// or rediss:// URL keeps its own connection class."""
    return {"connection_class": Connection, "retry": retry_once(), **options}


def _client():
    pool = redis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        **pool_options(
            max_connections=MAX_CONNECTIONS,
            timeout=SOCKET_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
        ),
    )
    return redis.Redis.from_pool(pool)  # the client owns the pool: closing it closes the pool


def get_redis():
    """The shared client for the running event loop (settings.REDIS_URL)."""
    return per_loop.get("redis", _client, redis.Redis.aclose)


async def close_redis():
    """Close the running loop's pool (at shutdown, and between tests)."""
    await per_loop.close("redis")
