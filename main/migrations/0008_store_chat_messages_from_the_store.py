"""The function that stores a batch of chat messages is written in
main.conversations.store (its statements written once for every database)
and installed from there, by this migration and by each later one that
changes it (main/tests/test_migrations.py checks the database holds the
code's)."""

from django.db import migrations


def install(apps, schema_editor):
    from main.conversations.store import install

    install(schema_editor)


def remove(apps, schema_editor):
    # Back to 0007's state: no function.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS main_store_chat_messages(bigint[], bigint[], text[], text[])")


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0007_drop_store_chat_messages_function"),
    ]

    operations = [migrations.RunPython(install, remove)]
