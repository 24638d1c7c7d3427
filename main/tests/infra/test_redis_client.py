"""main.infra.redis_client: the process's connections pack commands as
redis-py's own Python packer does, and every pool of ours uses them."""

import pytest
import redis.asyncio as redis
from redis.exceptions import DataError

from main.infra import redis_client
from main.infra.channel_layer import PubSubChannelLayer, WaitingRedisChannelLayer
from main.infra.redis_client import Connection, get_redis


def python_packed(*args):
    return b"".join(redis.Connection().pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "key", "value"),
        ("CONFIG GET", "maxmemory"),  # a command name with a space is split
        ("EVALSHA", "a" * 40, 2, b"k1", "k2", 10, 1.5, "ünïcødé ✓", b"\x00\xff", memoryview(b"view")),
        ("PUBLISH", "channel", b"x" * 10000),  # past redis-py's buffer cutoff
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(args):
    assert b"".join(Connection().pack_command(*args)) == python_packed(*args)


def test_an_argument_redis_cannot_take_is_refused_as_redis_py_refuses_it():
    with pytest.raises(DataError):
        Connection().pack_command("SET", "key", {"a": 1})


async def test_every_pool_of_ours_makes_these_connections(settings):
    assert get_redis().connection_pool.connection_class is Connection
    layer = PubSubChannelLayer(hosts=[{"address": settings.REDIS_URL}], prefix="packing-test")
    await layer.group_add("packing", await layer.new_channel())  # the shard connects
    shards = layer._get_layer()._shards
    try:
        assert all(shard._redis.connection_pool.connection_class is Connection for shard in shards)
    finally:
        await layer.flush()
    listing = WaitingRedisChannelLayer(hosts=[{"address": settings.REDIS_URL}])
    assert listing.create_pool(0).connection_class is Connection
    await redis_client.close_redis()
