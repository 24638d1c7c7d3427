"""main.access: who may see an order, asked the same way by every route."""

import pytest
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from main import access, factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast():
    customer = factories.UserFactory()
    order = factories.OrderFactory(user=customer)
    other = factories.UserFactory()
    agent = factories.EmployeeFactory()
    inactive = factories.UserFactory(is_active=False)
    factories.OrderFactory(user=inactive)
    return customer, order, other, agent, inactive


def test_the_owner_and_employees_see_an_order_and_no_one_else(cast):
    customer, order, other, agent, _ = cast
    assert access.visible_order(customer, order.pk) == order
    assert access.visible_order(agent, order.pk) == order
    assert access.visible_order(other, order.pk) is None
    assert access.visible_order(AnonymousUser(), order.pk) is None
    assert access.visible_order(None, order.pk) is None


@pytest.mark.parametrize("order_id", [0, -1, 2**63, "12a", "", None, True, "1" * 40])
def test_malformed_ids_are_refused_like_missing_ones(cast, order_id):
    _, _, _, agent, _ = cast
    assert access.visible_order(agent, order_id) is None


def test_the_tracker_s_sql_answers_as_the_orm_does(cast):
    """The token path (one SQL statement) and the user path (the ORM) give
    the same answer for every case: only the active owner tracks an order."""
    customer, order, other, agent, inactive = cast
    inactive_order = inactive.order_set.get()
    cases = [
        (customer, order.pk),
        (other, order.pk),
        (agent, order.pk),  # employees see the chat, but tracking is the owner's
        (inactive, inactive_order.pk),
        (customer, order.pk + 1000),
        (customer, 0),
    ]
    for user, order_id in cases:
        by_user = access.tracking_owner(user if user.is_active else AnonymousUser(), None, order_id)
        by_token = access.tracking_owner(None, Token.objects.get(user=user).key, order_id)
        assert by_user == by_token, (user, order_id)
    assert access.tracking_owner(None, Token.objects.get(user=customer).key, order.pk) == customer.pk
    assert access.tracking_owner(None, "not a token", order.pk) is None
    assert access.tracking_owner(None, None, order.pk) is None


def test_a_token_stays_live_while_its_user_is_active_and_it_exists(cast):
    customer, *_ = cast
    key = Token.objects.get(user=customer).key
    assert access.live_token(customer, key)
    customer.is_active = False
    customer.save()
    assert not access.live_token(customer, key)
    customer.is_active = True
    customer.save()
    Token.objects.filter(key=key).delete()
    assert not access.live_token(customer, key)
