"""Who may see an order: its owner, or an employee (an active superuser, or
active staff in the Employees group). The chat page, the chat socket, the
tracker and the mobile API all ask here.

A refusal never says whether the order exists: a foreign, a missing and a
malformed id get the same answer, after the same queries."""

import functools
from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_out
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_delete
from django.dispatch import receiver
from rest_framework.authtoken.models import Token

from .infra import access_changes
from .infra.auth import valid_token_shape
from .infra.ids import parse_id
from .models import EMPLOYEES_GROUP, Order, User, display_name


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


# --- Admission to an order's chat -------------------------------------------------
# A chat handshake asks once: who the token (or the session's user) is now,
# and whether they may see the order. On PostgreSQL that is one statement
# (ADMIT_BY_TOKEN, ADMIT_BY_USER), run on the event loop with the handshake's
# other reads; `admit` is the same rules through the ORM, for other
# databases, and main/tests/test_access.py holds the two to the same answers.


@dataclass(frozen=True)
class Admission:
    """A user let into an order's chat."""

    user_id: int
    email: str
    name: str
    employee: bool
    customer_id: int  # the order's owner


class Refused(Exception):
    """Not let in: `reason` is "unauthenticated" (no such active user, token
    or session) or "forbidden" (a foreign, a missing or a malformed order)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# For each handshake asked (`asked`: its number, order, and token or user
# id), `who`: the active user, and whether they are an employee as
# User.is_employee says; `seen`: the order, if they may see it
# (visible_order); `spoken`: an employee let in becomes the order's
# last_spoken_to, as `admit` does (written only when it changes: a write's
# commit waits for the disk).
ADMIT = (
    "WITH asked AS ("
    " SELECT * FROM unnest(%(n)s::int[], %(orders)s::bigint[], %(tokens)s::text[], %(users)s::bigint[])"
    "  AS a(n, order_id, token, user_id)"
    "), who AS ("
    " SELECT a.n, a.order_id, u.id, u.email, u.first_name, u.last_name,"
    "  u.is_superuser OR (u.is_staff AND EXISTS ("
    f"   SELECT 1 FROM {User.groups.through._meta.db_table} ug JOIN {Group._meta.db_table} g ON g.id = ug.group_id"
    "    WHERE ug.user_id = u.id AND g.name = %(employees)s)) AS employee"
    f" FROM asked a JOIN {User._meta.db_table} u ON u.is_active AND u.id = coalesce(a.user_id,"
    f"  (SELECT t.user_id FROM {Token._meta.db_table} t WHERE t.key = a.token))"
    "), seen AS ("
    f" SELECT who.n, o.id, o.user_id FROM who JOIN {Order._meta.db_table} o"
    "  ON o.id = who.order_id AND (o.user_id = who.id OR who.employee)"
    "), spoken AS ("
    f" UPDATE {Order._meta.db_table} o SET last_spoken_to_id = who.id FROM who JOIN seen ON seen.n = who.n"
    "  WHERE who.employee AND o.id = seen.id AND o.last_spoken_to_id IS DISTINCT FROM who.id RETURNING 1"
    ") SELECT who.n, who.id, who.email, who.first_name, who.last_name, who.employee, seen.user_id"
    " FROM who LEFT JOIN seen ON seen.n = who.n"
)


def admission_statement(asked):
    """The statement (sql, params) that admits, for each (order_id, user,
    token) in `asked`, `token`'s user or else `user` to the order's chat;
    its rows go to `admissions`."""
    return ADMIT, {
        "n": list(range(len(asked))),
        "orders": [order_id for order_id, _, _ in asked],
        "tokens": [token for _, _, token in asked],
        "users": [user.pk if token is None else None for _, user, token in asked],
        "employees": EMPLOYEES_GROUP,
    }


def admissions(rows, count):
    """What admission_statement's rows say of each of the `count` asked: an
    Admission, or a Refused."""
    answers = [Refused("unauthenticated")] * count
    for n, user_id, email, first_name, last_name, employee, customer_id in rows:
        name = display_name(first_name, last_name, email)
        answers[n] = (
            Refused("forbidden") if customer_id is None else Admission(user_id, email, name, employee, customer_id)
        )
    return answers


def admit(order_id, user=None, token=None):
    """The ORM's answer to admission_statement (synchronous): the Admission,
    or raise Refused."""
    if token is not None:
        found = Token.objects.select_related("user").filter(key=token).first() if valid_token_shape(token) else None
        user = found.user if found is not None and found.user.is_active else None
    elif user is not None and user.is_authenticated:
        user = User.objects.filter(pk=user.pk, is_active=True).first()
    if user is None or not user.is_authenticated:
        raise Refused("unauthenticated")
    employee = is_employee(user)
    order = visible_order(user, order_id, employee)
    if order is None:
        raise Refused("forbidden")
    if employee and order.last_spoken_to_id != user.pk:
        # Only now that the user is admitted; update() touches one column.
        Order.objects.filter(pk=order.pk).update(last_spoken_to=user)
    return Admission(user.pk, user.email, user.display_name, employee, order.user_id)


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
