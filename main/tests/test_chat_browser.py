"""The chat page in headless Debian chromium against a real daphne: a
customer and an agent in two browser contexts."""

from playwright.sync_api import expect

from main import factories, models

from . import servers
from .conftest import browser_login, screenshot

WAIT_MS = 10_000


def open_chat(browser, server, email, order):
    context, page = browser_login(browser, server, email)
    page.goto(f"{server.url}/customer-service/{order.pk}/")
    expect(page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)
    return context, page


def test_customer_and_agent_chat_and_a_reload_shows_the_history(daphne_server, browser):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    factories.OrderLineFactory(order=order, product=factories.ProductFactory(name="Django Stories"))
    factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    server = daphne_server()

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


def test_the_page_reconnects_by_itself_and_shows_what_it_missed(daphne_server, browser):
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    models.ChatMessage.objects.create(order=order, user=customer, text="Hello?")
    server = daphne_server()
    context, page = open_chat(browser, server, "jane_doe@example.com", order)
    expect(page.locator(".msg .msg-text")).to_have_text(["Hello?"])

    server.stop()  # the server restarts: the page loses its socket
    expect(page.locator("#chat-status")).not_to_have_text("Connected", timeout=WAIT_MS)
    for n in range(3):  # said while the page was away
        models.ChatMessage.objects.create(order=order, user=agent, text=f"Sorry, we were away ({n})")
    restarted = servers.daphne(port=server.port)
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
