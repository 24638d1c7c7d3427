"""The agents' inbox on /customer-service/ in headless Debian chromium
against a real worker: customers start waiting (on the chat page, or
through a real WebSocket) and go away; the agent is told (title, sound,
notification, live region), sees the wait tick, claims and resolves from
the page."""

import json
import re
import urllib.request
import uuid

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from main import factories, models
from main.conversations import state, wire
from main.conversations.store import store_now

from ..browsing import browser_login, screenshot

WAIT_MS = 10_000
TITLE = "Customer service · BookTime"

# Counts what the page asks of the browser: notifications shown (the real
# constructor still runs), permission requests, and the oscillators of beeps.
WATCH = """(() => {
  window.__notifications = [];
  window.__permissionAsked = 0;
  window.__oscillators = 0;
  const Real = window.Notification;
  if (Real) {
    class Counted extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notifications.push({ title: title, body: options && options.body });
      }
    }
    Object.defineProperty(Counted, "permission", { get: () => Real.permission });
    Counted.requestPermission = function () {
      window.__permissionAsked += 1;
      return Real.requestPermission.apply(Real, arguments);
    };
    window.Notification = Counted;
  }
  const create = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () {
    window.__oscillators += 1;
    return create.call(this);
  };
})();"""


@pytest.fixture
def env():
    # Presence (and agents online) of this test's own: an earlier test's
    # heartbeats never show here.
    return {"PRESENCE_KEY_PREFIX": f"test:presence:{uuid.uuid4().hex}:"}


# (First: the browser tests after it keep Playwright's event loop running in this thread.)
def test_only_employees_get_the_inbox_page_with_a_csrf_cookie(client, db):
    client.force_login(factories.EmployeeFactory())
    response = client.get("/customer-service/")
    assert response.status_code == 200
    assert settings.CSRF_COOKIE_NAME in response.cookies  # the page's actions post with it
    html = response.content.decode()
    for needed in ('data-stream="/customer-service/inbox/"', "inbox.js", "conversation-actions.js", "dashboard.js"):
        assert needed in html
    user = response.context["user"]
    assert f'data-user-id="{user.pk}"' in html


def open_inbox(browser, server, email, grant=True):
    context, page = browser_login(browser, server, email)
    if grant:
        context.grant_permissions(["notifications"], origin=server.url)
    context.add_init_script(WATCH)
    page.goto(f"{server.url}/customer-service/")
    expect(page.locator("#inbox-connection")).to_have_class(re.compile(r"\blive\b"), timeout=WAIT_MS)
    return context, page


def row(page, order):
    return page.locator(f"#inbox-list .conv[data-order-id='{order.pk}']")


def shown_rows(page):
    """The order ids of the rows the selected tab shows, top to bottom."""
    return page.eval_on_selector_all(
        "#inbox-list .conv:not([hidden])", "rows => rows.map(r => Number(r.dataset.orderId))"
    )


def write_through_a_socket(server, user, order, text):
    """A customer's app: a real chat WebSocket (v1, by token), one message, closed."""
    token = Token.objects.get(user=user).key
    with connect(f"{server.ws_url}/ws/customer-service/{order.pk}/?token={token}", open_timeout=5) as ws:
        ws.send(json.dumps({"type": "message", "message": text}))
        while json.loads(ws.recv(timeout=5)) != {
            "type": "chat_message",
            "username": user.display_name,
            "message": text,
        }:
            pass


