"""Who may see an order: its owner, or an employee (an active superuser, or
active staff in the Employees group). The chat page, the chat socket, the
tracker and the mobile API all ask here.

A refusal never says whether the order exists: a foreign, a missing and a
malformed id get the same answer, after the same queries."""

import functools

from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from .infra import access_changes
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


# --- When access changes ----------------------------------------------------------
# What decides the answers above can change while a socket or stream is open:
# every process's sockets and streams of that user (or that session, or that
# token) are told once the change is committed, and look again
# (main/infra/access_changes.py). Changes made with QuerySet.update() or raw
# SQL send no signal: those take effect at the next handshake.

ACCESS_FIELDS = {"is_active", "is_staff", "is_superuser", "password"}


def _announce_on_commit(*keys):
    transaction.on_commit(functools.partial(access_changes.announce, *keys))


@receiver(post_save, sender=User)
def _user_saved(sender, instance, created, update_fields=None, **kwargs):
    if not created and (update_fields is None or ACCESS_FIELDS & set(update_fields)):
        _announce_on_commit(access_changes.for_user(instance.pk))


@receiver(post_delete, sender=User)
def _user_deleted(sender, instance, **kwargs):
    _announce_on_commit(access_changes.for_user(instance.pk))


@receiver(m2m_changed, sender=User.groups.through)
def _groups_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if reverse and action == "pre_clear":  # a group emptied: who was in it
        instance._access_cleared = list(instance.user_set.values_list("pk", flat=True))
    if action not in ("post_remove", "post_clear"):
        return
    if not reverse:
        user_ids = [instance.pk]
    elif action == "post_clear":
        user_ids = getattr(instance, "_access_cleared", [])
    else:
        user_ids = pk_set or ()
    _announce_on_commit(*(access_changes.for_user(pk) for pk in user_ids))


@receiver(pre_delete, sender=Group)
def _group_deleted(sender, instance, **kwargs):
    _announce_on_commit(*(access_changes.for_user(pk) for pk in instance.user_set.values_list("pk", flat=True)))


@receiver(post_delete, sender=Token)
def _token_deleted(sender, instance, **kwargs):
    _announce_on_commit(access_changes.for_token(instance.key))


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        _announce_on_commit(access_changes.for_session(session.session_key))
