"""A Redis outage under a real worker that is never restarted: handshakes
are closed cleanly with 4503 and leave nothing behind, logins go on, and
when Redis is back no stale subscription stays and the first handshakes
work (docs/operations.md, "Faults"). Each test has its own throwaway Redis."""

import json

import pytest
import redis as redis_client
from websockets.exceptions import ConnectionClosed

from main.infra.answers import CLOSE_TRY_AGAIN_LATER

from ..clients import TIMEOUT, ChatClient, open_chat, token, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

METRICS_TOKEN = "outage-test-metrics"


def close_code(ws):
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=TIMEOUT)
    return closed.value.rcvd.code if closed.value.rcvd else None


def subscriptions(redis_server):
    """The channel layer's subscriptions in Redis now (channels and groups)."""
    client = redis_client.Redis.from_url(redis_server.url, socket_timeout=2)
    try:
        return sorted(name.decode() for name in client.pubsub_channels("asgi*"))
    finally:
        client.close()


def gauge(server, name):
    import urllib.request

    request = urllib.request.Request(f"{server.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name}")


def start(worker_server, throwaway_redis):
    redis_server = throwaway_redis()
    env = {"REDIS_URL": redis_server.url, "CHANNEL_LAYER_PREFIX": "asgi", "METRICS_TOKEN": METRICS_TOKEN}
    return redis_server, worker_server(env)


def test_handshakes_during_an_outage_are_closed_with_4503_and_leave_nothing(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    redis_server, server = start(worker_server, throwaway_redis)
    open_before = ChatClient(server, order.pk, customer)
    channels_before = gauge(server, "booktime_channel_layer_channels")
    redis_server.stop()
    assert open_before.closed_code() == CLOSE_TRY_AGAIN_LATER
    for n in range(20):
        for v2 in (True, False):
            with open_chat(server, order.pk, token_query=token(customer if n % 2 else agent), v2=v2) as ws:
                assert close_code(ws) == CLOSE_TRY_AGAIN_LATER
    # Nothing of them is kept: not a channel, not a socket in the count.
    assert gauge(server, "booktime_channel_layer_channels") <= channels_before - 1
    assert gauge(server, 'booktime_chat_sockets_open{protocol="v2"}') == 0
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log


def test_after_an_outage_no_stale_subscription_stays_and_the_first_handshakes_work(
    worker_server, throwaway_redis, people
):
    customer, order, agent, _ = people
    redis_server, server = start(worker_server, throwaway_redis)
    first = [ChatClient(server, order.pk, user) for user in (customer, agent, customer)]
    redis_server.stop()
    for client in first:
        assert client.closed_code() == CLOSE_TRY_AGAIN_LATER
    redis_server.start()  # empty, on the same port
    # The very first handshakes after the outage are served.
    customer_again = ChatClient(server, order.pk, customer)
    agent_again = ChatClient(server, order.pk, agent)
    agent_again.say("back")
    assert customer_again.until("chat_message", message="back")
    # Only the channels still in use: the two open sockets' and the process's
    # listener (access changes); the three closed sockets' are gone.
    wait_for(lambda: sum("specific." in name for name in subscriptions(redis_server)) == 3, TIMEOUT)
    log = server.log()
    assert "Traceback" not in log and " ERROR " not in log


def test_logins_work_during_an_outage(worker_server, throwaway_redis, people):
    import urllib.request

    customer, _, _, _ = people
    customer.set_password("a-good-password-1")
    customer.save()
    redis_server, server = start(worker_server, throwaway_redis)
    redis_server.stop()
    request = urllib.request.Request(
        f"{server.url}/mobile-api/auth/",
        data=json.dumps({"username": customer.email, "password": "a-good-password-1"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert response.status == 200 and json.loads(response.read())["token"]
