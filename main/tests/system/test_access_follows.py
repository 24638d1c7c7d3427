"""Authorisation that follows the user, on two real workers: a web logout,
a deactivation and an employee leaving the Employees group close the chat
sockets and end the event streams they opened, within seconds, on every
worker (main/infra/access_changes.py, docs/chat.md)."""

import asyncio

import aiohttp
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.db import connections
from rest_framework.authtoken.models import Token

from main import factories
from main.models import EMPLOYEES_GROUP
from main.tests.clients import session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN = 5.0  # seconds: "within seconds", with room for a loaded machine
CSRF = "a" * 32


async def orm(call, *args, **kwargs):
    """A sync ORM call from a test's coroutine, its connection closed after
    (the test database is dropped at the end)."""

    def run():
        try:
            return call(*args, **kwargs)
        finally:
            connections.close_all()

    return await sync_to_async(run)()


def by_token(user):
    return {"Authorization": f"Token {Token.objects.get(user=user).key}"}


def by_session(cookie):
    return {"Cookie": f"sessionid={cookie}; csrftoken={CSRF}"}


@pytest.fixture
def cast(db):
    customer = factories.UserFactory(email="jane@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(email="adam@booktime.domain", first_name="Adam", last_name="Ford")
    return customer, order, agent


async def chat(session, server, order, headers):
    ws = await session.ws_connect(
        f"{server.ws_url}/ws/customer-service/{order.pk}/", headers=headers, protocols=["booktime.chat.v2"]
    )
    while (await ws.receive_json(timeout=WITHIN))["type"] != "history":
        pass
    return ws


async def close_code(ws):
    """Read until the server closes the socket; its close code."""
    async with asyncio.timeout(WITHIN):
        while True:
            message = await ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code


async def still_open(ws):
    await ws.send_json({"type": "history", "limit": 1})
    while (await ws.receive_json(timeout=WITHIN))["type"] != "history":
        pass
    return True


async def stream_ends(response):
    """Read until the server ends the event stream."""
    async with asyncio.timeout(WITHIN):
        while await response.content.readline():
            pass
    return True


async def test_a_web_logout_closes_what_that_session_opened_on_every_worker(worker_server, cast):
    customer, order, agent = cast
    one, two = worker_server(), worker_server()
    leaving, staying = await orm(session_cookie, customer), await orm(session_cookie, customer)
    agents = await orm(session_cookie, agent)
    async with aiohttp.ClientSession() as session:
        on_one = await chat(session, one, order, by_session(leaving))
        on_two = await chat(session, two, order, by_session(leaving))
        other_tab = await chat(session, two, order, by_session(staying))
        agent_ws = await chat(session, one, order, by_session(agents))
        async with session.post(
            f"{one.url}/logout/", headers={**by_session(leaving), "X-CSRFToken": CSRF}, allow_redirects=False
        ) as response:
            assert response.status == 302
        assert await close_code(on_one) == 4401
        assert await close_code(on_two) == 4401
        # The same user's other session and someone else go on.
        assert await still_open(other_tab) and await still_open(agent_ws)
        # The agent's logout ends their inbox stream.
        async with session.get(f"{two.url}/customer-service/inbox/", headers=by_session(agents)) as inbox:
            assert inbox.status == 200
            await inbox.content.readline()
            async with session.post(
                f"{one.url}/logout/", headers={**by_session(agents), "X-CSRFToken": CSRF}, allow_redirects=False
            ) as response:
                assert response.status == 302
            assert await stream_ends(inbox)
        assert await close_code(agent_ws) == 4401
    for server in (one, two):
        assert "Traceback" not in server.log()


async def test_a_deactivated_user_is_cut_off_everywhere(worker_server, cast):
    customer, order, agent = cast
    one, two = worker_server(), worker_server()
    cookie = await orm(session_cookie, customer)
    async with aiohttp.ClientSession() as session:
        by_key = await chat(session, one, order, await orm(by_token, customer))
        by_cookie = await chat(session, two, order, by_session(cookie))
        agent_ws = await chat(session, two, order, await orm(by_token, agent))

        customer.is_active = False
        await orm(customer.save)

        assert await close_code(by_key) == 4401
        assert await close_code(by_cookie) == 4401
        assert await still_open(agent_ws)
        # The token is refused from now on (the handshake's 403).
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(
                f"{one.ws_url}/ws/customer-service/{order.pk}/", headers=await orm(by_token, customer)
            )
        assert refused.value.status == 403


async def test_an_employee_who_leaves_the_employees_group_loses_the_chats_and_streams(worker_server, cast):
    customer, order, agent = cast
    one, two = worker_server(), worker_server()
    own_order = await orm(factories.OrderFactory, user=agent)
    headers = await orm(by_token, agent)
    async with aiohttp.ClientSession() as session:
        customers_chat = await chat(session, one, order, headers)
        own_chat = await chat(session, two, own_order, headers)
        async with (
            session.get(f"{two.url}/customer-service/inbox/", headers=headers) as inbox,
            session.get(f"{one.url}/customer-service/notify/?format=v2", headers=headers) as notify,
        ):
            assert inbox.status == notify.status == 200
            await inbox.content.readline()
            await notify.content.readline()

            group = await orm(Group.objects.get, name=EMPLOYEES_GROUP)
            await orm(agent.groups.remove, group)

            assert await close_code(customers_chat) == 4403  # someone else's order: no longer theirs to see
            assert await close_code(own_chat) == 1012  # their own order: back as its customer
            assert await stream_ends(inbox) and await stream_ends(notify)
        async with session.get(f"{one.url}/customer-service/inbox/", headers=headers) as again:
            assert again.status == 403
    for server in (one, two):
        assert "Traceback" not in server.log()
