"""The channel layer we ship: channels_redis's RedisChannelLayer whose Redis
pool makes a command wait for a free connection when all are busy. redis-py's
plain async pool raises MaxConnectionsError at once instead, which failed
handshakes and disconnects in a burst of sockets connecting together."""

import redis.asyncio as redis
from channels_redis.core import RedisChannelLayer

POOL_TIMEOUT = 5.0  # seconds a command may wait for a pooled connection


class WaitingRedisChannelLayer(RedisChannelLayer):
    def create_pool(self, index):
        host = dict(self.hosts[index])
        if "address" not in host:  # Sentinel and other forms: channels_redis's own pool
            return super().create_pool(index)
        return redis.BlockingConnectionPool.from_url(host.pop("address"), timeout=POOL_TIMEOUT, **host)
