"""Pages in a real browser: Debian's chromium, driven by Playwright."""

from harness import servers

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium: never a downloaded browser
ARTIFACTS = servers.ROOT / "artifacts"


def browser_login(browser, server, email, password="abcabcabc"):
    """A new browser context logged in through the real login page."""
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.goto(f"{server.url}/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", password)
    page.click("form[action='/login/'] button[type=submit]")  # not the language switcher's
    page.wait_for_url(f"{server.url}/")
    return context, page


def screenshot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
