"""The worker's metrics (main/infra/metrics.py) and their scrape
(main/infra/scrape.py), in this process: each helper counts in its own
series, the scrape answers only its bearer token and is not held up by a
slow reader, throttles and courier calls are counted where they happen, and
presence's numbers are read as the metrics are scraped. The same on a real
worker: main/tests/system/test_health.py."""

import asyncio
import logging
import time

import aiohttp
import pytest
from aiohttp import web
from axes.signals import user_locked_out
from channels.testing import HttpCommunicator
from django.core.cache import cache
from django.urls import reverse
from prometheus_client import REGISTRY
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from harness import servers
from main import factories, presence
from main.api.conversations import SendThrottle
from main.chat.limits import Limits
from main.chat.protocol import ChatError
from main.infra import health, metrics, scrape
from main.presence import gauges
from main.tracker import courier, standin

TOKEN = "unit-metrics-token"


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_helper_counts_in_its_own_series_and_unknown_labels_fail_where_they_are_made():
    before = sample("booktime_chat_handshakes_refused_total", reason="forbidden")
    others = sample("booktime_chat_handshakes_refused_total", reason="origin")
    metrics.handshake_refused("forbidden")
    assert sample("booktime_chat_handshakes_refused_total", reason="forbidden") == before + 1
    assert sample("booktime_chat_handshakes_refused_total", reason="origin") == others
    with pytest.raises(KeyError):
        metrics.handshake_refused("no_such_reason")
    with pytest.raises(KeyError):
        metrics.throttled("no_such_scope")
    assert set(metrics.REFUSED) >= {"unauthenticated", "forbidden", "database_unavailable", "too_many_sockets"}


async def scraped(headers=()):
    headers = [(b"host", b"testserver"), *headers]
    communicator = HttpCommunicator(scrape.metrics, "GET", "/metrics", headers=headers)
    return await communicator.get_response(timeout=5)


async def test_the_scrape_answers_its_bearer_token_only(settings):
    settings.METRICS_TOKEN = TOKEN
    for headers in ([], [(b"authorization", b"Bearer wrong")], [(b"authorization", f"Token {TOKEN}".encode())]):
        assert (await scraped(headers))["status"] == 404, headers
    answer = await scraped([(b"authorization", f"bearer {TOKEN}".encode())])
    assert answer["status"] == 200
    assert dict(answer["headers"])[b"Content-Type"].startswith(b"text/plain; version=0.0.4")
    assert b'\nbooktime_chat_sockets_open{protocol="v2"} ' in answer["body"]
    assert b"_created" not in answer["body"]
    settings.METRICS_TOKEN = ""
    assert (await scraped([(b"authorization", b"Bearer ")]))["status"] == 404


async def test_a_reader_that_hangs_does_not_hold_the_scrape_up(settings, monkeypatch):
    settings.METRICS_TOKEN = TOKEN
    metrics.AGENTS_ONLINE.set(3)

    async def hangs():
        await asyncio.Event().wait()

    monkeypatch.setattr(scrape, "_readers", [hangs])
    monkeypatch.setattr(scrape, "READ_TIMEOUT_SECONDS", 0.2)
    started = time.monotonic()
    answer = await scraped([(b"authorization", f"Bearer {TOKEN}".encode())])
    assert answer["status"] == 200 and time.monotonic() - started < 1.0
    assert b"\nbooktime_agents_online 3.0\n" in answer["body"]  # the last value read


def test_presence_is_read_by_the_scrape():
    assert gauges.read in scrape._readers  # registered as the app is ready (main/apps.py)


async def test_presence_numbers_come_from_the_live_listing(prefix, close_pool):
    await presence.touch(1, "ann@example.com", False)
    await presence.touch(1, "agent@booktime.domain", True)
    await presence.touch(2, "bob@example.com", False)
    await gauges.read()
    assert sample("booktime_presence_people", role="customer") == 2
    assert sample("booktime_presence_people", role="employee") == 1
    assert sample("booktime_presence_chats") == 2
    assert sample("booktime_agents_online") == 1


