"""The channel layers we ship (settings.CHANNEL_LAYER picks one):

- PubSubChannelLayer, the default: channels_redis's pub/sub layer, which also
  tells its consumers when its subscription to Redis broke;
- WaitingRedisChannelLayer: channels_redis's RedisChannelLayer (a list per
  channel in Redis, capacity and group expiry) whose Redis pool makes a
  command wait for a free connection when all are busy. redis-py's plain async
  pool raises MaxConnectionsError at once instead, which failed handshakes and
  disconnects in a burst of sockets connecting together.
"""

import asyncio
import itertools
import logging
import operator
import uuid

import redis.asyncio as redis
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisSingleShardConnection
from redis.exceptions import RedisError

from . import metrics
from .batching import Batches
from .redis_client import TellingPubSub, pool_options

logger = logging.getLogger(__name__)

POOL_TIMEOUT = 5.0  # seconds a command may wait for a pooled connection
MAX_SUBSCRIPTION_CHANGES = 1000  # channels named in one SUBSCRIBE or UNSUBSCRIBE batch
SUBSCRIBE, UNSUBSCRIBE = "subscribe", "unsubscribe"


async def count_channels():
    """The channels this process's layer holds, as a metric (a channel left
    behind by a consumer that ended shows as a count that only grows)."""
    layer = get_channel_layer()
    inner = layer._get_layer() if isinstance(layer, RedisPubSubChannelLayer) else layer
    channels = getattr(inner, "channels", None)
    if channels is not None:
        metrics.CHANNEL_LAYER_CHANNELS.set(len(channels))


class WaitingRedisChannelLayer(RedisChannelLayer):
    def create_pool(self, index):
        host = pool_options(**self.hosts[index])
        if "address" not in host:  # Sentinel and other forms: channels_redis's own pool
            return super().create_pool(index)
        return redis.BlockingConnectionPool.from_url(host.pop("address"), timeout=POOL_TIMEOUT, **host)


# --- The pub/sub layer ----------------------------------------------------------

# The message every local channel gets when the layer's subscription to Redis
# was broken: anything published meanwhile never reached this process.
LOST = {"type": "channel_layer.lost"}


class PubSubChannelLayer(RedisPubSubChannelLayer):
    """channels_redis's pub/sub layer (one subscription per process, messages
    pushed to it), which also tells its consumers when that subscription
    broke. redis-py reconnects and subscribes again on its own, silently, and
    what was published in between is gone; so each channel in the process
    gets LOST (a chat socket is closed with 4503, and its client resumes
    from the database, as after a worker restart)."""

    # A group lasts as long as the subscription, in this process: no expiry
    # for the consumers to renew on a heartbeat.
    groups_expire = False

    async def new_channel(self, prefix="specific."):
        # channels_redis's, but a channel whose subscription failed (Redis
        # unreachable) is not left behind in the process.
        layer = self._get_layer()
        channel = f"{layer.prefix}{prefix}{uuid.uuid4().hex}"
        layer.channels[channel] = asyncio.Queue()
        try:
            await layer._get_shard(channel).subscribe(channel)
        except BaseException:
            layer.channels.pop(channel, None)
            raise
        return channel

    async def group_add(self, group, channel):
        # Likewise, a membership whose subscription failed is forgotten.
        layer = self._get_layer()
        try:
            await layer.group_add(group, channel)
        except BaseException:
            members = layer.groups.get(layer._get_group_channel_name(group))
            if members is not None:
                members.discard(channel)
                if not members:
                    del layer.groups[layer._get_group_channel_name(group)]
            raise

    async def delete_channel(self, channel):
        """Forget a consumer's channel once the consumer has ended.

        channels_redis drops a channel only when Channels cancels the
        consumer's pending receive. A consumer that ends while handling a
        message from its channel (its own chat_leave coming back as it goes,
        say) has no pending receive, and its channel stayed subscribed and
        queued in memory until the worker stopped (channels_redis issue 276).
        Our consumers call this as they end (main.infra.consumer).
        """
        layer = self._get_layer()
        if layer.channels.pop(channel, None) is not None:
            await layer._get_shard(channel).unsubscribe(channel)

    def _get_layer(self):
        # Every call of the layer's asks for the running loop's; it is asked
        # once here (Python 3.11 checks the process id with a system call).
        layer = self._layers.get(asyncio.get_running_loop())
        if layer is None:
            layer = super()._get_layer()
            layer._shards = [_Shard(shard.host, layer) for shard in layer._shards]
        return layer


