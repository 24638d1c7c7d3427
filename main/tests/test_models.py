from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management import call_command

from main import factories, models


@pytest.fixture
def order(db):
    return factories.OrderFactory()


def test_summary_and_total_price_with_mixed_products(order):
    a = factories.ProductFactory(name="The book of A", price=Decimal("12.00"))
    b = factories.ProductFactory(name="The B Book", price=Decimal("14.50"))
    factories.OrderLineFactory.create_batch(2, order=order, product=a)
    factories.OrderLineFactory(order=order, product=b)

    assert order.summary == "2 x The book of A, 1 x The B Book"
    assert order.total_price == Decimal("38.50")


def test_empty_order(order):
    assert order.summary == ""
    assert order.total_price == Decimal("0")
    assert order.mobile_thumb_url is None


def test_mobile_thumb_url_is_the_first_products_thumbnail(order):
    first = factories.ProductImageFactory().product
    second = factories.ProductImageFactory().product
    factories.OrderLineFactory(order=order, product=first)
    factories.OrderLineFactory(order=order, product=second)

    image = first.productimage_set.get()
    assert image.thumbnail.name.startswith("product-thumbnails/")
    assert image.thumbnail.width <= 300 and image.thumbnail.height <= 300
    assert order.mobile_thumb_url == image.thumbnail.url


def test_properties_use_prefetched_lines(order, django_assert_num_queries):
    factories.OrderLineFactory.create_batch(3, order=order)
    fetched = models.Order.objects.with_lines().get(pk=order.pk)
    with django_assert_num_queries(0):
        assert fetched.summary.count(" x ") == 3
        assert fetched.total_price == Decimal("30.00")
        assert fetched.mobile_thumb_url is None


def test_summaries_match_the_properties_in_one_query(order, django_assert_num_queries):
    pictured = factories.ProductImageFactory().product
    factories.ProductImageFactory(product=pictured)  # a second image, not the one shown
    unpictured = factories.ProductFactory(name="The C Book", price=Decimal("7.25"))
    factories.OrderLineFactory(order=order, product=pictured)
    factories.OrderLineFactory.create_batch(2, order=order, product=unpictured)
    led_by_unpictured = factories.OrderFactory(user=order.user)
    factories.OrderLineFactory(order=led_by_unpictured, product=unpictured)
    factories.OrderLineFactory(order=led_by_unpictured, product=pictured)
    empty = factories.OrderFactory(user=order.user)
    factories.OrderFactory()  # someone else's

    ordered = models.Order.objects.filter(user=order.user).order_by("-pk")
    with django_assert_num_queries(1):
        summaries = ordered.summaries()

    assert [s["id"] for s in summaries] == [empty.pk, led_by_unpictured.pk, order.pk]
    for summary, instance in zip(summaries, ordered.with_lines(), strict=True):
        url = instance.mobile_thumb_url
        assert summary == {
            "id": instance.pk,
            "summary": instance.summary,
            "total_price": instance.total_price,
            "thumbnail": url and url.removeprefix(settings.MEDIA_URL),
        }
    assert summaries[2]["summary"] == f"1 x {pictured.name}, 2 x The C Book"
    assert summaries[2]["thumbnail"] == pictured.productimage_set.order_by("pk")[0].thumbnail.name
    assert summaries[1]["thumbnail"] is None
    assert summaries[0] == {"id": empty.pk, "summary": "", "total_price": Decimal("0"), "thumbnail": None}


@pytest.mark.parametrize(
    "flags, in_group, expected",
    [
        ({"is_staff": True}, True, True),
        ({"is_staff": True}, False, False),  # staff, but not an employee
        ({"is_staff": False}, True, False),  # in the group, but not staff
        ({"is_staff": True, "is_active": False}, True, False),
        ({"is_superuser": True}, False, True),
        ({"is_superuser": True, "is_active": False}, False, False),
        ({}, False, False),
    ],
)
def test_is_employee_rules(db, flags, in_group, expected):
    user = factories.UserFactory(**flags)
    if in_group:
        user.groups.add(Group.objects.get(name="Employees"))
    assert user.is_employee is expected
    superuser_and_active = flags.get("is_superuser", False) and flags.get("is_active", True)
    assert user.is_dispatcher is superuser_and_active  # not in the Dispatchers group


def test_dispatcher_is_staff_in_dispatchers_group(db):
    user = factories.UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="Dispatchers"))
    assert user.is_dispatcher and not user.is_employee


def test_groups_exist_after_migrate(db):
    assert set(Group.objects.values_list("name", flat=True)) >= {"Employees", "Dispatchers"}


def test_display_name_is_full_name_or_email(db):
    assert factories.UserFactory(email="a@b.com", first_name="Ann", last_name="Lee").display_name == "Ann Lee"
    assert factories.UserFactory(email="c_d@e.com").display_name == "c_d@e.com"


def test_every_new_user_gets_a_token(db):
    user = factories.UserFactory()
    assert user.auth_token.key


def test_seed_demo_is_idempotent(db, capsys):
    call_command("seed_demo")
    counts = [
        m.objects.count() for m in (models.User, models.Product, models.ProductImage, models.Order, models.OrderLine)
    ]
    call_command("seed_demo")
    again = [
        m.objects.count() for m in (models.User, models.Product, models.ProductImage, models.Order, models.OrderLine)
    ]
    assert counts == again
    assert all(counts)

    out = capsys.readouterr().out
    assert "agent@booktime.domain" in out and "mary_jones@example.com" in out
    assert "/customer-service/" in out
    agent = models.User.objects.get(email="agent@booktime.domain")
    assert agent.is_employee and agent.check_password("booktime-demo")
    assert all(image.thumbnail for image in models.ProductImage.objects.all())
    assert models.User.objects.filter(email__contains="_").exists()