def test_a_socket_over_its_rates_counts_a_throttle_hit_per_refusal(settings):
    limits = Limits.from_settings()
    for rate, scope in ((limits.message_rate(), "chat_message"), (limits.frame_rate(), "chat_frame")):
        before = sample("booktime_throttled_total", scope=scope)
        for _ in range(rate.burst):
            rate.take()
        assert sample("booktime_throttled_total", scope=scope) == before
        for _ in range(2):
            with pytest.raises(ChatError):
                rate.take()
        assert sample("booktime_throttled_total", scope=scope) == before + 2


def test_messages_sent_through_the_api_and_its_throttle_are_counted(db, monkeypatch):
    monkeypatch.setattr(SendThrottle, "THROTTLE_RATES", {"chat-send": "1/min"})
    customer = factories.UserFactory(email="metrics-api@example.com")
    order = factories.OrderFactory(user=customer)
    cache.delete(f"throttle_chat-send_{customer.pk}")
    api = APIClient(HTTP_AUTHORIZATION=f"Token {Token.objects.get(user=customer).key}")
    url = reverse("mobile_conversation_messages", args=[order.pk])
    stored, throttled = (
        sample("booktime_chat_messages_stored_total", via="api"),
        sample("booktime_throttled_total", scope="chat_send"),
    )
    try:
        assert api.post(url, {"message": "hello"}, format="json").status_code == 201
        assert api.post(url, {"message": "again"}, format="json").status_code == 429
        assert api.get(url).status_code == 200  # reading is not throttled
    finally:
        cache.delete(f"throttle_chat-send_{customer.pk}")
    assert sample("booktime_chat_messages_stored_total", via="api") == stored + 1
    assert sample("booktime_throttled_total", scope="chat_send") == throttled + 1


@pytest.fixture
async def courier_url(settings):
    """The courier's stand-in in this process, on a free port; its calls bounded at 0.5 s."""
    runner = web.AppRunner(standin.make_app(), shutdown_timeout=0.1)  # the call left hanging
    await runner.setup()
    port = servers.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    settings.COURIER_API_URL = f"http://127.0.0.1:{port}/"
    settings.COURIER_API_TIMEOUT = 0.5
    yield settings.COURIER_API_URL
    await courier.close_session()
    await runner.cleanup()


async def test_courier_calls_are_counted_by_outcome_and_timed(courier_url):
    outcomes = {"ok": "ok", "error404": "not_found", "error503": "http_error", "huge": "bad_answer"}
    outcomes.update({"close": "unreachable", "hang": "timeout"})
    orders = {order_id: mode for order_id, mode in enumerate(outcomes, start=1)}
    async with aiohttp.ClientSession() as session:
        changes = {"orders": {order_id: {"mode": mode} for order_id, mode in orders.items()}}
        async with session.post(f"{courier_url}control", json=changes) as answer:
            assert answer.status == 200
    before = {outcome: sample("booktime_courier_calls_total", outcome=outcome) for outcome in outcomes.values()}
    count, total = sample("booktime_courier_call_seconds_count"), sample("booktime_courier_call_seconds_sum")
    for order_id, mode in orders.items():
        outcome = outcomes[mode]
        if outcome == "ok":
            await courier.fetch_status(order_id)
        else:
            with pytest.raises(courier.CourierError) as failed:
                await courier.fetch_status(order_id)
            assert failed.value.outcome == outcome
        assert sample("booktime_courier_calls_total", outcome=outcome) == before[outcome] + 1, mode
    assert sample("booktime_courier_call_seconds_count") == count + len(outcomes)
    assert 0.5 <= sample("booktime_courier_call_seconds_sum") - total < 2.0  # the call that hung: its timeout


def test_the_login_throttles_lockouts_are_counted():
    before = sample("booktime_throttled_total", scope="login")
    user_locked_out.send("axes", request=None, username="someone@example.com", ip_address="203.0.113.9")
    assert sample("booktime_throttled_total", scope="login") == before + 1


def access_record(path, status):
    args = ("127.0.0.1:5000", "GET", path, "1.1", status)
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', args, None)


def test_successful_probes_and_scrapes_write_no_access_line():
    quiet = health.QuietProbes()
    assert not quiet.filter(access_record("/healthz", 200))
    assert not quiet.filter(access_record("/readyz?verbose=1", 200))
    assert not quiet.filter(access_record("/metrics", 200))
    assert quiet.filter(access_record("/readyz", 503))  # a failing probe is worth a line
    assert quiet.filter(access_record("/metrics", 404))  # so is a refused scrape
    assert quiet.filter(access_record("/login/", 200))
