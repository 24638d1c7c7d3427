"""The function that stores a batch of chat messages is now written in
main.chat.store (one numbering statement for every database) and installed
from there; a later change to it comes with a migration that installs it
again (main/tests/test_migrations.py checks the database holds the current one)."""

import importlib

from django.db import migrations


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from main.chat.store import POSTGRESQL_FUNCTION

        schema_editor.execute(POSTGRESQL_FUNCTION)


def restore(apps, schema_editor):
    importlib.import_module("main.migrations.0006_store_chat_messages_function").create(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0006_store_chat_messages_function"),
    ]

    operations = [migrations.RunPython(install, restore)]
