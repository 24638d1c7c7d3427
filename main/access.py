"""Who may see an order: its owner, or an employee (an active superuser, or
active staff in the Employees group). The chat page, the chat socket, the
tracker and the mobile API all ask here.

A refusal never says whether the order exists: a foreign, a missing and a
malformed id get the same answer, after the same queries."""

from django.db import connection
from rest_framework.authtoken.models import Token

from .infra.auth import valid_token_shape
from .infra.ids import parse_id
from .models import Order, User


def is_employee(user):
    return bool(user is not None and user.is_authenticated and user.is_employee)


def visible_order(user, order_id, employee=None):
    """The order `user` may see: their own or, for an employee, any; None
    otherwise. `employee`: the caller's answer for the user, when it has one."""
    order_id = parse_id(order_id)
    if user is None or not user.is_authenticated or order_id is None:
        return None
    if employee is None:
        employee = user.is_employee
    order = Order.objects.filter(pk=order_id).first()
    if order is None or not (order.user_id == user.pk or employee):
        return None
    return order


def own_orders(user):
    """The orders a customer sees as theirs (my orders, on the site and the app)."""
    return Order.objects.filter(user=user)


def live_token(user, key):
    """Whether `key` is still `user`'s token, and `user` still active."""
    return Token.objects.filter(key=key, user_id=user.pk, user__is_active=True).exists()


# The token's active user owns the order, in one query. Written in SQL
# because building the ORM's query costs more than running it, on the
# tracker's every request; main/tests/test_access.py holds it to the
# same answers as the ORM path.
_ORDER_OWNER_BY_TOKEN = (
    f"SELECT o.user_id FROM {Order._meta.db_table} o"
    f" JOIN {User._meta.db_table} u ON u.id = o.user_id"
    f" JOIN {Token._meta.db_table} t ON t.user_id = u.id"
    " WHERE o.id = %s AND t.key = %s AND u.is_active"
)


def tracking_owner(user, token, order_id):
    """The id of the order's owner if the request may track it, else None:
    only the owner may (not employees). `user` if the middleware resolved
    one, else the user of `token`, checked in the same query as the order."""
    order_id = parse_id(order_id)
    if order_id is None:
        return None
    if user is not None:
        if not user.is_authenticated:
            return None
        return own_orders(user).filter(pk=order_id).values_list("user_id", flat=True).first()
    if token is None or not valid_token_shape(token):
        return None
    with connection.cursor() as cursor:
        cursor.execute(_ORDER_OWNER_BY_TOKEN, [order_id, token])
        row = cursor.fetchone()
    return row[0] if row else None
