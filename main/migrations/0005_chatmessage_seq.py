from django.db import migrations, models


def number_messages(apps, schema_editor):
    """Existing messages get 1, 2, 3... per order, in id order (the order
    they were shown in until now)."""
    ChatMessage = apps.get_model("main", "ChatMessage")
    order_ids = ChatMessage.objects.order_by().values_list("order_id", flat=True).distinct()
    for order_id in order_ids.iterator():
        messages = list(ChatMessage.objects.filter(order_id=order_id).order_by("id").only("id"))
        for n, message in enumerate(messages, start=1):
            message.seq = n
        ChatMessage.objects.bulk_update(messages, ["seq"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0004_tokens_for_existing_users"),
    ]

    operations = [
        migrations.AddField(
            model_name="chatmessage",
            name="seq",
            field=models.PositiveBigIntegerField(null=True),
        ),
        migrations.RunPython(number_messages, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="chatmessage",
            name="seq",
            field=models.PositiveBigIntegerField(),
        ),
        migrations.AddConstraint(
            model_name="chatmessage",
            constraint=models.UniqueConstraint(fields=("order", "seq"), name="main_chatmsg_order_seq"),
        ),
    ]
