"""The dashboard's event stream (/customer-service/notify/): with Channels'
HttpCommunicator, and end to end against a real worker with aiohttp."""

import asyncio
import json
import time

import aiohttp
import pytest
import redis.asyncio as aioredis
from channels.testing import HttpCommunicator
from django.contrib.auth.models import AnonymousUser, Group
from rest_framework.authtoken.models import Token

from harness import servers
from main import consumers, factories, presence
from main.infra import redis_client
from main.infra.batching import Shared
from main.presence.memory import STORE as MEMORY

from ..clients import wait_for_async

# A stream lists someone until their heartbeat's 10 s and the grace have passed.
LIVE = presence.PRESENCE_SECONDS + presence.PRESENCE_GRACE_SECONDS

# Each test: a Redis key prefix of its own (settings.PRESENCE_KEY_PREFIX).
pytestmark = pytest.mark.usefixtures("prefix", "close_pool")


@pytest.fixture
def people(transactional_db):
    """Committed (the consumer reads them from another thread): a customer
    with two orders, an employee who last spoke to the second."""
    customer = factories.UserFactory(email="mary_jones@example.com")
    employee = factories.UserFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford", is_staff=True)
    employee.groups.add(Group.objects.get_or_create(name="Employees")[0])
    first = factories.OrderFactory(user=customer)
    second = factories.OrderFactory(user=customer, last_spoken_to=employee)
    return {
        "customer": customer,
        "employee": employee,
        "orders": (first.pk, second.pk),
        "tokens": {u.email: Token.objects.get(user=u).key for u in (customer, employee)},
    }


@pytest.fixture
def redis_url(settings):
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    return settings.REDIS_URL


def notify(user, query=b""):
    communicator = HttpCommunicator(consumers.ChatNotifyConsumer, "GET", "/customer-service/notify/")
    communicator.scope["user"] = user
    communicator.scope["query_string"] = query
    return communicator


def parse(body):
    assert body.startswith(b"data: ") and body.endswith(b"\n\n"), body
    return json.loads(body[6:])


async def subscribers(redis_url, channel):
    client = aioredis.Redis.from_url(redis_url)
    try:
        return dict(await client.pubsub_numsub(channel))[channel.encode()]
    finally:
        await client.aclose()


# --- HttpCommunicator ----------------------------------------------------------


async def test_only_employees_get_a_stream(people):
    for user in (AnonymousUser(), people["customer"]):
        response = await notify(user).get_response()
        assert response["status"] == 403
        assert response["body"] == b"Employees only.\n"
        assert dict(response["headers"])[b"Content-Type"].startswith(b"text/plain")


async def test_nopoll_sends_one_event_as_bytes_or_str(people):
    first, second = people["orders"]
    await presence.touch(second, "mary_jones@example.com", False)
    await presence.touch(first, "mary_jones@example.com", False)
    await presence.touch(second, "agent@booktime.domain", True)
    expected = [
        {"link": f"/customer-service/{first}/", "text": f"{first} (mary_jones@example.com)"},
        {"link": f"/customer-service/{second}/", "text": f"{second} (mary_jones@example.com, agent@booktime.domain)"},
    ]
    for query in (b"nopoll", "nopoll"):  # ASGI gives bytes, the chapter's test a str
        response = await notify(people["employee"], query).get_response()
        assert response["status"] == 200
        assert dict(response["headers"])[b"Content-Type"].startswith(b"text/event-stream")
        assert parse(response["body"]) == expected


async def test_v2_says_who_waits_since_when_and_who_last_spoke(people):
    first, second = people["orders"]
    await presence.touch(second, "mary_jones@example.com", False)
    await presence.touch(second, "agent@booktime.domain", True)
    await presence.touch(first, "mary_jones@example.com", False)
    response = await notify(people["employee"], b"nopoll&format=v2").get_response()
    data = parse(response["body"])
    assert abs(data["now"] - time.time()) < 5
    waiting, served = data["chats"]
    assert waiting["order_id"] == first and waiting["link"] == f"/customer-service/{first}/"
    assert waiting["employee_present"] is False
    assert waiting["waiting_since"] == waiting["present"][0]["since"] <= data["now"]
    assert waiting["present"] == [
        {"email": "mary_jones@example.com", "role": "customer", "since": waiting["waiting_since"]}
    ]
    assert waiting["last_spoken_to"] is None
    assert served["order_id"] == second
    assert served["employee_present"] is True and served["waiting_since"] is None
    assert [(p["email"], p["role"]) for p in served["present"]] == [
        ("mary_jones@example.com", "customer"),
        ("agent@booktime.domain", "employee"),
    ]
    assert served["last_spoken_to"] == {"email": "agent@booktime.domain", "name": "Adam Ford"}


