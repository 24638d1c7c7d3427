"""The channel layer sharded over two Redis servers (CHANNEL_LAYER_URLS),
under two workers: chat across them, every process's listener reached, and a
resume after a reconnect to the other worker, with nothing lost or twice."""

import pytest
import redis as redis_client
from channels_redis.pubsub import _consistent_hash

from ..clients import ChatClient, converse, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

TIMEOUT = 5


def subscriptions(server):
    client = redis_client.Redis.from_url(server.url, socket_timeout=2)
    try:
        return {name.decode() for name in client.pubsub_channels("asgi*")}
    finally:
        client.close()


def test_chat_and_resume_across_workers_on_a_sharded_layer(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    first, second = throwaway_redis(), throwaway_redis()
    env = {
        "REDIS_URL": first.url,  # presence and the cache
        "CHANNEL_LAYER_URLS": f"{first.url},{second.url}",
        "CHANNEL_LAYER_PREFIX": "asgi",
    }
    one, two = worker_server(env), worker_server(env)
    c = ChatClient(one, order.pk, customer)
    a = ChatClient(two, order.pk, agent)
    converse(c, "Where is my book?", a, "On its way.")

    # Each name lives on the shard its hash names; sockets are opened until
    # one lands on the second (each socket's channel name is random).
    extra = []
    while not subscriptions(second) and len(extra) < 20:
        extra.append(ChatClient(one, order.pk, agent))
    assert subscriptions(second)
    for shard, server in enumerate((first, second)):
        assert all(_consistent_hash(name, 2) == shard for name in subscriptions(server))

    # The customer drops, the agent writes on, the customer comes back on the other worker.
    c.ws.close()
    for n in range(3):
        a.say(f"while away {n}")
        a.until("chat_message", ref=f"while away {n}")
    c.connect(two, resume=True)
    assert sorted(c.seqs) == sorted(set(c.seqs)) == list(range(1, 6))
    converse(a, "Anything else?", c, "No, thanks.")
    wait_for(lambda: len(set(c.seqs)) == 7, TIMEOUT)
    for client in extra:
        client.ws.close()
    for server in (one, two):
        assert "Traceback" not in server.log() and " ERROR " not in server.log()
