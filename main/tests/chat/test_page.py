"""The chat page's HTTP side: who gets it, and what it loads."""

import pytest

from main import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def order():
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    return factories.OrderFactory(user=customer)


def test_customer_gets_the_page_with_a_link_to_their_orders(client, order):
    client.force_login(order.user)
    response = client.get(f"/customer-service/{order.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/static/main/chat.css"' in html and 'src="/static/main/chat.js"' in html
    assert f'data-order-id="{order.pk}"' in html
    assert 'class="back" href="/my-orders/"' in html


def test_employee_gets_the_page_with_a_link_to_the_dashboard(client, order):
    client.force_login(factories.EmployeeFactory())
    response = client.get(f"/customer-service/{order.pk}/")
    assert response.status_code == 200
    assert 'class="back" href="/customer-service/"' in response.content.decode()


def test_others_get_no_page(client, order):
    assert client.get(f"/customer-service/{order.pk}/").status_code == 302  # to the login page
    client.force_login(factories.UserFactory())
    assert client.get(f"/customer-service/{order.pk}/").status_code == 404
    assert client.get(f"/customer-service/{order.pk + 1000}/").status_code == 404
    assert client.get("/customer-service/abc/").status_code == 404


def test_static_files_are_served(client):
    for name in ("chat.js", "chat.css"):
        response = client.get(f"/static/main/{name}")
        assert response.status_code == 200
