"""The mobile REST API end to end: a real worker on loopback, a real HTTP
client (aiohttp), the test PostgreSQL and Redis."""

import asyncio
import time
from decimal import Decimal

import aiohttp
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from main import factories

from .. import mobile_servers
from ..mobile_servers import LOGIN_LIMIT, configure, fetch, token_header

# The shared fixtures: a worker, the courier stand-in, clean data per test.
app, clean, standin = mobile_servers.app, mobile_servers.clean, mobile_servers.standin

PASSWORD = "abcabcabc"  # UserFactory's


def login(app, **data):
    return fetch("POST", f"{app.url}/mobile-api/auth/", json=data)


def test_login_with_json_or_form_answers_the_users_token(app, clean):
    user = factories.UserFactory(email="phone@site.com")
    expected = Token.objects.get(user=user).key

    answer = login(app, username="phone@site.com", password=PASSWORD)
    assert answer.status == 200
    assert answer.json() == {"token": expected}

    form = fetch("POST", f"{app.url}/mobile-api/auth/", data={"username": "phone@site.com", "password": PASSWORD})
    assert form.status == 200 and form.json() == {"token": expected}


def test_login_with_bad_credentials_is_a_clear_400(app, clean):
    factories.UserFactory(email="phone@site.com")

    wrong = login(app, username="phone@site.com", password="not-the-password")
    assert wrong.status == 400
    assert wrong.json()["code"] == "invalid_credentials"
    assert "Unable to log in" in wrong.json()["detail"]
    assert login(app, username="nobody@site.com", password=PASSWORD).json()["code"] == "invalid_credentials"

    missing = login(app, username="phone@site.com")
    assert missing.status == 400
    assert missing.json()["code"] == "invalid"
    assert "password" in missing.json()["errors"]

    garbage = fetch(
        "POST", f"{app.url}/mobile-api/auth/", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbage.status == 400 and garbage.json()["code"] == "parse_error"


def test_login_attempts_are_throttled(app, clean):
    factories.UserFactory(email="phone@site.com")
    for _ in range(LOGIN_LIMIT - 1):
        assert login(app, username="phone@site.com", password="guess").status == 400
    assert login(app, username="phone@site.com", password="guess").status == 429  # the failure that locks

    throttled = login(app, username="phone@site.com", password=PASSWORD)
    assert throttled.status == 429
    assert throttled.json()["code"] == "throttled"
    assert 0 < int(throttled.headers["Retry-After"]) <= 300  # LOGIN_COOLOFF_SECONDS' default


def test_the_login_throttle_is_shared_by_server_processes(app, clean, worker_server):
    """The counts live in PostgreSQL: attempts on two processes add up."""
    other = worker_server({"LOGIN_FAILURE_LIMIT": str(LOGIN_LIMIT)})
    factories.UserFactory(email="phone@site.com")
    for n in range(LOGIN_LIMIT - 1):
        assert login(app if n % 2 else other, username="phone@site.com", password="guess").status == 400
    assert login(other, username="phone@site.com", password="guess").status == 429
    assert login(app, username="phone@site.com", password=PASSWORD).status == 429


def test_logout_revokes_the_token(app, clean):
    factories.UserFactory(email="phone@site.com")
    token = login(app, username="phone@site.com", password=PASSWORD).json()["token"]
    my_orders = f"{app.url}/mobile-api/my-orders/"
    assert fetch("GET", my_orders, headers=token_header(token)).status == 200

    assert fetch("POST", f"{app.url}/mobile-api/logout/", headers=token_header(token)).status == 204

    revoked = fetch("GET", my_orders, headers=token_header(token))
    assert revoked.status == 401
    assert not Token.objects.filter(key=token).exists()
    # Logging in again gives a new token that works.
    new = login(app, username="phone@site.com", password=PASSWORD).json()["token"]
    assert new != token
    assert fetch("GET", my_orders, headers=token_header(new)).status == 200


def test_my_orders_shape(app, clean):
    user = factories.UserFactory(email="phone@site.com")
    token = Token.objects.get(user=user).key
    older, newer = factories.OrderFactory.create_batch(2, user=user)
    a = factories.ProductFactory(name="The book of A", price=Decimal("12.00"))
    b = factories.ProductFactory(name="The B Book", price=Decimal("14.50"))
    factories.ProductImageFactory(product=a)
    factories.OrderLineFactory.create_batch(2, order=older, product=a)
    factories.OrderLineFactory(order=newer, product=b)
    factories.OrderLineFactory(order=newer, product=a)
    factories.OrderFactory()  # someone else's

    answer = fetch("GET", f"{app.url}/mobile-api/my-orders/", headers=token_header(token))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    data = answer.json()
    assert [o["id"] for o in data] == [newer.id, older.id]
    assert data[0]["summary"] == "1 x The B Book, 1 x The book of A"
    assert data[0]["price"] == 26.5 and isinstance(data[0]["price"], float)
    assert data[0]["image"] is None  # the first product has no picture
    assert data[1] == {"id": older.id, "image": data[1]["image"], "summary": "2 x The book of A", "price": 24.0}
    # An absolute URL the phone can fetch as it is.
    assert data[1]["image"].startswith(f"{app.url}/media/product-thumbnails/")
    image = fetch("GET", data[1]["image"])
    assert image.status == 200 and image.headers["Content-Type"] == "image/jpeg"


def test_my_orders_needs_credentials(app, clean):
    url = f"{app.url}/mobile-api/my-orders/"
    anonymous = fetch("GET", url)
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == "Token"
    assert anonymous.json()["code"] == "not_authenticated"
    assert fetch("GET", url, headers=token_header("0" * 40)).status == 401


@pytest.mark.django_db
def test_my_orders_query_count_does_not_grow_with_orders_or_lines():
    user = factories.UserFactory(email="phone@site.com")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + Token.objects.get(user=user).key)

    def queries():
        with CaptureQueriesContext(connection) as captured:
            response = client.get(reverse("mobile_my_orders"))
        assert response.status_code == 200
        return len(captured), response.json()

    factories.OrderLineFactory(order=factories.OrderFactory(user=user))
    few, data = queries()
    assert len(data) == 1

    products = factories.ProductFactory.create_batch(3)
    for product in products:
        factories.ProductImageFactory(product=product)
    for order in factories.OrderFactory.create_batch(40, user=user):
        for product in products:
            factories.OrderLineFactory(order=order, product=product)
    many, data = queries()
    assert len(data) == 41 and all(o["image"] for o in data[:40])
    assert many == few <= 5


