"""The chat page in headless Debian chromium against a real worker: a
customer and an agent in two browser contexts."""

import asyncio
import re
import signal
import threading
import uuid

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from playwright.sync_api import expect

from harness import servers
from main import factories, models
from main.conversations import events, store
from main.conversations.store import store_now

from ..browsing import browser_login, screenshot

WAIT_MS = 10_000


def open_chat(browser, server, email, order):
    context, page = browser_login(browser, server, email)
    page.goto(f"{server.url}/customer-service/{order.pk}/")
    expect(page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)
    return context, page


def test_customer_and_agent_chat_and_a_reload_shows_the_history(worker_server, browser):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    factories.OrderLineFactory(order=order, product=factories.ProductFactory(name="Django Stories"))
    factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    server = worker_server()

    customer_context, customer_page = open_chat(browser, server, "jane_doe@example.com", order)
    expect(customer_page.locator("a.back")).to_have_attribute("href", "/my-orders/")
    agent_context, agent_page = open_chat(browser, server, "agent@booktime.domain", order)
    expect(agent_page.locator("a.back")).to_have_attribute("href", "/customer-service/")
    expect(customer_page.locator(".notice").last).to_have_text("Adam Ford joined the chat", timeout=WAIT_MS)

    question = "<b>Where is my book?</b> <img src=x onerror=alert(1)> 📚"
    customer_page.fill("#chat-input", question)
    customer_page.press("#chat-input", "Enter")
    agent_text = agent_page.locator(".msg .msg-text")
    expect(agent_text.last).to_have_text(question, timeout=WAIT_MS)  # shown as text, never as HTML
    assert agent_page.locator(".chat-log b, .chat-log img").count() == 0
    expect(agent_page.locator(".msg .msg-who").last).to_have_text("Jane Doe")

    agent_page.fill("#chat-input", "It ships tomorrow.\nSorry for the wait!")
    agent_page.click("#chat-send")
    expect(customer_page.locator(".msg .msg-text").last).to_have_text(
        "It ships tomorrow.\nSorry for the wait!", timeout=WAIT_MS
    )
    expect(customer_page.locator(".msg .msg-who").last).to_have_text("Adam Ford")
    expect(customer_page.locator(".msg.mine .msg-seen").first).to_be_visible(timeout=WAIT_MS)  # agent read it

    customer_page.reload()
    expect(customer_page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)
    expect(customer_page.locator(".msg .msg-text")).to_have_text(
        [question, "It ships tomorrow.\nSorry for the wait!"], timeout=WAIT_MS
    )
    assert models.ChatMessage.objects.filter(order=order).count() == 2
    screenshot(customer_page, "chat-customer")
    screenshot(agent_page, "chat-agent")
    agent_context.close()
    customer_context.close()


def test_the_page_reconnects_by_itself_and_shows_what_it_missed(worker_server, browser):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    store_now(order.pk, customer.pk, "Hello?")
    server = worker_server()
    context, page = open_chat(browser, server, "jane_doe@example.com", order)
    expect(page.locator(".msg .msg-text")).to_have_text(["Hello?"])

    server.stop()  # the server restarts: the page loses its socket
    expect(page.locator("#chat-status")).not_to_have_text("Connected", timeout=WAIT_MS)
    for n in range(3):  # said while the page was away
        store_now(order.pk, agent.pk, f"Sorry, we were away ({n})")
    restarted = servers.worker(port=server.port)
    try:
        expect(page.locator("#chat-status")).to_have_text("Connected", timeout=30_000)
        expect(page.locator(".msg .msg-text")).to_have_text(
            ["Hello?"] + [f"Sorry, we were away ({n})" for n in range(3)], timeout=WAIT_MS
        )
        page.fill("#chat-input", "Welcome back")
        page.press("#chat-input", "Enter")
        expect(page.locator(".msg .msg-text")).to_have_text(
            ["Hello?"] + [f"Sorry, we were away ({n})" for n in range(3)] + ["Welcome back"], timeout=WAIT_MS
        )
        screenshot(page, "chat-after-reconnect")
    finally:
        context.close()
        restarted.stop()


