"""The store's function again: its conversation statement reads each
order's new messages as ranges of the (order, seq) index rather than
scanning the chat's history, and its statements are planned once per
connection, without JIT (main.conversations.store)."""

from django.db import migrations


def install(apps, schema_editor):
    from main.conversations.store import install

    install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0009_conversations"),
    ]

    operations = [migrations.RunPython(install, migrations.RunPython.noop)]