def test_openapi_schema_describes_the_mobile_api(app, clean):
    answer = fetch("GET", f"{app.url}/mobile-api/schema/?format=json")
    assert answer.status == 200
    schema = answer.json()
    paths = schema["paths"]
    conversation = "/mobile-api/conversations/{order_id}/"
    assert set(paths) == {
        "/mobile-api/auth/",
        "/mobile-api/logout/",
        "/mobile-api/my-orders/",
        "/mobile-api/my-orders/{order_id}/tracker/",
        "/mobile-api/conversations/",
        conversation,
        *(
            f"{conversation}{action}/"
            for action in ("messages", "read", "claim", "release", "assign", "resolve", "reopen")
        ),
    }
    assert set(paths[f"{conversation}claim/"]["post"]["responses"]) == {"200", "403", "404", "409"}
    assert set(paths[f"{conversation}messages/"]["post"]["responses"]) == {"200", "201", "400", "404", "429"}
    properties = schema["components"]["schemas"]["Conversation"]["properties"]
    assert {"order_id", "status", "assigned_to", "waiting_since", "last_message", "unread", "queue"} <= set(properties)
    assert set(paths["/mobile-api/auth/"]["post"]["responses"]) == {"200", "400", "429"}
    assert set(paths["/mobile-api/my-orders/{order_id}/tracker/"]["get"]["responses"]) == {"200", "404", "502", "504"}
    assert schema["components"]["schemas"]["MobileOrder"]["properties"]["price"]["type"] == "number"
    assert {"tokenAuth", "tokenQuery"} <= set(schema["components"]["securitySchemes"])

    docs = fetch("GET", f"{app.url}/mobile-api/docs/")
    assert docs.status == 200 and b"SwaggerUIBundle" in docs.body


def test_openapi_schema_is_valid(tmp_path):
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))
    assert "/mobile-api/my-orders/{order_id}/tracker/" in (tmp_path / "schema.yaml").read_text()


def test_no_token_or_password_in_the_server_log(app, standin, clean):
    """The worker writes every request's URI to its access log: the tokens the
    app sends in query strings must not land there, nor anything we log."""
    user = factories.UserFactory(email="phone@site.com")
    order = factories.OrderFactory(user=user)
    token = login(app, username="phone@site.com", password=PASSWORD).json()["token"]
    tracker = f"{app.url}/mobile-api/my-orders/{order.id}/tracker/"
    assert fetch("GET", f"{tracker}?token={token}").status == 200
    assert fetch("GET", tracker, headers=token_header(token)).status == 200
    assert fetch("GET", f"{app.url}/mobile-api/my-orders/?token={token}&page=1").status == 401
    assert fetch("GET", f"{tracker}?token=0123456789abcdef0123456789abcdef01234567").status == 404
    configure(standin, orders={order.id: {"mode": "error500"}})
    assert fetch("GET", f"{tracker}?token={token}").status == 502

    # The access log line of the last request is written when it completes.
    deadline = time.monotonic() + 5
    while 'tracker/ HTTP/1.1" 502' not in app.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = app.log()
    assert 'tracker/ HTTP/1.1" 502' in log  # the access log, without the query string
    assert 'my-orders/ HTTP/1.1" 401' in log and "page=1" not in log
    assert "Order tracking failed" in log
    assert token not in log and "0123456789abcdef" not in log and PASSWORD not in log


def test_the_chat_socket_takes_the_token_from_the_query_string_or_a_header(app, clean):
    user = factories.UserFactory(email="phone@site.com")
    token = Token.objects.get(user=user).key
    other = Token.objects.get(user=factories.UserFactory(email="other@site.com")).key
    order = factories.OrderFactory(user=user)
    url = f"{app.ws_url}/ws/customer-service/{order.id}/"

    async def first_event(full_url, headers=None):
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(full_url, headers=headers, timeout=aiohttp.ClientWSTimeout(5)) as ws:
                    while True:
                        event = await ws.receive_json(timeout=5)
                        # The user's previous socket may be told left after this one joined.
                        if event["type"] != "chat_leave":
                            return event
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    join = {"type": "chat_join", "username": "phone@site.com"}
    assert asyncio.run(first_event(f"{url}?token={token}")) == join
    assert asyncio.run(first_event(url, token_header(token))) == join
    assert asyncio.run(first_event(f"{url}?token={other}")) == 403
    assert asyncio.run(first_event(f"{url}?token=0123456789abcdef0123456789abcdef01234567")) == 403
    assert asyncio.run(first_event(url)) == 403
    assert token not in app.log() and other not in app.log()
