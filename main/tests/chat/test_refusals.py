"""What the chat consumer does when a frame fails or a stored message's event
cannot cross the channel layer: through channels.testing communicators
against the real channel layer (Redis) and PostgreSQL. Hostile input from a
real client to a real worker is in system/test_hostile_input.py."""

import logging

import pytest
from channels.db import database_sync_to_async

from main import models
from main.chat import protocol, service
from main.chat.limits import STRIKE_LIMIT
from main.infra.db import DatabaseUnavailable

from .test_consumer import connected, people, receive, redis_pool

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["people", "redis_pool"]


def failing(error):
    async def history(*args, **kwargs):
        raise error

    return history


async def test_a_frame_the_server_fails_on_is_a_strike(people, settings, monkeypatch):
    """A client that keeps sending a frame the server fails on is closed as
    any that keeps sending refused frames: it cannot keep the server logging
    tracebacks for ever."""
    settings.CHAT_RATE_BURST = 20  # frames of any kind: 120 at once
    customer, order, _, _ = people
    monkeypatch.setattr(service, "history", failing(RuntimeError("a bug")))
    c = await connected(customer, order.pk, v2=True)
    await receive(c, "history")
    for _ in range(STRIKE_LIMIT - 1):
        await c.send_json_to({"type": "history"})
        assert (await receive(c, "error"))["code"] == "server_error"
    await c.send_json_to({"type": "history"})
    while (output := await c.receive_output(timeout=3))["type"] != "websocket.close":
        pass
    assert output["code"] == protocol.CLOSE_POLICY_VIOLATION


async def test_a_frame_not_handled_while_the_database_is_away_is_no_strike(people, settings, monkeypatch):
    settings.CHAT_RATE_BURST = 20
    customer, order, _, _ = people
    monkeypatch.setattr(service, "history", failing(DatabaseUnavailable("away")))
    c = await connected(customer, order.pk, v2=True)
    await receive(c, "history")
    for _ in range(STRIKE_LIMIT + 5):
        await c.send_json_to({"type": "history"})
        assert (await receive(c, "error"))["code"] == "unavailable"
    await c.send_json_to({"type": "message", "message": "still here"})
    assert (await receive(c, "chat_message"))["message"] == "still here"
    await c.disconnect()


@pytest.fixture
def unchecked_refs(monkeypatch):
    """A `ref` taken as sent, as before refs were checked: a lone surrogate
    then reaches the message's group event, which msgpack cannot encode."""
    monkeypatch.setattr(protocol.V2, "ref", lambda self, content: content.get("ref"))


async def test_a_message_whose_event_the_layer_refuses_still_reaches_everyone(people, unchecked_refs, caplog):
    customer, order, agent, _ = people
    c = await connected(customer, order.pk, v2=True)
    a = await connected(agent, order.pk, v2=True)
    v1 = await connected(agent, order.pk)
    await receive(c, "history")
    await receive(a, "history")
    with caplog.at_level(logging.WARNING, logger="main.chat"):
        await c.send_json_to({"type": "message", "message": "hello", "ref": "\ud800"})
        own = await receive(c, "chat_message")
        theirs = await receive(a, "chat_message")
        assert (await receive(v1, "chat_message")) == {
            "type": "chat_message",
            "username": "Jane Doe",
            "message": "hello",
        }
    assert own["message"] == "hello" and own["ref"] == "\ud800" and own["mine"] is True
    assert theirs["message"] == "hello" and theirs["id"] == own["id"] and theirs["seq"] == own["seq"] == 1
    assert theirs["mine"] is False and "ref" not in theirs
    # The conversation's change comes with it, as with any message.
    assert (await receive(a, "conversation"))["status"] == "waiting"
    # Once each: the sender is not shown its message a second time.
    await c.send_json_to({"type": "message", "message": "and again", "ref": "r"})
    assert (await receive(c, "chat_message"))["message"] == "and again"
    assert (await receive(a, "chat_message"))["message"] == "and again"
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1 and "fan-out failed" in failures[0].getMessage()
    stored = await database_sync_to_async(lambda: list(models.ChatMessage.objects.values_list("text", flat=True)))()
    assert stored == ["hello", "and again"]
    for s in (c, a, v1):
        await s.disconnect()
