"""The data migrations: what existed before a migration is carried over."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.authtoken.models import Token

from main import models
from main.conversations import store
from main.conversations.store import store_now

pytestmark = pytest.mark.django_db(transaction=True)


def migrate_to_just_before(suffix):
    """The test database migrated back to just before main's migration whose
    name ends with `suffix` (found by name, so a renumbering does not matter);
    the models as they were then."""
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    target = next(n for n in graph.nodes if n[0] == "main" and n[1].endswith(suffix))
    before = [p.key for p in graph.node_map[target].parents if p.key[0] == "main"]
    executor.migrate(before)
    return executor.loader.project_state(before).apps


def migrate_to_the_latest():
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_migration_gives_existing_users_a_token():
    # Historical models: no post_save token, as for users made before tokens.
    User = migrate_to_just_before("_tokens_for_existing_users").get_model("main", "User")
    users = [User.objects.create(email=f"old{n}@site.com", password="!") for n in range(3)]
    assert not Token.objects.filter(user_id__in=[u.pk for u in users]).exists()

    migrate_to_the_latest()

    tokens = Token.objects.filter(user_id__in=[u.pk for u in users])
    assert tokens.count() == 3 and all(len(t.key) == 40 for t in tokens)


def test_migration_numbers_existing_messages_per_order_in_id_order():
    old = migrate_to_just_before("_chatmessage_seq")
    User, Order, ChatMessage = (old.get_model("main", name) for name in ("User", "Order", "ChatMessage"))
    user = User.objects.create(email="old@site.com", password="!")
    a, b = (Order.objects.create(user=user) for _ in range(2))
    for n in range(5):
        ChatMessage.objects.create(order=a if n % 2 else b, user=user, text=f"m{n}")

    migrate_to_the_latest()

    for order, texts in ((b.pk, ["m0", "m2", "m4"]), (a.pk, ["m1", "m3"])):
        rows = list(models.ChatMessage.objects.filter(order_id=order).order_by("id").values_list("seq", "text"))
        assert rows == list(enumerate(texts, start=1))
    # New messages go on from there.
    assert store_now(a.pk, user.pk, "new").seq == 3


def store_function_body():
    """The function's body and its settings, as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT prosrc, proconfig FROM pg_proc WHERE proname = %s", [store.FUNCTION])
        row = cursor.fetchone()
        return None if row is None else tuple(row)


def test_the_database_holds_the_store_function_the_code_defines():
    """main.conversations.store's function is installed by a migration: a change to it
    without a migration that installs it again fails here."""
    if connection.vendor != "postgresql":
        pytest.skip("a PostgreSQL function")
    defined = store.POSTGRESQL_FUNCTION.split("$$")[1], [f"{k}={v}" for k, v in store.FUNCTION_SETTINGS.items()]
    assert store_function_body() == defined
    old = migrate_to_just_before("_store_chat_messages_from_the_store")
    assert store_function_body() != defined and old is not None
    migrate_to_the_latest()
    assert store_function_body() == defined
