"""Pages in a real browser (headless Debian chromium) against a real worker."""

from main import factories

from ..browsing import browser_login, screenshot


def test_customer_sees_my_orders_in_a_browser(worker_server, browser):
    customer = factories.UserFactory(email="browser@site.com", first_name="Bea", last_name="Browser")
    order = factories.OrderFactory(user=customer)
    factories.OrderLineFactory(order=order, product=factories.ProductImageFactory(product__name="Seen Book").product)
    server = worker_server()

    context, page = browser_login(browser, server, "browser@site.com")
    page.click("text=My orders")
    page.wait_for_selector(".order")
    assert "1 x Seen Book" in page.inner_text(".orders")
    assert page.locator(f"a[href='/customer-service/{order.pk}/']").count() == 1
    screenshot(page, "my-orders")
    context.close()
