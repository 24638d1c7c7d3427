"""The agents' inbox stream (/customer-service/inbox/) end to end: two real
workers, aiohttp as the browser's EventSource, real chat sockets."""

import asyncio
import json
import time

import aiohttp
import pytest
from rest_framework.authtoken.models import Token

from main import factories

pytestmark = pytest.mark.django_db(transaction=True)


async def next_event(response, within):
    """The next event: (its name, its data parsed)."""
    name, data = None, None
    async with asyncio.timeout(within):
        while True:
            line = await response.content.readline()
            assert line, "the stream ended"
            if line.startswith(b"event: "):
                name = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                data = json.loads(line[6:])
            elif line == b"\n" and data is not None:
                return name, data


def auth(user):
    return {"Authorization": f"Token {Token.objects.get(user=user).key}"}


@pytest.fixture
def cast(db):
    customer = factories.UserFactory(email="jane@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(email="adam@booktime.domain", first_name="Adam", last_name="Ford")
    return customer, order, agent, auth(customer), auth(agent)


async def test_the_inbox_starts_whole_then_sends_what_changed_from_any_worker(worker_server, cast):
    customer, order, agent, customer_auth, agent_auth = cast
    one, other = worker_server(), worker_server()
    inbox = f"{other.url}/customer-service/inbox/"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for headers in ({}, customer_auth):
            async with session.get(inbox, headers=headers) as response:
                assert response.status == 403

        async with session.get(inbox, headers=agent_auth) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
            name, whole = await next_event(response, 5)
            assert name == "inbox" and whole["conversations"] == [] and whole["agents_online"] == 1

            # The customer writes on the other worker, and closes the tab.
            chat = await session.ws_connect(f"{one.ws_url}/ws/customer-service/{order.pk}/", headers=customer_auth)
            await chat.send_json({"type": "message", "message": "My book arrived damaged"})
            sent = time.monotonic()
            name, item = await next_event(response, 5)
            assert time.monotonic() - sent < 1.5
            assert name == "conversation"
            assert (item["order_id"], item["status"], item["unread"]) == (order.pk, "waiting", 1)
            assert item["last_message"]["message"] == "My book arrived damaged"
            assert item["customer"] == {"id": customer.pk, "name": "Jane Doe", "email": "jane@example.com"}
            await chat.close()

            # Claimed through the API on the other worker: the change arrives too.
            async with session.post(f"{one.url}/mobile-api/conversations/{order.pk}/claim/", headers=agent_auth) as r:
                assert r.status == 200
            name, item = await next_event(response, 5)
            assert item["assigned_to"] == {"id": agent.pk, "name": "Adam Ford"} and item["status"] == "waiting"

        # A reconnect starts with the whole inbox: the customer who left still waits.
        async with session.get(inbox, headers=agent_auth) as response:
            name, whole = await next_event(response, 5)
            assert name == "inbox"
            [waiting] = whole["conversations"]
            assert (waiting["order_id"], waiting["status"]) == (order.pk, "waiting")


@pytest.fixture
def colleague_auth(db):
    return auth(factories.EmployeeFactory(email="eve@booktime.domain"))


async def test_an_agent_reading_changes_only_their_own_unread_count(worker_server, cast, colleague_auth):
    customer, order, agent, customer_auth, agent_auth = cast
    server = worker_server()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        url = f"{server.url}/mobile-api/conversations/{order.pk}/"
        async with session.post(url + "messages/", headers=customer_auth, json={"message": "Hello"}) as r:
            assert r.status == 201
        async with (
            session.get(f"{server.url}/customer-service/inbox/", headers=agent_auth) as mine,
            session.get(f"{server.url}/customer-service/inbox/", headers=colleague_auth) as theirs,
        ):
            for stream in (mine, theirs):
                assert (await next_event(stream, 5))[1]["conversations"][0]["unread"] == 1
            async with session.post(url + "read/", headers=agent_auth, json={"seq": 1}) as r:
                assert r.status == 200
            name, item = await next_event(mine, 5)
            assert item["unread"] == 0
            with pytest.raises(TimeoutError):
                await next_event(theirs, 1)  # nothing changed for the colleague