def no_sideways_scrolling(page, width):
    page.set_viewport_size({"width": width, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def two_customers_and_an_agent():
    """Jane and Bob, an order each, and Adam, an employee."""
    jane = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    bob = factories.UserFactory(email="bob@example.com", first_name="Bob", last_name="Stone")
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    return jane, factories.OrderFactory(user=jane), bob, factories.OrderFactory(user=bob), agent


def seconds_waited(text):
    minutes, seconds = re.fullmatch(r"Waiting (\d+):(\d\d)", text).groups()
    return int(minutes) * 60 + int(seconds)


def test_a_customer_who_wrote_and_left_waits_in_the_inbox_until_claimed_and_resolved(worker_server, browser, env):
    jane, janes_order, bob, bobs_order, agent = two_customers_and_an_agent()
    server = worker_server(env)

    context, page = open_inbox(browser, server, agent.email)
    expect(page.locator("#inbox-empty")).to_have_text(re.compile("Nobody is waiting"))
    expect(page).to_have_title(TITLE)
    expect(page.locator("#inbox-notify")).to_have_text("Notifications are on")  # granted: nothing to ask
    assert page.evaluate("window.__permissionAsked") == 0
    page.click("#tab-waiting")  # the agent has used the page: it may make sound

    # Jane writes on the chat page, and is seen in her chat while it is open.
    customer_context, customer_page = browser_login(browser, server, jane.email)
    customer_page.goto(f"{server.url}/customer-service/{janes_order.pk}/")
    expect(customer_page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)
    customer_page.fill("#chat-input", "My book arrived damaged")
    customer_page.press("#chat-input", "Enter")
    expect(customer_page.locator(".msg .msg-text")).to_have_text(["My book arrived damaged"], timeout=WAIT_MS)

    janes = row(page, janes_order)
    expect(janes).to_have_attribute("data-status", "waiting", timeout=WAIT_MS)
    expect(janes.locator(".conv-name")).to_have_text("Jane Doe")
    expect(janes.locator(".conv-name")).to_have_attribute("href", f"/customer-service/{janes_order.pk}/")
    expect(janes.locator(".conv-email")).to_have_text("jane_doe@example.com")
    expect(janes.locator(".conv-order")).to_have_text(f"Order #{janes_order.pk}")
    expect(janes.locator(".conv-last")).to_have_text("My book arrived damaged")  # her name is on the row
    expect(janes.locator(".conv-unread")).to_have_text("1 unread")
    expect(janes.locator(".conv-holder")).to_have_text("Nobody holds it")
    expect(janes).to_have_class(re.compile(r"\bonline\b"), timeout=WAIT_MS)  # from the presence stream
    expect(janes.locator("button:visible")).to_have_text(["Claim", "Resolve"])
    expect(page).to_have_title(f"(1) {TITLE}")
    expect(page.locator("#tab-waiting .count")).to_have_text("1")
    expect(page.locator("#inbox-announce")).to_have_text(
        f"Jane Doe is waiting, order #{janes_order.pk}: My book arrived damaged"
    )
    assert page.evaluate("window.__notifications") == [
        {"title": "Jane Doe is waiting", "body": f"Order #{janes_order.pk}: My book arrived damaged"}
    ]
    assert page.evaluate("window.__oscillators") > 0  # the beep

    customer_context.close()  # she closes the tab: she still waits
    first = janes.locator(".conv-state").inner_text()
    page.wait_for_function(  # the wait counts up by itself, a second at a time
        "([sel, before]) => document.querySelector(sel).textContent !== before",
        arg=[f"#inbox-list .conv[data-order-id='{janes_order.pk}'] .conv-state", first],
        timeout=2500,
    )
    assert seconds_waited(janes.locator(".conv-state").inner_text()) > seconds_waited(first)

    # Bob writes from his app, later: he waits below Jane (the longest wait first).
    write_through_a_socket(server, bob, bobs_order, "Where is my order?")
    expect(row(page, bobs_order)).to_have_attribute("data-status", "waiting", timeout=WAIT_MS)
    expect(page).to_have_title(f"(2) {TITLE}")
    assert shown_rows(page) == [janes_order.pk, bobs_order.pk]
    assert [n["title"] for n in page.evaluate("window.__notifications")] == [
        "Jane Doe is waiting",
        "Bob Stone is waiting",
    ]

    # A reload lists both as waiting still (the whole inbox), and tells no one again.
    page.reload()
    expect(row(page, bobs_order)).to_have_attribute("data-status", "waiting", timeout=WAIT_MS)
    assert shown_rows(page) == [janes_order.pk, bobs_order.pk]
    expect(page).to_have_title(f"(2) {TITLE}")
    assert page.evaluate("window.__notifications") == []

    # Claimed from the page: the row says who holds it.
    janes.locator("button.claim").click()
    expect(janes.locator(".conv-holder")).to_have_text("Held by you", timeout=WAIT_MS)
    expect(janes.locator("button:visible")).to_have_text(["Release", "Resolve"])
    expect(page.locator("#tab-mine .count")).to_have_text("1")
    expect(page.locator("#tab-unassigned .count")).to_have_text("1")
    assert models.Conversation.objects.get(order=janes_order).assigned_to == agent
    for width in (390, 1280):
        page.set_viewport_size({"width": width, "height": 844 if width == 390 else 800})
        screenshot(page, f"inbox-{width}")
    for width in (320, 390):
        no_sideways_scrolling(page, width)
    page.set_viewport_size({"width": 1280, "height": 800})

    # Resolved: it leaves the waiting ones for the Resolved tab.
    janes.locator("button.resolve").click()
    expect(janes).to_be_hidden(timeout=WAIT_MS)
    assert shown_rows(page) == [bobs_order.pk]
    expect(page).to_have_title(f"(1) {TITLE}")
    expect(page.locator("#tab-resolved .count")).to_have_text("1")
    page.click("#tab-resolved")
    expect(janes).to_be_visible()
    expect(janes.locator(".conv-state")).to_have_text("Resolved")
    expect(janes.locator("button:visible")).to_have_text(["Release", "Reopen"])
    assert models.Conversation.objects.get(order=janes_order).status == "resolved"
    screenshot(page, "inbox-resolved-1280")
    context.close()


def test_a_claim_someone_else_got_first_says_who_holds_it(worker_server, browser, env):
    jane = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=jane)
    adam = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    bea = factories.EmployeeFactory(email="bea@booktime.domain", first_name="Bea", last_name="Baker")
    store_now(order.pk, jane.pk, "Hello?")
    server = worker_server(env)

    # Adam's page shows the inbox as it was before Bea claimed it (his
    # stream is held back), so his Claim reaches the server second.
    stale = {"now": wire.timestamp(timezone.now()), "agents_online": 1, "conversations": state.inbox(adam)}
    context, page = browser_login(browser, server, adam.email)
    page.route(
        f"{server.url}/customer-service/inbox/",
        lambda route: route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream"},
            body=f"retry: 600000\nevent: inbox\ndata: {json.dumps(stale)}\n\n",
        ),
    )
    request = urllib.request.Request(
        f"{server.url}/mobile-api/conversations/{order.pk}/claim/",
        method="POST",
        headers={"Authorization": f"Token {Token.objects.get(user=bea).key}"},
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert answer.status == 200

    page.goto(f"{server.url}/customer-service/")
    claim = row(page, order).locator("button.claim")
    claim.click()
    expect(page.locator("#inbox-error")).to_have_text(f"Order #{order.pk}: Bea Baker already holds this conversation.")
    expect(claim).to_have_text("Claim")
    expect(claim).not_to_have_attribute("aria-disabled", "true")
    assert models.Conversation.objects.get(order=order).assigned_to == bea
    context.close()


def test_notifications_are_asked_for_on_a_click_and_the_sound_can_be_muted(worker_server, browser, env):
    jane, janes_order, bob, bobs_order, agent = two_customers_and_an_agent()
    server = worker_server(env)

    context, page = open_inbox(browser, server, agent.email, grant=False)
    notify = page.locator("#inbox-notify")
    expect(notify).to_have_text("Turn on notifications")
    assert page.evaluate("window.__permissionAsked") == 0  # never on load
    notify.click()
    page.wait_for_function("window.__permissionAsked === 1", timeout=WAIT_MS)

    mute = page.locator("#inbox-mute")
    expect(mute).to_have_attribute("aria-pressed", "false")
    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "true")
    page.reload()  # remembered
    expect(page.locator("#inbox-connection")).to_have_class(re.compile(r"\blive\b"), timeout=WAIT_MS)
    expect(mute).to_have_attribute("aria-pressed", "true")

    # The tabs work from the keyboard (arrow keys), and the choice is kept.
    page.focus("#tab-waiting")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-mine")).to_be_focused()
    expect(page.locator("#tab-mine")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#inbox-empty")).to_have_text(re.compile("You hold no open conversations"))
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#tab-waiting")).to_have_attribute("aria-selected", "true")

    write_through_a_socket(server, jane, janes_order, "Muted?")
    expect(page.locator("#inbox-announce")).to_have_text(
        f"Jane Doe is waiting, order #{janes_order.pk}: Muted?", timeout=WAIT_MS
    )
    assert page.evaluate("window.__oscillators") == 0  # muted: no beep
    assert page.evaluate("window.__notifications") == []  # not allowed: none

    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "false")
    write_through_a_socket(server, bob, bobs_order, "Loud?")
    expect(page.locator("#inbox-announce")).to_have_text(
        f"Bob Stone is waiting, order #{bobs_order.pk}: Loud?", timeout=WAIT_MS
    )
    assert page.evaluate("window.__oscillators") > 0
    context.close()
