"""The shipment tracker end to end: our app in a real worker, a real HTTP
client, and the courier stand-in (a real HTTP server) on loopback."""

import asyncio
import time

import aiohttp
import pytest
from rest_framework.authtoken.models import Token

from harness import servers
from main import factories

from .. import mobile_servers
from ..mobile_servers import COURIER_TIMEOUT, afetch, configure, fetch, hits, token_header

app, clean, standin = mobile_servers.app, mobile_servers.clean, mobile_servers.standin


def tracker(app, order_id):
    return f"{app.url}/mobile-api/my-orders/{order_id}/tracker/"


@pytest.fixture
def owner(clean):
    user = factories.UserFactory(email="tracker@site.com")
    return user, Token.objects.get(user=user).key, factories.OrderFactory(user=user)


def test_owner_gets_the_couriers_status_with_a_query_or_header_token(app, standin, owner):
    user, token, order = owner
    configure(standin, orders={order.id: {"status": "Out for delivery"}})

    by_query = fetch("GET", tracker(app, order.id) + f"?token={token}")
    assert by_query.status == 200
    assert by_query.body == b"Out for delivery"
    assert by_query.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert by_query.headers["X-Content-Type-Options"] == "nosniff"

    by_header = fetch("GET", tracker(app, order.id), headers=token_header(token))
    assert by_header.status == 200 and by_header.body == b"Out for delivery"
    assert by_header.headers["Content-Length"] == "16"
    assert hits(standin, order.id) == 2

    post = fetch("POST", tracker(app, order.id), headers=token_header(token))
    assert post.status == 405 and post.headers["Allow"] == "GET"
    assert hits(standin, order.id) == 2


def test_a_json_answer_stays_json(app, standin, owner):
    user, token, order = owner
    configure(standin, orders={order.id: {"mode": "json", "status": "Delivered"}})
    answer = fetch("GET", tracker(app, order.id), headers=token_header(token))
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"order_id": order.id, "status": "Delivered"}


def test_only_the_owner_may_track_and_the_courier_is_not_asked_otherwise(app, standin, owner):
    user, token, order = owner
    other = Token.objects.get(user=factories.UserFactory(email="other@site.com")).key
    url = tracker(app, order.id)
    attempts = {
        "another customer": fetch("GET", url, headers=token_header(other)),
        "another customer, query token": fetch("GET", f"{url}?token={other}"),
        "anonymous": fetch("GET", url),
        "bad token": fetch("GET", f"{url}?token=notavalidtoken"),
        "bad header token": fetch("GET", url, headers=token_header("f" * 40)),
        "unknown order": fetch("GET", tracker(app, order.id + 1000), headers=token_header(token)),
        "out-of-range id": fetch("GET", tracker(app, 10**30), headers=token_header(token)),
    }
    for who, answer in attempts.items():
        assert answer.status == 404, who
        assert answer.json() == {"detail": "Not found.", "code": "not_found"}, who
    assert hits(standin, order.id) == 0 and hits(standin, order.id + 1000) == 0


def test_a_deactivated_customers_token_no_longer_tracks(app, standin, owner):
    user, token, order = owner
    assert fetch("GET", tracker(app, order.id), headers=token_header(token)).status == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    answer = fetch("GET", tracker(app, order.id), headers=token_header(token))
    assert (answer.status, answer.json()["code"]) == (404, "not_found")
    assert hits(standin, order.id) == 1


@pytest.mark.parametrize(
    "mode, status",
    [
        ("error500", 502),
        ("error503", 502),
        ("garbage", 502),
        ("close", 502),
        ("badjson", 502),
        ("huge", 502),
        ("redirect-away", 502),
        ("hang", 504),
    ],
)
def test_courier_failures_answer_502_or_504_within_the_timeout(app, standin, owner, mode, status):
    user, token, order = owner
    configure(standin, orders={order.id: {"mode": mode}})
    answer = fetch("GET", tracker(app, order.id), headers=token_header(token))
    assert answer.status == status
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json()["code"] == ("courier_timeout" if status == 504 else "courier_unavailable")
    assert answer.elapsed < COURIER_TIMEOUT + 1.0
    # aiohttp retries a GET once when a kept-alive connection is dropped.
    assert hits(standin, order.id) in (1, 2)


def test_a_slow_courier_is_cut_at_the_timeout(app, standin, owner):
    user, token, order = owner
    configure(standin, orders={order.id: {"delay": COURIER_TIMEOUT + 3}})
    answer = fetch("GET", tracker(app, order.id), headers=token_header(token))
    assert answer.status == 504
    assert answer.json()["code"] == "courier_timeout"
    assert COURIER_TIMEOUT - 0.1 < answer.elapsed < COURIER_TIMEOUT + 1.0


def test_a_redirect_on_the_couriers_own_host_is_followed(app, standin, owner):
    user, token, order = owner
    configure(standin, orders={order.id: {"mode": "redirect-home", "status": "Packed"}})
    answer = fetch("GET", tracker(app, order.id), headers=token_header(token))
    assert answer.status == 200 and answer.body == b"Packed"


def test_a_courier_that_is_down_is_a_quick_502(worker_server):
    user = factories.UserFactory(email="tracker@site.com")
    order = factories.OrderFactory(user=user)
    nothing_there = servers.free_port()
    app = worker_server({"COURIER_API_URL": f"http://127.0.0.1:{nothing_there}/", "COURIER_API_TIMEOUT": "5"})
    answer = fetch("GET", tracker(app, order.id), headers=token_header(Token.objects.get(user=user).key))
    assert answer.status == 502
    assert answer.json()["code"] == "courier_unavailable"
    assert answer.elapsed < 1.0


@pytest.fixture(scope="module")
def patient_app(django_db_setup, django_db_blocker, standin):
    """The app with a courier timeout long enough for a courier that takes
    4 s: on a busy machine the 100 requests below took over a second to all
    reach the courier, and the first ones were answered before my-orders."""
    with django_db_blocker.unblock():
        server = servers.worker({"COURIER_API_URL": f"{standin.url}/", "COURIER_API_TIMEOUT": "10"})
    yield server
    server.stop()


def test_100_slow_tracker_requests_at_once_do_not_hold_up_anyone(patient_app, standin, owner):
    """The courier takes 4 s: 100 concurrent tracker requests are all at the
    courier at once (none waits for another), and a my-orders request sent
    while the courier holds them is answered before any of them."""
    app = patient_app
    user, token, order = owner
    configure(standin, orders={order.id: {"delay": 4.0, "status": "In transit"}})
    headers = token_header(token)

    async def go():
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=15)) as session:
            started = time.monotonic()
            trackers = [
                asyncio.ensure_future(afetch(session, "GET", tracker(app, order.id), headers=headers))
                for _ in range(100)
            ]
            # Once the courier holds all of them, ask for my orders.
            waited = await afetch(session, "GET", f"{standin.url}/control/wait?order_id={order.id}&hits=100&timeout=5")
            assert waited.status == 200
            mine = await afetch(session, "GET", f"{app.url}/mobile-api/my-orders/", headers=headers)
            assert not any(t.done() for t in trackers), "my orders waited for a tracker"
            answers = await asyncio.gather(*trackers)
            return mine, answers, time.monotonic() - started

    mine, answers, elapsed = asyncio.run(go())
    print(f"my orders in {mine.elapsed:.3f}s, 100 trackers in {elapsed:.3f}s")
    assert mine.status == 200
    assert [a.status for a in answers] == [200] * 100
    assert {a.body for a in answers} == {b"In transit"}
    assert hits(standin, order.id) == 100
