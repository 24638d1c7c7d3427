"""The channel layers under a burst: more concurrent commands than the list
layer's pool has connections wait for one, none fail (and the pub/sub layer,
with one connection, delivers to all, its subscriptions changed a batch at a
time)."""

import asyncio

import pytest
import redis.asyncio as aioredis
from asgiref.testing import ApplicationCommunicator
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

from main.infra.consumer import BaseConsumer


@pytest.mark.parametrize("kind", ["pubsub", "redis"])
async def test_a_burst_larger_than_the_pool_waits_instead_of_failing(settings, kind):
    settings.CHANNEL_LAYERS = {"default": settings.CHANNEL_LAYER_CONFIGS[kind]}
    layer = get_channel_layer()
    pool_size = settings.CHANNEL_LAYER_CONFIGS["redis"]["CONFIG"]["hosts"][0]["max_connections"]
    channels = [await layer.new_channel() for _ in range(pool_size * 4)]
    try:
        await asyncio.gather(*(layer.group_add("burst-test", name) for name in channels))
        await layer.group_send("burst-test", {"type": "chat.message", "text": "to all"})
        received = await asyncio.gather(*(layer.receive(name) for name in channels[:3]))
        assert all(message["text"] == "to all" for message in received)
    finally:
        await asyncio.gather(*(layer.group_discard("burst-test", name) for name in channels))


async def test_many_sockets_ending_at_once_leave_no_subscription_and_no_error(settings, caplog):
    """A worker's sockets dropping together: each consumer's receive is
    cancelled, some twice while their unsubscribe waits its turn."""
    layer = get_channel_layer()  # the pub/sub layer, the default
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    channels = [await layer.new_channel() for _ in range(200)]
    receiving = [asyncio.ensure_future(layer.receive(name)) for name in channels]
    await asyncio.sleep(0.1)
    pattern = f"{settings.CHANNEL_LAYER_PREFIX}specific.*"
    assert set(channels) <= {c.decode() for c in await redis.pubsub_channels(pattern)}
    for task in receiving:
        task.cancel()
    await asyncio.sleep(0)
    for task in receiving:
        task.cancel()  # cancelled again while its unsubscribe waits
    await asyncio.gather(*receiving, return_exceptions=True)

    async def left():
        return not set(channels) & {c.decode() for c in await redis.pubsub_channels(pattern)}

    for _ in range(100):  # the unsubscribes finish in the background
        if await left():
            break
        await asyncio.sleep(0.05)
    assert await left()
    await redis.aclose()
    assert [r.getMessage() for r in caplog.records if r.levelname in ("ERROR", "WARNING")] == []


async def subscription_commands(redis):
    """How many SUBSCRIBE and UNSUBSCRIBE commands Redis has run so far."""
    stats = await redis.info("commandstats")
    return tuple(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("subscribe", "unsubscribe"))


async def test_a_burst_of_subscriptions_goes_out_in_a_few_commands(settings):
    """A storm of handshakes subscribes a channel and a group each; a
    worker's sockets closing together unsubscribe both: a few commands, not
    one per name, and every name subscribed, then unsubscribed."""
    layer = get_channel_layer()
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    await layer.new_channel()  # the shard's subscription open
    before = await subscription_commands(redis)

    async def join(n):
        name = await layer.new_channel()
        await layer.group_add(f"batched-{n}", name)
        return name

    channels = await asyncio.gather(*(join(n) for n in range(300)))
    subscribed = await subscription_commands(redis)
    assert 1 <= subscribed[0] - before[0] <= 10  # one batch, or a few
    groups = {layer._get_layer()._get_group_channel_name(f"batched-{n}") for n in range(300)}
    names = {c.decode() for c in await redis.pubsub_channels(f"{settings.CHANNEL_LAYER_PREFIX}*")}
    assert set(channels) | groups <= names

    async def leave(n, name):
        await layer.group_discard(f"batched-{n}", name)
        await layer.delete_channel(name)

    await asyncio.gather(*(leave(n, name) for n, name in enumerate(channels)))
    unsubscribed = await subscription_commands(redis)
    assert 1 <= unsubscribed[1] - subscribed[1] <= 10
    names = {c.decode() for c in await redis.pubsub_channels(f"{settings.CHANNEL_LAYER_PREFIX}*")}
    assert not (set(channels) | groups) & names
    await redis.aclose()


async def test_a_socket_joining_as_the_last_one_leaves_keeps_the_room():
    layer = get_channel_layer()
    leaving, joining = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("turnover", leaving)
    await asyncio.gather(layer.group_discard("turnover", leaving), layer.group_add("turnover", joining))
    await layer.group_send("turnover", {"type": "chat.message", "text": "still here?"})
    async with asyncio.timeout(2):
        assert (await layer.receive(joining))["text"] == "still here?"
    await layer.group_discard("turnover", joining)


class EndsOnAChannelMessage(BaseConsumer, AsyncConsumer):
    names = None  # an asyncio.Queue the test sets: each instance's channel name, as it starts

    async def start(self, message):
        self.names.put_nowait(self.channel_name)

    async def bye(self, message):
        raise StopConsumer  # ends while handling what its channel brought


async def test_a_consumer_ending_on_a_channel_message_leaves_no_subscription(settings):
    """channels_redis unsubscribes a consumer's channel when Channels cancels
    its pending receive; a consumer that ends on a message its channel just
    brought (a chat_leave it sent its own group as it went, a close event)
    has no pending receive to cancel, so its channel stayed subscribed, and
    held in memory, until the worker stopped."""
    layer = get_channel_layer()
    redis = aioredis.Redis.from_url(settings.REDIS_URL)
    EndsOnAChannelMessage.names = asyncio.Queue()
    app = ApplicationCommunicator(EndsOnAChannelMessage.as_asgi(), {"type": "test"})
    await app.send_input({"type": "start"})
    name = await asyncio.wait_for(EndsOnAChannelMessage.names.get(), 2)
    assert name.encode() in await redis.pubsub_channels(f"{settings.CHANNEL_LAYER_PREFIX}specific.*")

    await layer.send(name, {"type": "bye"})
    await app.wait(timeout=2)  # the consumer has ended
    assert name.encode() not in await redis.pubsub_channels(f"{settings.CHANNEL_LAYER_PREFIX}specific.*")
    assert name not in layer._get_layer().channels
    await redis.aclose()
