import pytest
from django.urls import reverse

from main import factories


@pytest.fixture
def admin_client_with_data(client, db):
    admin = factories.UserFactory(email="root@booktime.domain", is_staff=True, is_superuser=True)
    line = factories.OrderLineFactory(product=factories.ProductImageFactory().product)
    client.force_login(admin)
    return client, line


@pytest.mark.parametrize(
    "url_name, arg",
    [
        ("admin:main_user_changelist", None),
        ("admin:main_user_add", None),
        ("admin:auth_group_changelist", None),
        ("admin:main_product_changelist", None),
        ("admin:main_product_change", "product"),
        ("admin:main_order_changelist", None),
        ("admin:main_order_change", "order"),
    ],
)
def test_admin_pages_render(admin_client_with_data, url_name, arg):
    client, line = admin_client_with_data
    args = [getattr(line, arg).pk] if arg else []
    response = client.get(reverse(url_name, args=args))
    assert response.status_code == 200
    if arg == "product":
        assert b"product-thumbnails/" in response.content  # the inline shows the thumbnail
    if arg == "order":
        assert b'name="lines-TOTAL_FORMS" value="1"' in response.content  # the order's line, inline
