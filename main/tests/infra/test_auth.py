"""Token authentication for the async routes (main/infra/auth.py), in process:
the real middleware stack around small consumers that report what they see,
over HTTP and WebSocket."""

import json
import logging

import pytest
from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.testing import HttpCommunicator, WebsocketCommunicator
from daphne.management.commands.runserver import Command as Runserver
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from booktime.auth import TokenAuthMiddlewareStack
from harness import servers
from main import factories


def seen(scope):
    user = scope["user"]
    return {
        "user": user.email if user.is_authenticated else None,
        "query": scope["query_string"].decode(),
        "has_session": "session" in scope,
    }


class WhoAmI(AsyncHttpConsumer):
    channel_layer_alias = None  # not needed here

    async def handle(self, body):
        await self.send_response(200, json.dumps(seen(self.scope)).encode())


class WhoAmISocket(AsyncJsonWebsocketConsumer):
    channel_layer_alias = None

    async def connect(self):
        await self.accept()
        await self.send_json(seen(self.scope))


async def over_http(path, headers=()):
    communicator = HttpCommunicator(TokenAuthMiddlewareStack(WhoAmI.as_asgi()), "GET", path, headers=list(headers))
    return json.loads((await communicator.get_response())["body"])


async def over_websocket(path, headers=()):
    communicator = WebsocketCommunicator(TokenAuthMiddlewareStack(WhoAmISocket.as_asgi()), path, list(headers))
    connected, _ = await communicator.connect()
    assert connected
    answer = await communicator.receive_json_from()
    await communicator.disconnect()
    return answer


@database_sync_to_async
def customer(email, **extra):
    user = factories.UserFactory(email=email, **extra)
    return user, Token.objects.get(user=user).key


@database_sync_to_async
def session_cookie(user):
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.fixture(params=[over_http, over_websocket], ids=["http", "websocket"])
def ask(request):
    return request.param


async def test_query_string_token(transactional_db, ask):
    user, token = await customer("phone@site.com")
    answer = await ask(f"/somewhere/?v=2&token={token}&x=1")
    # The consumer sees the user, and the query string without the token.
    assert answer == {"user": "phone@site.com", "query": "v=2&x=1", "has_session": True}


async def test_authorization_header_token(transactional_db, ask):
    user, token = await customer("phone@site.com")
    answer = await ask("/somewhere/", [(b"authorization", f"Token {token}".encode())])
    assert answer["user"] == "phone@site.com"


async def test_header_wins_over_query_string(transactional_db, ask):
    _, header_token = await customer("header@site.com")
    _, query_token = await customer("query@site.com")
    answer = await ask(f"/somewhere/?token={query_token}", [(b"authorization", f"Token {header_token}".encode())])
    assert answer["user"] == "header@site.com"


@pytest.mark.parametrize("bad", ["0" * 40, "not-a-token", "'; DROP TABLE x; --", "a" * 5000, ""])
async def test_an_invalid_token_is_anonymous_even_with_a_session(transactional_db, ask, bad):
    user, _ = await customer("phone@site.com")
    cookie = await session_cookie(user)
    answer = await ask(f"/somewhere/?token={bad}", [(b"cookie", cookie.encode())])
    assert answer["user"] is None


async def test_an_inactive_users_token_is_anonymous(transactional_db, ask):
    _, token = await customer("gone@site.com", is_active=False)
    assert (await ask(f"/somewhere/?token={token}"))["user"] is None


async def test_without_a_token_the_session_decides(transactional_db, ask):
    user, _ = await customer("browser@site.com")
    cookie = await session_cookie(user)
    assert (await ask("/somewhere/?v=2", [(b"cookie", cookie.encode())]))["user"] == "browser@site.com"
    assert (await ask("/somewhere/"))["user"] is None


async def test_no_token_in_our_logs(transactional_db, caplog, settings):
    """Everything our code logs while authenticating and tracking, at DEBUG."""
    from main import consumers
    from main.tracker import courier

    settings.COURIER_API_URL = f"http://127.0.0.1:{servers.free_port()}/"  # nothing there: a 502

    user, token = await customer("phone@site.com")
    order = await database_sync_to_async(factories.OrderFactory)(user=user)
    caplog.set_level(logging.DEBUG)
    await over_http(f"/somewhere/?token={token}")
    await over_websocket("/ws/", [(b"authorization", f"Token {token}".encode())])
    tracker = HttpCommunicator(
        TokenAuthMiddlewareStack(consumers.OrderTrackerConsumer.as_asgi()),
        "GET",
        f"/mobile-api/my-orders/{order.id}/tracker/?token={token}",
    )
    tracker.scope["url_route"] = {"kwargs": {"order_id": order.id}}
    try:
        response = await tracker.get_response(timeout=5)
    finally:
        await courier.close_session()
    assert response["status"] == 502
    assert "Order tracking request" in caplog.text and "Order tracking failed" in caplog.text
    assert token not in caplog.text


def test_access_logs_show_no_query_string(caplog):
    from main.infra.logsafe import StripQueryStrings

    path = "/mobile-api/my-orders/3/tracker/?v=1&token=0123456789abcdef0123456789abcdef01234567&x=2"
    details = {"path": path, "status": 200, "method": "GET", "client": "127.0.0.1:5", "time_taken": 0.1, "size": 2}

    caplog.set_level(logging.INFO)
    no_query = StripQueryStrings()
    logging.getLogger("django.channels.server").addFilter(no_query)
    logging.getLogger("uvicorn.access").addFilter(no_query)
    logging.getLogger("uvicorn.error").addFilter(no_query)
    try:
        Runserver().log_action("http", "complete", details)  # `manage.py runserver`
        # A worker (booktime.serve): uvicorn's access and WebSocket lines, as it logs them.
        logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", path, "1.1", 200)
        logging.getLogger("uvicorn.error").info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", path)
    finally:
        for name in ("django.channels.server", "uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeFilter(no_query)
    assert len(caplog.records) == 3
    for record in caplog.records:
        assert "/mobile-api/my-orders/3/tracker/" in record.getMessage()
        assert "0123456789abcdef" not in record.getMessage() and "?" not in record.getMessage()
