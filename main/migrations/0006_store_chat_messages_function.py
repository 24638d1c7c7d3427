"""A PostgreSQL function that stores a batch of chat messages in one
statement (main.chat_store): locking the orders' rows and numbering the
messages took four round trips to the database (BEGIN, the lock, the insert,
COMMIT), each about 0.3 ms on a loopback connection; a call of this
function in autocommit is one. Other databases keep the ORM's path."""

from django.db import migrations

# VOLATILE (the default): each statement in the function takes a new
# snapshot, so the insert sees every message committed before the lock on its
# order was granted, as a second statement of a transaction did.
CREATE = """
CREATE OR REPLACE FUNCTION main_store_chat_messages(order_ids bigint[], user_ids bigint[], texts text[])
RETURNS TABLE (id bigint, order_id bigint, seq bigint, created timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- In id order, so two workers' batches never deadlock.
    PERFORM 1 FROM main_order o WHERE o.id = ANY(order_ids) ORDER BY o.id FOR UPDATE;
    RETURN QUERY
    WITH batch AS (
        SELECT * FROM unnest(order_ids, user_ids, texts) WITH ORDINALITY AS b(order_id, user_id, text, n)
    ), latest AS (
        SELECT o.id AS order_id,
               (SELECT coalesce(max(m.seq), 0) FROM main_chatmessage m WHERE m.order_id = o.id) AS seq
        FROM main_order o WHERE o.id IN (SELECT order_id FROM batch)
    )
    INSERT INTO main_chatmessage AS m (order_id, user_id, text, seq, created)
    SELECT b.order_id, b.user_id, b.text,
           latest.seq + row_number() OVER (PARTITION BY b.order_id ORDER BY b.n), now()
    FROM batch b JOIN latest USING (order_id)
    ORDER BY b.n
    RETURNING m.id, m.order_id, m.seq, m.created;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS main_store_chat_messages(bigint[], bigint[], text[])"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("main", "0005_chatmessage_seq"),
    ]

    operations = [migrations.RunPython(create, drop)]
