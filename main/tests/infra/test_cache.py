"""Django's cache on one Redis connection pool per process (main/infra/cache.py)."""

import threading

from django.core.cache import caches

from main.infra.cache import SharedPoolRedisCache


def in_thread(work):
    """work()'s result, run in a thread of its own, as Django runs each request."""
    result = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join(timeout=10)
    return result[0]


def test_requests_each_with_their_own_cache_object_share_one_connection():
    def request():
        cache = caches["default"]
        cache.set("shared-pool-test", 1, timeout=5)
        return cache, cache._cache.get_client().client_id()

    seen = [in_thread(request) for _ in range(3)]
    assert len({id(cache) for cache, _ in seen}) == 3  # Django's doing: a cache object per request
    assert len({client_id for _, client_id in seen}) == 1  # and yet one Redis connection


def test_after_redis_restarts_the_pooled_connection_is_replaced(throwaway_redis):
    redis = throwaway_redis()
    cache = SharedPoolRedisCache(redis.url, {"OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2}})
    cache.set("before", 1)
    redis.stop()
    redis.start()
    assert cache.get("before") is None  # an empty Redis, reached on a fresh connection
    cache.set("after", 2)
    assert cache.get("after") == 2
