"""Conversations (one per order with messages, derived from its messages by
the store's own statement) and exactly-once send (a client's id for each
message, unique per order and sender)."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def derive(apps, schema_editor):
    """Every order's conversation from the messages stored so far."""
    from main.conversations.store import CONVERSATION

    every_order = (
        "SELECT 0, id, CAST(NULL AS BIGINT), CAST(NULL AS TEXT), CAST(NULL AS TEXT) FROM main_order"
        " WHERE id IN (SELECT DISTINCT order_id FROM main_chatmessage)"
    )
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(CONVERSATION.format(batch=every_order, out="order_id"))


def install(apps, schema_editor):
    from main.conversations.store import install

    install(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0008_store_chat_messages_from_the_store"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmessage",
            name="client_id",
            field=models.CharField(blank=True, max_length=64, null=True),
        ),
        migrations.AddConstraint(
            model_name="chatmessage",
            constraint=models.UniqueConstraint(
                condition=models.Q(("client_id__isnull", False)),
                fields=("order", "user", "client_id"),
                name="main_chatmsg_client_id",
            ),
        ),
        migrations.CreateModel(
            name="Conversation",
            fields=[
                (
                    "order",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="conversation",
                        serialize=False,
                        to="main.order",
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[("waiting", "Waiting"), ("answered", "Answered"), ("resolved", "Resolved")],
                        default="answered",
                        max_length=8,
                    ),
                ),
                ("waiting_since", models.DateTimeField(blank=True, null=True)),
                ("last_seq", models.PositiveBigIntegerField(default=0)),
                ("last_employee_seq", models.PositiveBigIntegerField(blank=True, null=True)),
                ("last_wait_started", models.DateTimeField(blank=True, null=True)),
                ("last_replied_at", models.DateTimeField(blank=True, null=True)),
                ("updated", models.DateTimeField()),
                (
                    "assigned_to",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(fields=["status", "waiting_since"], name="main_conv_status_waiting"),
                    models.Index(fields=["assigned_to", "status"], name="main_conv_assigned_status"),
                    models.Index(fields=["last_replied_at"], name="main_conv_replied"),
                    models.Index(fields=["status", "-updated"], name="main_conv_status_updated"),
                ],
            },
        ),
        migrations.RunPython(derive, migrations.RunPython.noop),
        migrations.RunPython(install, migrations.RunPython.noop),
    ]
