"""The function that stores a batch of chat messages is written in
main.conversations.store (its statements written once for every database)
and installed from there, by this migration and by each later one that
changes it (main/tests/test_migrations.py checks the database holds the
code's)."""

import importlib

from django.db import migrations


def install(apps, schema_editor):
    from main.conversations.store import install

    install(schema_editor)


def restore(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS main_store_chat_messages(bigint[], bigint[], text[], text[])")
    importlib.import_module("main.migrations.0006_store_chat_messages_function").create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0006_store_chat_messages_function"),
    ]

    operations = [migrations.RunPython(install, restore)]