class _Shard(RedisSingleShardConnection):
    told = False  # the channels were told of the current outage already

    def __init__(self, host, channel_layer):
        if "address" in host:
            # Publishing after a Redis restart finds the pooled connection
            # dead: sent again on a fresh one, as every Redis pool of ours does.
            host = pool_options(**host)
        super().__init__(host, channel_layer)
        self.publishes = Batches(self._publish_batch)
        self.subscription_changes = Batches(self._change_subscriptions, max_batch=MAX_SUBSCRIPTION_CHANGES)

    async def publish(self, channel, message):
        # channels_redis publishes under the shard's lock, one round trip at a
        # time, so every group_send of the process waited on the one before.
        await self.publishes((channel, message))

    async def _publish_batch(self, batch):
        self._ensure_redis()
        async with self._redis.pipeline(transaction=False) as pipe:
            for channel, message in batch:
                pipe.publish(channel, message)
            return await pipe.execute()

    async def subscribe(self, channel):
        # channels_redis subscribes one channel per round trip under the
        # shard's lock, so a storm of handshakes (two subscriptions each: the
        # consumer's channel and its chat) queued on it; what arrives while
        # one change is on its way goes out together as the next.
        await self.subscription_changes((SUBSCRIBE, channel))

    async def unsubscribe(self, channel):
        # Likewise batched: a worker's sockets closing together (a restart)
        # are a few UNSUBSCRIBEs, not two round trips each in a line. The
        # change goes out even if its caller, which is ending, is cancelled
        # meanwhile; one that failed (Redis down) is logged, and not
        # subscribed again when Redis is back (TellingPubSub's keep).
        try:
            await self.subscription_changes((UNSUBSCRIBE, channel))
        except (RedisError, OSError) as error:
            logger.warning("Channel layer: an unsubscribe failed (%s)", error)
        except asyncio.CancelledError:
            pass

    async def _change_subscriptions(self, changes):
        """Make the subscription changes asked, in order, one command for
        each run of subscribes or unsubscribes, each only to what is still
        wanted, or unwanted, by then."""
        async with self._lock:
            self._ensure_redis()
            self._ensure_receiver()
            for kind, run in itertools.groupby(changes, key=operator.itemgetter(0)):
                subscribing = kind == SUBSCRIBE
                # Only what still needs it: a subscribe's caller may have
                # been cancelled meanwhile, an unsubscribed name wanted again.
                names = [
                    name
                    for name in dict.fromkeys(name for _, name in run)
                    if (name in self._subscribed_to) != subscribing and self._wanted(name) == subscribing
                ]
                if not names:
                    continue
                if subscribing:
                    await self._pubsub.subscribe(*names)
                    self._subscribed_to.update(names)
                else:
                    await self._pubsub.unsubscribe(*names)
                    self._subscribed_to.difference_update(names)
        return [None] * len(changes)

    def _ensure_redis(self):
        if self._redis is None:
            super()._ensure_redis()
            self._pubsub = TellingPubSub(self._redis.connection_pool, on_reconnect=self._reconnected, keep=self._wanted)

    def _wanted(self, name):
        """Whether the process still has a channel or group named `name`."""
        layer = self.channel_layer
        wanted = name in layer.channels or name in layer.groups
        if not wanted:
            self._subscribed_to.discard(name)
        return wanted

    def _reconnected(self):
        # Either the end of an outage the channels were told of, or a break
        # redis-py mended by itself, which nobody has heard of yet.
        if self.told:
            self.told = False
        else:
            self._lost()

    def _lost(self):
        layer = self.channel_layer
        logger.warning("Channel layer: the Redis subscription broke; telling %d channels", len(layer.channels))
        message = layer.channel_layer.serialize(LOST)
        for queue in layer.channels.values():
            queue.put_nowait(message)

    async def _do_receiving(self):
        # channels_redis's loop, with a warning (not a traceback a second)
        # while Redis is down, and LOST once per outage.
        down = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
                down = False
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as error:
                if not down:
                    logger.warning("Channel layer: Redis unreachable (%s)", error)
                    self._lost()
                    self.told = True
                down = True
                await asyncio.sleep(1)