async def test_stream_pushes_arrival_and_expiry_keeps_alive_and_ends_with_the_client(people, settings, redis_url):
    settings.SSE_KEEPALIVE_SECONDS = 0.5
    key_prefix = settings.PRESENCE_KEY_PREFIX
    order = people["orders"][0]
    communicator = notify(people["employee"])
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(2)
    assert start["status"] == 200
    assert parse((await communicator.receive_output(2))["body"]) == []
    assert await subscribers(redis_url, f"{key_prefix}changes") == 1

    assert (await communicator.receive_output(1))["body"] == b": keep-alive\n\n"

    await presence.touch(order, "mary_jones@example.com", False)
    touched = time.monotonic()
    while (body := (await communicator.receive_output(1))["body"]) == b": keep-alive\n\n":
        pass
    assert time.monotonic() - touched < 1
    assert parse(body) == [{"link": f"/customer-service/{order}/", "text": f"{order} (mary_jones@example.com)"}]

    while (body := (await communicator.receive_output(LIVE + 1))["body"]) == b": keep-alive\n\n":
        pass
    assert parse(body) == []
    assert LIVE - 0.1 <= time.monotonic() - touched < LIVE + 1

    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)  # the consumer has finished: nothing left running
    assert presence.listening() == 0
    assert await subscribers(redis_url, f"{key_prefix}changes") == 0


async def test_stream_on_the_in_process_store(people, settings):
    settings.REDIS_URL = ""  # the embedded default: presence in this process
    MEMORY.clear()
    order = people["orders"][0]
    communicator = notify(people["employee"], b"format=v2")
    await communicator.send_input({"type": "http.request", "body": b""})
    assert (await communicator.receive_output(2))["status"] == 200
    assert parse((await communicator.receive_output(2))["body"])["chats"] == []

    await presence.touch(order, "mary_jones@example.com", False)
    touched = time.monotonic()
    changes = parse((await communicator.receive_output(1))["body"])
    (chat,) = changes["changed"]
    assert changes["removed"] == []
    assert time.monotonic() - touched < 1
    assert chat["order_id"] == order and chat["waiting_since"] is not None

    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)
    assert presence.listening() == 0


async def test_the_v2_stream_sends_the_whole_list_then_only_what_changed(people, settings):
    """After the first event, an event holds the chats that changed and the
    order ids of those that emptied, not everyone again."""
    settings.REDIS_URL = ""
    MEMORY.clear()
    first, second = people["orders"][:2]
    await presence.touch(first, "mary_jones@example.com", False)
    communicator = notify(people["employee"], b"format=v2")
    await communicator.send_input({"type": "http.request", "body": b""})
    assert (await communicator.receive_output(2))["status"] == 200
    whole = parse((await communicator.receive_output(2))["body"])
    assert [c["order_id"] for c in whole["chats"]] == [first]

    await presence.touch(second, "agent@booktime.domain", True)
    changes = parse((await communicator.receive_output(2))["body"])
    assert [c["order_id"] for c in changes["changed"]] == [second] and changes["removed"] == []

    # Mary's presence ran out (and its grace); the next arrival wakes the stream.
    person, _ = MEMORY.people[(first, "mary_jones@example.com")]
    MEMORY.people[(first, "mary_jones@example.com")] = (person, time.time() - 5)
    await presence.touch(second, "new@site.com", False)
    changes = parse((await communicator.receive_output(2))["body"])
    assert changes["removed"] == [first]
    assert [c["order_id"] for c in changes["changed"]] == [second]
    assert len(changes["changed"][0]["present"]) == 2
    await communicator.send_input({"type": "http.disconnect"})
    await communicator.wait(2)


# --- End to end: a worker and aiohttp -----------------------------------------------


async def next_event(response, within):
    """The next event's data (parsed), and the comment lines before it."""
    comments, data = [], None
    async with asyncio.timeout(within):
        while True:
            line = await response.content.readline()
            assert line, "the stream ended"
            if line.startswith(b":"):
                comments.append(line)
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
            elif line == b"\n" and data is not None:
                return data, comments


