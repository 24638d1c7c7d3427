import re

import pytest
from django.urls import reverse

from main import factories


@pytest.fixture
def customer(db):
    return factories.UserFactory(email="reader@site.com", first_name="Rita", last_name="Reader")


def test_login_and_logout(client, customer):
    response = client.post(reverse("login"), {"username": "reader@site.com", "password": "abcabcabc"})
    assert response.status_code == 302
    assert client.get(reverse("home")).context["user"] == customer

    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).context["user"].is_anonymous


def test_login_with_a_wrong_password_says_so(client, customer):
    response = client.post(reverse("login"), {"username": "reader@site.com", "password": "nope"})
    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_my_orders_needs_login(client, db):
    response = client.get(reverse("my_orders"))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_my_orders_shows_only_the_users_orders(client, customer):
    mine = factories.OrderFactory.create_batch(2, user=customer)
    factories.OrderLineFactory(order=mine[0], product=factories.ProductFactory(name="<b>Bold</b> title"))
    theirs = factories.OrderFactory()
    client.force_login(customer)

    response = client.get(reverse("my_orders"))
    html = response.content.decode()
    assert [o.pk for o in response.context["orders"]] == [mine[1].pk, mine[0].pk]
    for order in mine:
        assert reverse("cs_chat", args=[order.pk]) in html
    assert reverse("cs_chat", args=[theirs.pk]) not in html
    assert "&lt;b&gt;Bold&lt;/b&gt; title" in html  # user data is text, never markup


def test_home_says_where_to_go(client, customer):
    assert reverse("login") in client.get(reverse("home")).content.decode()
    client.force_login(customer)
    assert reverse("my_orders") in client.get(reverse("home")).content.decode()


def test_api_docs_page_serves_swagger_ui_itself(client, db):
    """The OpenAPI docs page works offline: Swagger UI comes from our own static files."""
    page = client.get(reverse("mobile_docs")).content.decode()
    scripts = re.findall(r'src="([^"]+swagger-ui-bundle\.js)"', page)
    assert scripts and scripts[0].startswith("/static/drf_spectacular_sidecar/")
    asset = client.get(scripts[0])
    assert asset.status_code == 200 and b"SwaggerUIBundle" in b"".join(asset.streaming_content)
