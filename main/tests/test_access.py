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


# --- Admission to a chat: the handshake's one statement against the ORM ------------


def admit_by_sql(order_id, user=None, token=None):
    """access.admission_statement run as the chat's handshake runs it (the
    event loop's pool), for one; its answer as `access.admit` gives it."""
    from asgiref.sync import async_to_sync

    from main.infra import db, per_loop

    async def run():
        try:
            [rows] = await db.reads().run([access.admission_statement([(order_id, user, token)])])
            return access.admissions(rows, 1)[0]
        finally:
            await per_loop.close_all()

    return async_to_sync(run)()


def admit_by_orm(order_id, user=None, token=None):
    try:
        return access.admit(order_id, user, token)
    except access.Refused as refused:
        return refused


def same(answer):
    return answer.reason if isinstance(answer, access.Refused) else answer


@pytest.mark.django_db(transaction=True)
def test_admission_s_sql_answers_as_the_orm_does(cast):
    """Every kind of user, by token and by session user, to their own, a
    foreign and a missing order: the same Admission or the same refusal,
    and an employee let in becomes the order's last_spoken_to either way."""
    customer, order, other, agent, inactive = cast
    superuser = factories.UserFactory(is_staff=True, is_superuser=True)
    staff_only = factories.UserFactory(is_staff=True)  # staff, but not in Employees
    former = factories.EmployeeFactory(is_active=False)
    people = [customer, other, agent, inactive, superuser, staff_only, former]
    orders = [order.pk, inactive.order_set.get().pk, order.pk + 1000]
    answers = {}
    for user in people:
        key = Token.objects.get(user=user).key
        for order_id in orders:
            for how in ({"token": key}, {"user": user}):
                models_order = order_id == order.pk
                if models_order:
                    type(order).objects.filter(pk=order.pk).update(last_spoken_to=None)
                by_orm = admit_by_orm(order_id, **how)
                spoken_orm = models_order and type(order).objects.get(pk=order.pk).last_spoken_to_id
                if models_order:
                    type(order).objects.filter(pk=order.pk).update(last_spoken_to=None)
                by_sql = admit_by_sql(order_id, **how)
                spoken_sql = models_order and type(order).objects.get(pk=order.pk).last_spoken_to_id
                assert same(by_sql) == same(by_orm), (user.email, order_id, how)
                assert spoken_sql == spoken_orm, (user.email, order_id, how)
                answers[user, order_id, "token" in how] = same(by_sql)
    # And what the rules say, so that both cannot be wrong together.
    assert answers[customer, order.pk, True] == access.Admission(
        customer.pk, customer.email, customer.display_name, False, customer.pk
    )
    assert answers[agent, order.pk, True].employee and answers[superuser, order.pk, False].employee
    assert answers[other, order.pk, True] == "forbidden"
    assert answers[staff_only, order.pk, True] == "forbidden"
    assert answers[customer, order.pk + 1000, True] == "forbidden"
    assert answers[inactive, orders[1], True] == "unauthenticated"
    assert answers[former, order.pk, False] == "unauthenticated"
    assert same(admit_by_sql(order.pk, token="0" * 40)) == same(admit_by_orm(order.pk, token="0" * 40))
    assert same(admit_by_sql(order.pk, token="0" * 40)) == "unauthenticated"


@pytest.mark.django_db(transaction=True)
def test_a_revoked_token_or_a_deactivated_user_is_not_admitted(cast):
    customer, order, *_ = cast
    key = Token.objects.get(user=customer).key
    assert isinstance(admit_by_sql(order.pk, token=key), access.Admission)
    customer.is_active = False
    customer.save()
    assert same(admit_by_sql(order.pk, token=key)) == "unauthenticated"
    customer.is_active = True
    customer.save()
    Token.objects.filter(key=key).delete()
    assert same(admit_by_sql(order.pk, token=key)) == "unauthenticated"
