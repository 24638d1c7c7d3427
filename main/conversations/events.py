"""Telling every server process what changed: a stored message to the
sockets of its chat, and which conversations changed to the agents' inbox
streams and the waiting customers (the `conversations` group), through the
channel layer."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import messages, wire

logger = logging.getLogger(__name__)

# Inbox streams, and the sockets of customers who wait, listen here.
CONVERSATIONS_GROUP = "conversations"


def order_group(order_id):
    """The channel-layer group of an order's chat sockets."""
    return f"customer-service_{order_id}"


def changed_event(order_ids, reader_id=None):
    """`conversations.changed`: these conversations changed (for everyone, or
    only in `reader_id`'s read marker)."""
    event = {"type": "conversations.changed", "order_ids": sorted(set(order_ids))}
    if reader_id is not None:
        event["reader_id"] = reader_id
    return event


def chat_message(stored, customer_id, username=None):
    """A stored message's group event, with its conversation's state as it
    stands after it (the chat's v2 sockets show a change of it)."""
    event = messages.message_event(stored.message, customer_id, username)
    if stored.conversation is not None:
        event["conversation"] = conversation_fields(stored.conversation)
    return event


def conversation_fields(state):
    """The part of a conversation's state a stored message can change."""
    since = state["waiting_since"] if state["status"] == "waiting" else None
    return {"status": state["status"], "waiting_since": wire.timestamp(since) if since else None}


async def send(group, event):
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, event)


async def conversations_changed(order_ids, reader_id=None):
    await send(CONVERSATIONS_GROUP, changed_event(order_ids, reader_id))


async def read(order_id, user_id, username, last_read):
    """Someone read the chat up to message `last_read`: its sockets see a
    `chat_read`, and the reader's inbox their unread count change."""
    await send(order_group(order_id), {"type": "chat_read", "username": username, "user_id": user_id, "id": last_read})
    await conversations_changed([order_id], reader_id=user_id)


async def conversation_state(order_id, state):
    """An order's conversation changed hands or status (an action): its chat
    sockets and the inboxes are told."""
    await send(order_group(order_id), {"type": "chat.conversation", **state})
    await conversations_changed([order_id])


def told(coroutine_function):
    """The same, from sync code (the REST API's views); a channel-layer
    failure is logged: what changed is stored, and clients catch up."""

    def tell(*args, **kwargs):
        try:
            async_to_sync(coroutine_function)(*args, **kwargs)
        except Exception:
            logger.exception("Could not tell the other processes: %s", coroutine_function.__name__)

    return tell


send_now = told(send)
conversations_changed_now = told(conversations_changed)
read_now = told(read)
conversation_state_now = told(conversation_state)