async def test_end_to_end_on_a_worker(people, settings, worker_server, redis_url):
    key_prefix = settings.PRESENCE_KEY_PREFIX
    server = worker_server({"PRESENCE_KEY_PREFIX": key_prefix, "SSE_KEEPALIVE_SECONDS": "1", "REDIS_URL": redis_url})
    url = f"{server.url}/customer-service/notify/"
    auth = {email: {"Authorization": f"Token {key}"} for email, key in people["tokens"].items()}
    order = people["orders"][1]
    channel = f"{key_prefix}changes"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for headers in ({}, auth["mary_jones@example.com"]):
            async with session.get(url, headers=headers) as response:
                assert response.status == 403
                assert await response.text() == "Employees only.\n"

        # Heartbeats on real chat sockets, as the chat page and the app send them.
        ws_url = f"{server.ws_url}/ws/customer-service/{order}/?token="
        mary = await session.ws_connect(ws_url + people["tokens"]["mary_jones@example.com"])
        await mary.send_json({"type": "heartbeat"})
        await mary.receive_json(timeout=2)  # her chat_join
        listed = []

        async def listed_once():
            async with session.get(url + "?nopoll", headers=auth["agent@booktime.domain"]) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/event-stream")
                listed[:] = parse(await response.read())  # the response ends
            return listed

        # Her heartbeat reaches presence with the worker's next batch of them.
        await wait_for_async(listed_once, 5)
        assert listed == [{"link": f"/customer-service/{order}/", "text": f"{order} (mary_jones@example.com)"}]

        async with session.get(url, headers=auth["agent@booktime.domain"]) as response:
            assert response.status == 200
            data, _ = await next_event(response, 2)
            assert [c["link"] for c in data] == [f"/customer-service/{order}/"]
            assert await subscribers(redis_url, channel) == 1

            agent = await session.ws_connect(ws_url + people["tokens"]["agent@booktime.domain"])
            await agent.send_json({"type": "heartbeat"})
            beat = time.monotonic()
            data, _ = await next_event(response, 1)
            assert time.monotonic() - beat < 1
            assert data[0]["text"] == f"{order} (mary_jones@example.com, agent@booktime.domain)"
            await mary.close()  # sockets open or not, presence ends after the last heartbeat's 10 s (+ grace)
            await agent.close()

            data, comments = await next_event(response, LIVE + 1)  # mary expires, then the agent
            assert data[0]["text"] == f"{order} (agent@booktime.domain)"
            data, more = await next_event(response, 2)
            assert data == []
            assert LIVE - 0.5 <= time.monotonic() - beat < LIVE + 1
            assert b": keep-alive\n" in comments + more

        # The client went away: the server's stream ends and its subscription with it.
        deadline = time.monotonic() + 5
        while await subscribers(redis_url, channel):
            assert time.monotonic() < deadline, "the stream's subscription outlived its client"
            await asyncio.sleep(0.05)
    assert "stream closed" in server.log()


async def test_dashboards_open_in_one_process_share_one_read_per_arrival(people, settings):
    """Five dashboards open, one arrival: one presence listing in Redis (and
    one SQL query) for all five, counted by a Redis of the test's own."""
    redis_server = servers.RedisServer()
    shared_redis, settings.REDIS_URL = settings.REDIS_URL, redis_server.url
    settings.SSE_KEEPALIVE_SECONDS = 30
    stats = aioredis.Redis.from_url(redis_server.url)
    streams = [notify(people["employee"], b"format=v2") for _ in range(5)]
    try:
        for stream in streams:
            await stream.send_input({"type": "http.request", "body": b""})
            assert (await stream.receive_output(2))["status"] == 200
            assert parse((await stream.receive_output(2))["body"])["chats"] == []
        await stats.config_resetstat()
        await presence.touch(people["orders"][1], "mary_jones@example.com", False)
        for stream in streams:
            assert [c["order_id"] for c in parse((await stream.receive_output(2))["body"])["changed"]] == [
                people["orders"][1]
            ]
        scripts = await stats.info("commandstats")
        # One script run for the heartbeat, one for the listing the five share
        # (two at most, should the streams wake far apart on a busy machine).
        assert scripts["cmdstat_evalsha"]["calls"] - 1 <= 2, scripts
    finally:
        for stream in streams:
            await stream.send_input({"type": "http.disconnect"})
            await stream.wait(2)
        await redis_client.close_redis()
        await stats.aclose()
        redis_server.stop()
        settings.REDIS_URL = shared_redis  # for the key prefix's clean-up


async def test_a_shared_read_is_never_older_than_the_question():
    reads = []

    async def read():
        number = len(reads) + 1
        reads.append(number)
        await asyncio.sleep(0.05)
        return number

    shared = Shared(read)
    together = await asyncio.gather(*(shared() for _ in range(4)))
    assert together == [1, 1, 1, 1]  # asked at the same moment: one read

    first = asyncio.ensure_future(shared())
    await asyncio.sleep(0.01)  # read 2 is under way: a new question waits for read 3
    assert await asyncio.gather(first, shared(), shared()) == [2, 3, 3]
