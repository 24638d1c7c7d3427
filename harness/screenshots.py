"""`python -m harness.screenshots` (`make screenshots`): docs/screenshots/,
every page at phone and desktop size, in English and Simplified Chinese.

It makes the demo data (seed_demo) in a throwaway SQLite database, starts a
production worker on it (in-process channel layer, no Redis), and drives
Debian's chromium with Playwright: the demo customer and the demo agent log
in, chat about an order, and each page is photographed. The language is
asked for as a browser does (Accept-Language, the browser's locale) and as
the language switcher leaves it (the `django_language` cookie).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import servers

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium: never a downloaded browser
OUT = servers.ROOT / "docs" / "screenshots"
PASSWORD = "booktime-demo"  # main/management/commands/seed_demo.py
CUSTOMER = "john@bestemails.com"
WAITING_CUSTOMER = "mary_jones@example.com"  # waits in the agent's inbox
AGENT = "agent@booktime.domain"
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}
# language code -> (Accept-Language, the browser's locale)
LANGUAGES = {"en": ("en-GB,en;q=0.9", "en-GB"), "zh-hans": ("zh-Hans-CN,zh-Hans;q=0.9,zh;q=0.8", "zh-CN")}
WAIT_MS = 15_000
# What the demo people say: the customer's question, the agent's answer, and
# the question of a customer still waiting.
LINES = {
    "en": (
        "Hello! My order hasn't arrived yet. Can you check where it is?",
        "It left our warehouse yesterday and arrives tomorrow.",
        "Can I still change the delivery address?",
    ),
    "zh-hans": (
        "你好！我的订单还没有到。能帮我查一下吗？",
        "您的包裹昨天已从仓库发出，明天送达。",
        "我还能修改收货地址吗？",
    ),
}


def demo_server(folder):
    """A worker on fresh demo data in `folder` (SQLite, media, no Redis)."""
    env = dict(os.environ)
    for name in ("REDIS_URL", "CHANNEL_LAYER_URLS", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    env.update(
        DEBUG="1",
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        MEDIA_ROOT=str(folder / "media"),
        SERVE_MEDIA="1",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(servers.ROOT / "manage.py")]
    for command in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
        done = subprocess.run(manage + command, cwd=servers.ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"screenshots: {' '.join(command)} failed:\n{done.stdout}{done.stderr}")
    return servers.serve(env, log_path=folder / "server.log", quiet=True)


def login(browser, server, email, language, size):
    """A browser context in `language` at `size`, logged in as `email` (None: nobody)."""
    accept, locale = LANGUAGES[language]
    width, height = SIZES[size]
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        locale=locale,
        extra_http_headers={"Accept-Language": accept},
        reduced_motion="reduce",
    )
    context.add_cookies([{"name": "django_language", "value": language, "url": server.url}])
    page = context.new_page()
    if email:
        page.goto(f"{server.url}/login/")
        page.fill("#id_username", email)
        page.fill("#id_password", PASSWORD)
        page.click("form[action='/login/'] button[type=submit]")
        page.wait_for_url(f"{server.url}/")
    return context, page


def connected(page):
    page.wait_for_selector("#chat-status[data-state='online']", timeout=WAIT_MS)


def shoot(page, out, name, size):
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring, no caret
    path = out / f"{name}-{SIZES[size][0]}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    print(path)


def ask(browser, server, email, language, order_index, text):
    """`email` writes `text` in the chat of their order at `order_index` on their orders page; its chat's path."""
    context, page = login(browser, server, email, language, "desktop")
    page.goto(f"{server.url}/my-orders/")
    chat_url = page.locator(".orders a[href^='/customer-service/']").nth(order_index).get_attribute("href")
    page.goto(server.url + chat_url)
    connected(page)
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    page.wait_for_selector(".msg.mine", timeout=WAIT_MS)
    context.close()
    return chat_url


def pages(browser, server, out, language, size, order_index):
    """Every page in `language` at `size`, into `out`; the chat is about
    the customer's order at `order_index` on their orders page."""
    url = server.url
    nobody, page = login(browser, server, None, language, size)
    page.goto(f"{url}/login/")
    shoot(page, out, "login", size)
    page.goto(f"{url}/admin/login/")
    shoot(page, out, "admin-login", size)
    page.goto(f"{url}/mobile-api/docs/")
    page.wait_for_selector(".opblock, redoc-wrap, .api-content", timeout=WAIT_MS)
    shoot(page, out, "api-docs", size)
    nobody.close()

    customer, page = login(browser, server, CUSTOMER, language, size)
    shoot(page, out, "home", size)
    page.goto(f"{url}/my-orders/")
    shoot(page, out, "my-orders", size)
    chat_url = page.locator(".orders a[href^='/customer-service/']").nth(order_index).get_attribute("href")
    order_id = chat_url.strip("/").split("/")[-1]
    agent, agent_page = login(browser, server, AGENT, language, size)
    page.goto(url + chat_url)
    connected(page)
    answer = LINES[language][1]

    agent_page.goto(f"{url}/customer-service/")
    agent_page.wait_for_selector(f"#inbox-list .conv[data-order-id='{order_id}']", state="attached", timeout=WAIT_MS)
    agent_page.wait_for_selector("#inbox-list .conv[data-status='waiting']", timeout=WAIT_MS)
    shoot(agent_page, out, "inbox", size)
    agent_page.goto(url + chat_url)
    connected(agent_page)
    if agent_page.locator(".msg").count() < 2:
        agent_page.fill("#chat-input", answer)
        agent_page.press("#chat-input", "Enter")
        agent_page.wait_for_selector(".msg.mine", timeout=WAIT_MS)
    page.wait_for_selector(".msg:not(.mine)", timeout=WAIT_MS)
    agent_page.wait_for_selector(".msg.mine.seen", timeout=WAIT_MS)  # the customer has read it
    shoot(page, out, "chat", size)
    shoot(agent_page, out, "chat-agent", size)
    agent.close()
    customer.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="where the PNGs go (default docs/screenshots)")
    parser.add_argument("--language", action="append", choices=sorted(LANGUAGES), help="only these (default: all)")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="booktime-screenshots-") as folder:
        server = demo_server(Path(folder))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                # Each language chats about an order of its own.
                for n, language in enumerate(args.language or list(LANGUAGES)):
                    out = args.out / language
                    out.mkdir(parents=True, exist_ok=True)
                    question, _, waiting = LINES[language]
                    ask(browser, server, CUSTOMER, language, n, question)
                    ask(browser, server, WAITING_CUSTOMER, language, 0, waiting)
                    for size in SIZES:
                        pages(browser, server, out, language, size, order_index=n)
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
