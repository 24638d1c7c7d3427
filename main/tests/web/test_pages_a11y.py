"""Every page at phone and desktop size in headless Debian chromium against
a real worker: no sideways scrolling (down to 320 px), touch targets of
44 px, axe-core (run inside the page) finding nothing serious or critical,
and the chat and the inbox used with the keyboard alone."""

import json
import re
import urllib.request
import uuid

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token

from main import factories, models
from main.conversations.store import store_now

from ..browsing import browser_login, screenshot

WAIT_MS = 10_000
SIZES = [(390, 844), (1280, 800)]
AXE = Axe()


@pytest.fixture
def env():
    # Presence of this test's own: an earlier test's heartbeats never show here.
    return {"PRESENCE_KEY_PREFIX": f"test:presence:{uuid.uuid4().hex}:"}


@pytest.fixture
def shop(db):
    """Jane, an order of hers with a book that has a cover and one message, Adam the agent."""
    jane = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=jane)
    book = factories.ProductImageFactory(product__name="Django in Practice").product
    factories.OrderLineFactory(order=order, product=book)
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    store_now(order.pk, jane.pk, "Hello, where is my book?")
    return jane, order, agent


def ready_chat(page):
    expect(page.locator("#chat-status")).to_have_attribute("data-state", "online", timeout=WAIT_MS)
    expect(page.locator(".msg").first).to_be_visible(timeout=WAIT_MS)


def ready_inbox(page):
    expect(page.locator("#inbox-connection")).to_have_class(re.compile(r"\blive\b"), timeout=WAIT_MS)
    expect(page.locator("#inbox-list .conv").first).to_be_attached(timeout=WAIT_MS)


def ready_docs(page):
    expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT_MS)


# name -> (who logs in: None, "customer" or "agent"; the path; what to wait for once loaded)
PAGES = {
    "home": ("customer", "/", None),
    "login": (None, "/login/", None),
    "admin-login": (None, "/admin/login/", None),
    "my-orders": ("customer", "/my-orders/", None),
    "chat": ("customer", "/customer-service/{order}/", ready_chat),
    "chat-agent": ("agent", "/customer-service/{order}/", ready_chat),
    "inbox": ("agent", "/customer-service/", ready_inbox),
    "api-docs": (None, "/mobile-api/docs/", ready_docs),
}
OUR_PAGES = {"home", "login", "my-orders", "chat", "chat-agent", "inbox"}  # not Django's admin, not Swagger UI


def open_page(browser, server, who, path):
    if who is None:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
    else:
        context, page = browser_login(browser, server, who)
    page.goto(server.url + path)
    return context, page


def serious_violations(page):
    results = AXE.run(page).response
    return [v for v in results["violations"] if v["impact"] in ("serious", "critical")]


def describe(violations):
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:8]}" for v in violations
    )


def scroll_width(page):
    return page.evaluate("document.documentElement.scrollWidth")


def small_targets(page):
    """Visible buttons, the top bar's links and the form fields less than 44 px tall."""
    return page.evaluate(
        """() => Array.from(document.querySelectorAll(
              ".topbar a, .topbar button, .topbar select, main button, main .button, main input, main select"))
            .filter(el => el.offsetParent !== null && el.type !== "hidden")
            .map(el => [el.id || el.className || el.tagName, el.getBoundingClientRect().height])
            .filter(([name, height]) => height < 44)"""
    )


@pytest.mark.parametrize("name", PAGES)
def test_the_page_fits_phones_and_desktops_and_axe_finds_nothing_serious(name, worker_server, browser, shop, env):
    jane, order, agent = shop
    who, path, ready = PAGES[name]
    email = {"customer": jane.email, "agent": agent.email, None: None}[who]
    server = worker_server(env)
    context, page = open_page(browser, server, email, path.format(order=order.pk))
    try:
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            if ready:
                ready(page)
            page.wait_for_load_state("networkidle")
            assert scroll_width(page) == width, f"{name} scrolls sideways at {width} px"
            violations = serious_violations(page)
            assert not violations, f"{name} at {width}x{height}:\n{describe(violations)}"
            if name in OUR_PAGES and width < 600:
                assert not small_targets(page), f"{name}: under 44 px tall at {width} px: {small_targets(page)}"
            screenshot(page, f"a11y-{name}-{width}")
        page.set_viewport_size({"width": 320, "height": 640})
        assert scroll_width(page) <= 320, f"{name} scrolls sideways at 320 px"
    finally:
        context.close()


def focused(page):
    """The focused element: its id or class, and whether its focus ring shows."""
    return page.evaluate(
        """() => {
          const el = document.activeElement;
          const style = getComputedStyle(el);
          return { id: el.id, cls: el.className, tag: el.tagName,
                   ring: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2 };
        }"""
    )


