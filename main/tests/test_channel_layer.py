"""The channel layers under a burst: more concurrent commands than the list
layer's pool has connections wait for one, none fail (and the pub/sub layer,
with one connection, delivers to all)."""

import asyncio

import pytest
from channels.layers import get_channel_layer


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