def chat_page(browser, env=None, worker_server=None):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    server = worker_server(env)
    context, page = open_chat(browser, server, "jane_doe@example.com", order)
    return customer, order, context, page


def test_a_message_the_server_refuses_goes_back_into_the_box(worker_server, browser):
    # One message, then none for a long while: the second is refused (rate_limited).
    customer, order, context, page = chat_page(
        browser, {"CHAT_RATE_BURST": "1", "CHAT_RATE_PER_SECOND": "0.01"}, worker_server
    )
    page.fill("#chat-input", "First question")
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg .msg-text")).to_have_text(["First question"], timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_have_value("")

    page.fill("#chat-input", "Second question, sent too soon")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-error")).to_contain_text("back in the box", timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_have_value("Second question, sent too soon")
    expect(page.locator(".msg .msg-text")).to_have_text(["First question"])
    assert list(models.ChatMessage.objects.filter(order=order).values_list("text", flat=True)) == ["First question"]
    screenshot(page, "chat-refused-message")
    context.close()


def test_a_too_long_message_stays_in_the_box_by_the_servers_limit(worker_server, browser):
    customer, order, context, page = chat_page(browser, {"CHAT_MAX_MESSAGE_CHARS": "20"}, worker_server)
    long = "This one is longer than twenty characters"
    page.fill("#chat-input", long)  # no hard-coded maxlength: the limit comes from the server
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-error")).to_contain_text("the limit is 20", timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_have_value(long)
    page.fill("#chat-input", "Short enough 🙂")  # 14 characters (more UTF-16 units)
    page.press("#chat-input", "Enter")
    expect(page.locator(".msg .msg-text")).to_have_text(["Short enough 🙂"], timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_have_value("")
    assert models.ChatMessage.objects.filter(order=order).count() == 1
    context.close()


def test_a_message_that_arrives_late_is_fetched_again_and_shown_in_order(worker_server, browser):
    """Two messages are stored but only the later one reaches the page live
    (as when two server processes fan out out of order): the page sees the
    gap in the sequence and fetches what is missing, each message once."""
    customer, order, context, page = chat_page(browser, None, worker_server)
    expect(page.locator("#chat-empty")).to_be_visible(timeout=WAIT_MS)
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    first = store_now(order.pk, agent.pk, "Stored first, delivered late")
    second = store_now(order.pk, agent.pk, "Stored second")
    assert (first.seq, second.seq) == (1, 2)
    group_send(events.order_group(order.pk), events.chat_message(store.Stored(second, True), customer.pk))
    expect(page.locator(".msg .msg-text")).to_have_text(
        ["Stored first, delivered late", "Stored second"], timeout=WAIT_MS
    )
    context.close()


def group_send(group, event):
    """Send to the channel layer (the servers' Redis) from a thread of its
    own: Playwright's sync API keeps an event loop running in this one."""

    async def send():
        layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)  # its own connections, on this loop
        try:
            await layer.group_send(group, event)
        finally:
            if hasattr(layer, "close_pools"):  # the list-based layer
                await layer.close_pools()
            else:  # the pub/sub layer: flush() closes its connections
                await layer.flush()

    done = []
    thread = threading.Thread(target=lambda: done.append(asyncio.run(send())))
    thread.start()
    thread.join(WAIT_MS / 1000)
    assert done == [None]


def test_a_message_lost_with_the_connection_is_sent_again_once_back(worker_server, browser):
    """The frame goes out but the server dies before storing it: the page
    keeps the message as "sending" and sends it again by itself once it has
    resumed on the restarted server; it is stored once."""
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    server = worker_server()
    context, page = open_chat(browser, server, "jane_doe@example.com", order)
    expect(page.locator("#chat-empty")).to_be_visible(timeout=WAIT_MS)

    server.process.send_signal(signal.SIGSTOP)  # the server hangs: the frame goes out, nothing comes back
    page.fill("#chat-input", "Are you still there?")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-input")).to_have_value("")
    expect(page.locator(".outgoing .msg-text")).to_have_text(["Are you still there?"])  # shown, as sending
    expect(page.locator(".outgoing .msg-sending")).to_have_text("Sending…")
    server.process.kill()  # ...then dies, before storing or echoing it
    server.stop()
    expect(page.locator("#chat-status")).not_to_have_text("Connected", timeout=WAIT_MS)
    expect(page.locator(".outgoing .msg-sending")).to_contain_text("waiting for the connection", timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_have_value("")  # not put back in the box: it will go by itself

    restarted = servers.worker(port=server.port)
    try:
        expect(page.locator("#chat-status")).to_have_text("Connected", timeout=30_000)
        expect(page.locator(".msg .msg-text")).to_have_text(["Are you still there?"], timeout=WAIT_MS)
        expect(page.locator(".outgoing")).to_have_count(0)
        [stored] = models.ChatMessage.objects.filter(order=order)
        assert stored.text == "Are you still there?" and stored.client_id
        expect(page.locator(".msg")).to_have_attribute("data-id", str(stored.pk))
    finally:
        context.close()
        restarted.stop()


# Lets a test lose the echo of the page's next message, as a connection that
# drops just after the server stored it would: the live echo, and its replay
# after the reconnect, until the page has sent it a second time. Records
# every message frame the page sends, and the frames it lost.
LOSE_ECHO = """(() => {
  window.__sent = [];
  window.__lost = [];
  window.__sockets = [];
  window.__loseEcho = false;
  let losing = null;
  const sentAs = (id) => window.__sent.filter((f) => f.client_id === id).length;
  const Real = window.WebSocket;
  window.WebSocket = class extends Real {
    constructor(url, protocols) {
      super(url, protocols);
      window.__sockets.push(this);
    }
    send(data) {
      const frame = JSON.parse(data);
      if (frame.type === "message") {
        window.__sent.push(frame);
        if (window.__loseEcho) {
          window.__loseEcho = false;
          losing = frame.client_id;
        }
      }
      super.send(data);
    }
    set onmessage(handler) {
      super.onmessage = (event) => {
        const e = JSON.parse(event.data);
        if (e.type === "chat_message" && e.mine && e.client_id === losing && sentAs(losing) < 2) {
          window.__lost.push(e);
          return;
        }
        handler(event);
      };
    }
  };
})();"""


def test_a_message_whose_echo_was_lost_is_sent_again_with_its_client_id_and_stored_once(worker_server, browser):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    server = worker_server()
    context, page = browser_login(browser, server, "jane_doe@example.com")
    context.add_init_script(LOSE_ECHO)
    page.goto(f"{server.url}/customer-service/{order.pk}/")
    expect(page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)

    page.evaluate("window.__loseEcho = true")
    page.fill("#chat-input", "Stored once, whatever happens")
    page.press("#chat-input", "Enter")
    page.wait_for_function("window.__lost.length === 1", timeout=WAIT_MS)  # stored; its echo lost
    expect(page.locator(".outgoing .msg-sending")).to_have_text("Sending…")
    [stored] = models.ChatMessage.objects.filter(order=order)

    page.evaluate("window.__sockets.at(-1).close()")  # the connection drops
    expect(page.locator(".msg .msg-text")).to_have_text(["Stored once, whatever happens"], timeout=WAIT_MS)
    expect(page.locator(".outgoing")).to_have_count(0)
    sent = page.evaluate("window.__sent")
    assert len(sent) == 2 and sent[0] == sent[1]  # sent again as it was: the same client_id
    assert sent[0]["client_id"] == stored.client_id
    assert len(page.evaluate("window.__lost")) == 2  # the live echo, and its replay on resume
    # The server answered the second send with the message stored the first time.
    assert list(models.ChatMessage.objects.filter(order=order)) == [stored]
    expect(page.locator(".msg")).to_have_attribute("data-id", str(stored.pk))
    context.close()


def test_the_conversation_bar_and_the_queue(worker_server, browser):
    """The customer sees that they wait, and where they are in the queue;
    the agent sees the same status, claims, answers and resolves there."""
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    factories.OrderLineFactory(order=order, product=factories.ProductFactory(name="Django Stories"))
    factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    # Agents online of this test's own: nobody until the agent opens the chat.
    server = worker_server({"PRESENCE_KEY_PREFIX": f"test:presence:{uuid.uuid4().hex}:"})

    customer_context, customer_page = open_chat(browser, server, "jane_doe@example.com", order)
    expect(customer_page.locator("#conv-status")).to_have_text("No messages yet")
    expect(customer_page.locator("#chat-queue")).to_have_text("")
    assert customer_page.locator("#conv-actions").count() == 0  # customers get no buttons
    customer_page.fill("#chat-input", "Is my book on its way?")
    customer_page.press("#chat-input", "Enter")
    expect(customer_page.locator("#conv-status")).to_have_text(
        re.compile(r"^Waiting for a reply · 0:\d\d$"), timeout=WAIT_MS
    )
    expect(customer_page.locator("#chat-queue")).to_have_text(
        "Nobody from customer service is online right now. "
        "Your message is kept, and we will answer as soon as someone is back.",
        timeout=WAIT_MS,
    )

    agent_context, agent_page = open_chat(browser, server, "agent@booktime.domain", order)
    expect(agent_page.locator("#conv-status")).to_have_text(re.compile(r"^Waiting for a reply · 0:\d\d$"))
    expect(agent_page.locator("#conv-holder")).to_have_text("Nobody holds it")
    expect(agent_page.locator("#conv-actions button:visible")).to_have_text(["Claim", "Resolve"])
    agent_page.click("#conv-actions button.claim")
    expect(agent_page.locator("#conv-holder")).to_have_text("Held by you", timeout=WAIT_MS)
    expect(agent_page.locator("#conv-actions button:visible")).to_have_text(["Release", "Resolve"])
    expect(agent_page.locator("#conv-actions button.release")).to_be_focused()  # the keyboard stays in the bar
    expect(customer_page.locator("#conv-holder")).to_have_text(
        "Adam Ford is looking after your question", timeout=WAIT_MS
    )
    # The agent is online now: the queue says so.
    expect(customer_page.locator("#chat-queue")).to_have_text(
        "You are next. We will answer as soon as we can.", timeout=WAIT_MS
    )
    for width in (390, 1280):
        for page, who in ((customer_page, "customer"), (agent_page, "agent")):
            page.set_viewport_size({"width": width, "height": 844 if width == 390 else 800})
            # A phone has no room for the keyboard hint, nor a Shift key to use it.
            hint = "Write a message…" if width == 390 else re.compile("Enter to send")
            expect(page.locator("#chat-input")).to_have_attribute("placeholder", hint)
            screenshot(page, f"chat-{who}-waiting-{width}")
    for page in (customer_page, agent_page):
        for width in (320, 390):
            page.set_viewport_size({"width": width, "height": 844})
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.set_viewport_size({"width": 1100, "height": 800})

    agent_page.fill("#chat-input", "It ships today.")
    agent_page.press("#chat-input", "Enter")
    for page in (customer_page, agent_page):
        expect(page.locator("#conv-status")).to_have_text("Answered", timeout=WAIT_MS)
    expect(customer_page.locator("#chat-queue")).to_have_text("")  # no longer waiting

    agent_page.click("#conv-actions button.resolve")
    for page in (customer_page, agent_page):
        expect(page.locator("#conv-status")).to_have_text("Resolved", timeout=WAIT_MS)
    expect(agent_page.locator("#conv-actions button:visible")).to_have_text(["Release", "Reopen"])
    assert models.Conversation.objects.get(order=order).status == "resolved"
    agent_page.click("#conv-actions button.reopen")
    expect(agent_page.locator("#conv-status")).to_have_text("Answered", timeout=WAIT_MS)
    agent_page.click("#conv-actions button.release")
    expect(agent_page.locator("#conv-holder")).to_have_text("Nobody holds it", timeout=WAIT_MS)
    expect(customer_page.locator("#conv-holder")).to_have_text("", timeout=WAIT_MS)
    assert models.Conversation.objects.get(order=order).assigned_to is None
    agent_context.close()
    customer_context.close()
