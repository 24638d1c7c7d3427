"""The chat page in headless Debian chromium against a real worker: a
customer and an agent in two browser contexts."""

import asyncio
import signal
import threading

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


def test_a_message_lost_with_the_connection_goes_back_into_the_box(worker_server, browser):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    server = worker_server()
    context, page = open_chat(browser, server, "jane_doe@example.com", order)
    expect(page.locator("#chat-empty")).to_be_visible(timeout=WAIT_MS)

    server.process.send_signal(signal.SIGSTOP)  # the server hangs: the frame goes out, nothing comes back
    page.fill("#chat-input", "Are you still there?")
    page.press("#chat-input", "Enter")
    expect(page.locator("#chat-input")).to_have_value("")
    server.process.kill()  # ...then dies, before storing or echoing it
    server.stop()
    expect(page.locator("#chat-status")).not_to_have_text("Connected", timeout=WAIT_MS)
    expect(page.locator("#chat-error")).to_contain_text("back in the box", timeout=WAIT_MS)
    expect(page.locator("#chat-input")).to_have_value("Are you still there?")

    restarted = servers.worker(port=server.port)
    try:
        expect(page.locator("#chat-status")).to_have_text("Connected", timeout=30_000)
        expect(page.locator("#chat-input")).to_have_value("Are you still there?")  # it was never stored
        page.press("#chat-input", "Enter")
        expect(page.locator(".msg .msg-text")).to_have_text(["Are you still there?"], timeout=WAIT_MS)
        expect(page.locator("#chat-input")).to_have_value("")
        assert models.ChatMessage.objects.filter(order=order).count() == 1
    finally:
        context.close()
        restarted.stop()