def tab_to(page, element_id, most=25):
    """Tab until the element with `element_id` has focus; every stop on the
    way shows a focus ring. Returns the stops."""
    stops = []
    for _ in range(most):
        page.keyboard.press("Tab")
        now = focused(page)
        stops.append(now["id"] or now["cls"] or now["tag"])
        assert now["ring"], f"no visible focus ring on {stops[-1]} (after {stops[:-1]})"
        if now["id"] == element_id:
            return stops
    raise AssertionError(f"#{element_id} not reached with Tab: {stops}")


def from_the_top(page):
    """Focus back at the start of the page, as if it had just opened: the next Tab is the skip link."""
    page.evaluate(
        """() => {
          document.body.tabIndex = -1;  // the document itself: where a page starts before any Tab
          document.body.focus();
          document.body.removeAttribute("tabindex");
          window.scrollTo(0, 0);
        }"""
    )
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    expect(page.locator(".skip-link")).to_be_in_viewport()  # shown once it has focus


@pytest.mark.parametrize("width, height", SIZES)
def test_a_customer_sends_a_message_with_the_keyboard_alone(width, height, worker_server, browser, shop, env):
    jane, order, agent = shop
    server = worker_server(env)
    agent_context, agent_page = open_page(browser, server, agent.email, f"/customer-service/{order.pk}/")
    ready_chat(agent_page)
    context, page = open_page(browser, server, jane.email, f"/customer-service/{order.pk}/")
    try:
        page.set_viewport_size({"width": width, "height": height})
        ready_chat(page)
        from_the_top(page)
        page.keyboard.press("Enter")  # the skip link: on to the page's content
        expect(page.locator("main")).to_be_focused()
        stops = tab_to(page, "chat-input")
        assert "chat-log" in stops  # the log scrolls by keyboard too
        text = f"Sent with the keyboard at {width} px"
        page.keyboard.type(text)
        page.keyboard.press("Enter")
        expect(page.locator(".msg.mine .msg-text").last).to_have_text(text, timeout=WAIT_MS)
        expect(page.locator("#chat-input")).to_have_value("")
        expect(page.locator("#chat-input")).to_be_focused()
        # The input stays in sight above the fold (and so above an on-screen keyboard's resize).
        box = page.locator("#chat-input").bounding_box()
        assert box["y"] + box["height"] <= height

        # The agent sees it, and a screen reader is told that message alone.
        expect(agent_page.locator(".msg .msg-text").last).to_have_text(text, timeout=WAIT_MS)
        expect(agent_page.locator("#chat-announce")).to_have_text(f"Jane Doe: {text}")
        expect(agent_page.locator("#chat-log")).to_have_attribute("aria-live", "off")
        assert models.ChatMessage.objects.filter(order=order, text=text).count() == 1
    finally:
        context.close()
        agent_context.close()


def test_the_agent_works_the_inbox_with_the_keyboard_alone(worker_server, browser, shop, env):
    jane, order, agent = shop
    server = worker_server(env)
    context, page = open_page(browser, server, agent.email, "/customer-service/")
    try:
        page.set_viewport_size({"width": 390, "height": 844})
        ready_inbox(page)
        row = page.locator(f"#inbox-list .conv[data-order-id='{order.pk}']")
        expect(row).to_be_visible()
        from_the_top(page)
        page.keyboard.press("Enter")
        tab_to(page, "inbox-notify")
        tab_to(page, "tab-waiting")  # the selected tab; the arrow keys move between tabs
        page.keyboard.press("ArrowRight")
        expect(page.locator("#tab-mine")).to_be_focused()
        expect(page.locator("#tab-mine")).to_have_attribute("aria-selected", "true")
        page.keyboard.press("ArrowLeft")
        expect(page.locator("#tab-waiting")).to_have_attribute("aria-selected", "true")
        for _ in range(10):  # on through the row: its link, then its Claim button
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.matches('button.claim')"):
                break
        else:
            raise AssertionError("the row's Claim button is not reached with Tab")
        page.keyboard.press("Enter")
        expect(row.locator(".conv-holder")).to_have_text(re.compile("you"), timeout=WAIT_MS)
        assert models.Conversation.objects.get(order=order).assigned_to == agent

        # Jane writes again, from her app: the agent's screen reader is told that message, not the list.
        request = urllib.request.Request(
            f"{server.url}/mobile-api/conversations/{order.pk}/messages/",
            data=json.dumps({"message": "Any news?"}).encode(),
            method="POST",
            headers={"Authorization": f"Token {Token.objects.get(user=jane).key}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status in (200, 201)
        expect(page.locator("#inbox-announce")).to_have_text(f"Jane Doe (#{order.pk}): Any news?", timeout=WAIT_MS)
    finally:
        context.close()
