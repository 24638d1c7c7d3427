"""Django's Redis cache on one connection pool per process.

Django gives each request its own cache object (its connections are
context-local), and its RedisCache makes a connection pool per object: every
request that reached the cache opened a Redis connection of its own, and
redis-py's handshake on it (reading the package's metadata from disk, then
HELLO and CLIENT SETINFO) cost more than the command it was opened for."""

import threading

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from .redis_client import retry_once

_pools = {}  # (server, options) -> the process's pool for them
_pools_lock = threading.Lock()  # requests run in threads of their own


class SharedPoolClient(RedisCacheClient):
    """RedisCacheClient, taking its pools from the process's."""

    def _get_connection_pool(self, write):
        server = self._servers[self._get_connection_pool_index(write)]
        key = (server, repr(sorted(self._pool_options.items())))
        pool = _pools.get(key)
        if pool is None:
            with _pools_lock:
                pool = _pools.get(key)
                if pool is None:
                    options = {"retry": retry_once(sync=True), **self._pool_options}
                    pool = _pools[key] = self._pool_class.from_url(server, **options)
        return pool


class SharedPoolRedisCache(RedisCache):
    """The cache backend (settings.CACHES) with SharedPoolClient."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedPoolClient
