"""The site in English and Simplified Chinese (docs/translations.md): the
language chosen by Accept-Language or the switcher's cookie, the catalogs
complete and compiled, the JavaScript catalog served, dates and money in the
locale's format and the CURRENCY setting; in chromium, the chat page and the
agents' inbox with no English left in what a person reads."""

import gettext
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.utils import timezone, translation
from playwright.sync_api import expect

from harness.servers import ROOT
from main import factories, models
from main.conversations.store import store_now
from main.web.money import format_money

from ..browsing import browser_login, screenshot

WAIT_MS = 10_000
CATALOGS = ROOT / "main" / "locale" / "zh_Hans" / "LC_MESSAGES"
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}
# A run of two or more ASCII letters: an English word, unless it is one of
# the names below (the brand, people and products, emails, language names).
WORD = re.compile(r"[A-Za-z]{2,}")


@pytest.fixture(autouse=True)
def _default_language_after():
    # The test client's requests activate their language in this thread: the
    # tests after these see the default again.
    yield
    translation.deactivate()


def english_words(text, allowed):
    """The English words left in `text` once the `allowed` strings are taken out."""
    for name in sorted(allowed, key=len, reverse=True):
        text = text.replace(name, " ")
    return WORD.findall(text)


# --- Without a browser (first: the browser tests keep an event loop in this thread) ---


@pytest.mark.parametrize("domain", ["django", "djangojs"])
def test_the_chinese_catalogs_are_complete_and_compiled(domain):
    with open(CATALOGS / f"{domain}.po", "rb") as po:
        catalog = read_po(po)
    messages = [m for m in catalog if m.id]
    assert len(messages) > 30
    untranslated = [m.id for m in messages if not all(m.string if isinstance(m.string, tuple) else [m.string])]
    assert untranslated == []
    assert [m.id for m in messages if m.fuzzy] == []
    # The committed .mo says what the .po says (`make messages` was run after the last edit).
    with open(CATALOGS / f"{domain}.mo", "rb") as mo:
        compiled = gettext.GNUTranslations(mo)
    for m in messages:
        if isinstance(m.id, tuple):
            assert compiled.ngettext(m.id[0], m.id[1], 1) == m.string[0], m.id
        elif m.context:
            assert compiled.pgettext(m.context, m.id) == m.string, m.id
        else:
            assert compiled.gettext(m.id) == m.string, m.id


def test_the_browsers_language_chooses_and_english_is_the_default(client, db):
    english = client.get("/").content.decode()
    assert '<html lang="en-gb"' in english and "BookTime customer service" in english

    chinese = client.get("/", **ZH).content.decode()
    assert '<html lang="zh-hans"' in chinese
    assert "BookTime 客户服务" in chinese and "登录" in chinese
    assert "Questions about an order?" not in chinese
    # A Chinese browser that says zh-CN gets the same.
    assert '<html lang="zh-hans"' in client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()


def test_the_switcher_sets_the_language_for_the_pages_after_it(client, db):
    login = client.get("/login/").content.decode()
    assert 'action="/i18n/setlang/"' in login and 'name="language"' in login  # on the login page too
    assert '<option value="zh-hans" lang="zh-hans">简体中文</option>' in login

    response = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/login/"})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    page = client.get("/login/").content.decode()  # the cookie outweighs Accept-Language
    assert "<h1>登录</h1>" in page and '<option value="zh-hans" lang="zh-hans" selected>' in page

    client.post("/i18n/setlang/", {"language": "en-gb", "next": "/"})
    assert "<h1>Log in</h1>" in client.get("/login/", **ZH).content.decode()


def test_the_javascript_catalog_is_served_in_the_readers_language(client, db):
    chinese = client.get("/jsi18n/", **ZH)
    assert chinese.status_code == 200 and "javascript" in chinese["Content-Type"]
    body = chinese.content.decode()
    assert "django.gettext" in body and "\\u6b63\\u5728\\u8fde\\u63a5" in body  # 正在连接 (Connecting…)
    english = client.get("/jsi18n/").content.decode()
    assert "django.gettext" in english and "\\u6b63\\u5728\\u8fde\\u63a5" not in english
    # Every page loads it before its own scripts.
    assert client.get("/", **ZH).content.decode().index('src="/jsi18n/"') < client.get("/").content.decode().index(
        "</head>"
    )


def test_my_orders_in_the_currency_setting_and_the_locales_formats(client, db, settings):
    customer = factories.UserFactory()
    order = factories.OrderFactory(user=customer)
    factories.OrderLineFactory(order=order, product=factories.ProductFactory(name="Dune", price=Decimal("1234.50")))
    models.Order.objects.filter(pk=order.pk).update(date_added=timezone.now().replace(year=2026, month=3, day=7))
    client.force_login(customer)

    page = client.get("/my-orders/").content.decode()
    assert "£1,234.50" in page and "7 Mar 2026" in page and 'data-currency="GBP"' in page

    settings.CURRENCY = "EUR"
    page = client.get("/my-orders/").content.decode()
    assert "€1,234.50" in page and "£" not in page and 'data-currency="EUR"' in page
    page = client.get("/my-orders/", **ZH).content.decode()
    assert "€1,234.50" in page and "2026年3月7日" in page and "下单于" in page and "新订单" in page

    assert format_money(Decimal("1234.5"), "EUR", "de") == "1.234,50\xa0€"  # Babel's locale data


def test_api_errors_in_the_callers_language_with_the_same_codes(client, db):
    answer = client.post("/mobile-api/auth/", {"username": "nobody@example.com", "password": "wrong"}, **ZH).json()
    assert answer["code"] == "invalid_credentials" and answer["detail"] == "无法使用这些凭据登录。"
    answer = client.post("/mobile-api/auth/", {"username": "nobody@example.com", "password": "wrong"}).json()
    assert answer["code"] == "invalid_credentials" and answer["detail"] == "Unable to log in with these credentials."

    client.force_login(factories.EmployeeFactory())
    answer = client.get("/mobile-api/conversations/?limit=x", **ZH).json()
    assert answer["code"] == "invalid" and answer["detail"] == "输入无效。"
    assert answer["errors"] == {"limit": ["必须是正整数。"]}
    assert client.get("/mobile-api/no-such-thing/", **ZH).json()["code"] == "not_found"


# --- In chromium -------------------------------------------------------------


def a_customer_waiting_since_days_ago():
    """Jane, her order of a book, and her question stored three days ago; Adam, an agent."""
    jane = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=jane)
    factories.OrderLineFactory(order=order, product=factories.ProductFactory(name="Django Stories"))
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name="Adam", last_name="Ford")
    message = store_now(order.pk, jane.pk, "我的书什么时候到？")
    then = timezone.now() - timedelta(days=3)
    models.ChatMessage.objects.filter(pk=message.pk).update(created=then)
    return jane, order, agent, then


def visible_text(page):
    return page.evaluate("document.body.innerText")


def test_the_chat_page_in_chinese_by_accept_language(worker_server, browser):
    jane, order, agent, then = a_customer_waiting_since_days_ago()
    server = worker_server()

    context, page = browser_login(browser, server, jane.email)
    context.set_extra_http_headers({"Accept-Language": "zh-hans"})
    page.goto(f"{server.url}/customer-service/{order.pk}/")
    expect(page.locator("#chat-status")).to_have_text("已连接", timeout=WAIT_MS)
    expect(page.locator("#conv-status")).to_have_text(re.compile(r"^等待回复 · "))
    expect(page.locator("#chat-queue")).to_have_text(re.compile("目前没有客服人员在线"), timeout=WAIT_MS)
    assert page.evaluate("document.documentElement.lang") == "zh-hans"
    expect(page).to_have_title(f"订单 #{order.pk} 的客服对话 · BookTime")
    assert page.evaluate("gettext('Connecting…')") == "正在连接…"  # the JavaScript catalog

    # The message's date, in Chinese: "3月4日 14:05".
    when = page.locator(".msg .msg-time").first
    expect(when).to_have_text(re.compile(rf"^{then.month}月{then.day}日"))
    assert "年" in when.get_attribute("title")  # the full date in its tooltip: "2026年3月4日 14:05"
    assert page.locator(".msg .msg-who").inner_text() == "我"

    text = visible_text(page)
    for expected in ("我的订单", "退出登录", "已连接", "发送", "我的书什么时候到？"):
        assert expected in text
    assert english_words(text, {"BookTime", "Django Stories", "Jane Doe", "English"}) == []
    screenshot(page, "i18n-chat-zh-hans")

    # Typing a message that is too long is told in Chinese too (the socket's limits).
    page.fill("#chat-input", "好" * 2001)
    expect(page.locator("#chat-error")).to_have_text(re.compile("您的消息有 2001 个字符，上限为 2000 个。"))
    context.close()


def test_the_inbox_in_chinese_by_the_switcher(worker_server, browser):
    jane, order, agent, then = a_customer_waiting_since_days_ago()
    server = worker_server()

    context, page = browser_login(browser, server, agent.email)
    context.grant_permissions(["notifications"], origin=server.url)
    page.goto(f"{server.url}/customer-service/")
    expect(page.locator("h1")).to_have_text("Customer service")  # chromium asks for English
    page.select_option("#lang-select", "zh-hans")
    page.click(".lang-switch button[type=submit]")
    expect(page.locator("h1")).to_have_text("客服中心")
    assert page.url == f"{server.url}/customer-service/"  # back on the same page
    assert {c["name"]: c["value"] for c in context.cookies()}[settings.LANGUAGE_COOKIE_NAME] == "zh-hans"
    assert page.evaluate("document.documentElement.lang") == "zh-hans"

    row = page.locator(f"#inbox-list .conv[data-order-id='{order.pk}']")
    expect(row.locator(".conv-order")).to_have_text(f"订单 #{order.pk}", timeout=WAIT_MS)
    expect(page.locator("#inbox-connection")).to_have_text("实时", timeout=WAIT_MS)
    expect(row.locator(".conv-holder")).to_have_text("无人负责")
    expect(row.locator(".conv-unread")).to_have_text("1 条未读")
    expect(row.locator(".conv-state")).to_have_text(re.compile(r"^已等待 \d+:\d\d$"))
    expect(row.locator("button:visible")).to_have_text(["接手", "标记为已解决"])
    expect(row.locator(".conv-time")).to_have_text(re.compile(rf"^{then.month}月{then.day}日"))
    expect(page.locator("#tab-waiting")).to_have_text("等待中 1")
    expect(page.locator("#inbox-notify")).to_have_text("通知已开启")

    text = visible_text(page)
    allowed = {"BookTime", "Jane Doe", "jane_doe@example.com", "Adam Ford", "agent@booktime.domain", "English"}
    assert english_words(text, allowed) == []
    screenshot(page, "i18n-inbox-zh-hans")

    # Claimed from the page: the answer and the row in Chinese.
    row.locator("button.claim").click()
    expect(row.locator(".conv-holder")).to_have_text("由您负责", timeout=WAIT_MS)

    # And back to English with the same switcher.
    page.select_option("#lang-select", "en-gb")
    page.click(".lang-switch button[type=submit]")
    expect(page.locator("h1")).to_have_text("Customer service")
    expect(row.locator(".conv-holder")).to_have_text("Held by you", timeout=WAIT_MS)
    context.close()


def test_the_pages_scripts_format_money_in_the_currency_setting(worker_server, browser):
    customer = factories.UserFactory(email="eve@example.com")
    factories.OrderLineFactory(order=factories.OrderFactory(user=customer), product__price=Decimal("12.50"))
    server = worker_server({"CURRENCY": "EUR"})
    context, page = browser_login(browser, server, customer.email)
    context.set_extra_http_headers({"Accept-Language": "zh-hans"})
    page.goto(f"{server.url}/my-orders/")
    expect(page.locator(".order .meta")).to_contain_text("€12.50")
    assert page.evaluate("BookTimeLocale.currency") == "EUR"
    assert page.evaluate("BookTimeLocale.money(1234.5)") == "€1,234.50"
    assert "年" in page.locator(".order .meta").inner_text()
    context.close()
