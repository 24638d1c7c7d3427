"""The customer-service dashboard page: who may open it, and in headless
Chromium against a real worker, a customer arriving in a chat and going away."""

import json
import uuid

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from main import factories, presence

from ..browsing import browser_login, screenshot


def employee(**kwargs):
    user = factories.UserFactory(is_staff=True, **kwargs)
    user.groups.add(Group.objects.get_or_create(name="Employees")[0])
    return user


def test_only_employees_open_the_dashboard(client, db):
    url = reverse("cs_main")
    assert client.get(url).url.startswith(reverse("login"))
    client.force_login(factories.UserFactory())
    assert client.get(url).url.startswith(reverse("login"))
    client.force_login(employee())
    response = client.get(url)
    assert response.status_code == 200
    assert b'data-stream="/customer-service/notify/?format=v2"' in response.content
    assert b"dashboard.js" in response.content


@pytest.fixture
def redis_env(settings):
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    # Presence keys of this test's own, gone a few seconds after the last heartbeat.
    return {"REDIS_URL": settings.REDIS_URL, "PRESENCE_KEY_PREFIX": f"test:presence:{uuid.uuid4().hex}:"}


def test_dashboard_shows_a_customer_arriving_and_going_away(worker_server, browser, redis_env):
    customer = factories.UserFactory(email="mary_jones@example.com")
    agent = employee(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    order = factories.OrderFactory(user=customer)
    tokens = {u: Token.objects.get(user=u).key for u in (customer, agent)}
    server = worker_server(redis_env)
    chat_url = f"{server.ws_url}/ws/customer-service/{order.pk}/?token="

    context, page = browser_login(browser, server, "agent@booktime.domain")
    page.goto(f"{server.url}/customer-service/")
    page.wait_for_selector("#connection.live")
    page.wait_for_selector("#empty:not([hidden])")

    card = f".chat[data-order-id='{order.pk}']"
    with connect(chat_url + tokens[customer], open_timeout=5, close_timeout=2) as mary:
        mary.send(json.dumps({"type": "heartbeat"}))
        page.wait_for_selector(f"{card}.waiting", timeout=2000)
        assert "mary_jones@example.com" in page.inner_text(card)
        assert "No employee has spoken to them yet" in page.inner_text(card)
        assert "1 customer chat waiting with no employee" in page.inner_text("#summary")
        waited = page.inner_text(f"{card} .badge")
        assert waited.startswith("Waiting 0:0")
        page.wait_for_function(  # the waiting time counts up by itself
            "([sel, before]) => document.querySelector(sel).textContent !== before",
            arg=[f"{card} .badge", waited],
            timeout=2500,
        )
        screenshot(page, "dashboard-customer-waiting")

        with connect(chat_url + tokens[agent], open_timeout=5, close_timeout=2) as adam:
            adam.send(json.dumps({"type": "heartbeat"}))
            page.wait_for_selector(f"{card}:not(.waiting)", timeout=2000)
            assert page.inner_text(f"{card} .badge") == "Employee present"
            assert "Last spoken to by Adam Ford (agent@booktime.domain)" in page.inner_text(card)
            screenshot(page, "dashboard-customer-served")

    # Both sockets closed, no more heartbeats: 10 s (and the grace) later the chat is gone.
    page.wait_for_selector(
        card, state="detached", timeout=(presence.PRESENCE_SECONDS + presence.PRESENCE_GRACE_SECONDS + 2) * 1000
    )
    page.wait_for_selector("#empty:not([hidden])")
    screenshot(page, "dashboard-empty-again")
    context.close()
