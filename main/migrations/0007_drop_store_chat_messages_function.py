"""Chat messages are numbered by one statement that every database runs
(main.chat.store), so the PostgreSQL function of 0006 is no longer called."""

import importlib

from django.db import migrations

DROP = "DROP FUNCTION IF EXISTS main_store_chat_messages(bigint[], bigint[], text[])"


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


def recreate(apps, schema_editor):
    importlib.import_module("main.migrations.0006_store_chat_messages_function").create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0006_store_chat_messages_function"),
    ]

    operations = [migrations.RunPython(drop, recreate)]
