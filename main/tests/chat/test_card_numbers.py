"""Card numbers in the chat, end to end: a real worker, real WebSocket
clients (v1 and v2), PostgreSQL and Redis. A message with a card number is
stored and sent masked but for the last four digits, and its v2 sender is
told why (docs/protocol.md, "Card numbers")."""

import json

import pytest

from main import models

from ..clients import open_chat, recv, token

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "My card is 4111 1111 1111 1111, order 12345, call +44 20 7946 0958"
MASKED = "My card is **** **** **** 1111, order 12345, call +44 20 7946 0958"


@pytest.fixture
def server(worker_server):
    return worker_server()


def test_a_card_number_is_masked_for_everyone_and_its_v2_sender_is_told(server, people):
    customer, order, agent, _ = people
    with (
        open_chat(server, order.pk, token_query=token(customer), v2=True) as c,
        open_chat(server, order.pk, token_query=token(agent), v2=True) as a,
        open_chat(server, order.pk, token_query=token(agent)) as v1,
    ):
        recv(c, "history")
        recv(a, "history")
        c.send(json.dumps({"type": "message", "message": TEXT, "ref": "r1", "client_id": "m-1"}))
        got = {}
        while len(got) < 2:
            event = recv(c)
            if event["type"] in ("chat_message", "notice"):
                got[event["type"]] = event
        own, notice = got["chat_message"], got["notice"]
        assert own["message"] == MASKED and own["ref"] == "r1"
        assert notice == {
            "type": "notice",
            "code": "card_number_masked",
            "message": notice["message"],
            "id": own["id"],
            "seq": own["seq"],
            "ref": "r1",
        }
        assert "card" in notice["message"]
        theirs = recv(a, "chat_message")
        assert theirs["message"] == MASKED and theirs["id"] == own["id"]
        assert recv(v1, "chat_message") == {"type": "chat_message", "username": "Jane Doe", "message": MASKED}

        # Sent again under its client_id: the stored (masked) message, and the notice again.
        c.send(json.dumps({"type": "message", "message": TEXT, "ref": "r2", "client_id": "m-1"}))
        again = recv(c, "chat_message")
        assert again["id"] == own["id"] and again["message"] == MASKED
        assert recv(c, "notice")["ref"] == "r2"

        # Others are told nothing of it, and a message without one brings no notice.
        a.send(json.dumps({"type": "message", "message": "Thanks, 4111 1111 1111 1112 is not one", "ref": "x"}))
        assert (
            recv(
                a,
                "chat_message",
            )["message"]
            == "Thanks, 4111 1111 1111 1112 is not one"
        )
        assert recv(c, "chat_message")["message"] == "Thanks, 4111 1111 1111 1112 is not one"
        with pytest.raises(TimeoutError):
            while True:
                assert json.loads(a.recv(timeout=0.5))["type"] != "notice"
    stored = list(models.ChatMessage.objects.order_by("seq").values_list("text", flat=True))
    assert stored == [MASKED, "Thanks, 4111 1111 1111 1112 is not one"]
    assert "4111 1111 1111 1111" not in server.log()


def test_a_v1_sender_gets_the_masked_message_and_no_other_event(server, people):
    customer, order, _, _ = people
    with open_chat(server, order.pk, token_query=token(customer)) as c:
        recv(c, "chat_join")
        c.send(json.dumps({"type": "message", "message": "5555-5555-5555-4444"}))
        assert recv(c) == {"type": "chat_message", "username": "Jane Doe", "message": "****-****-****-4444"}
        with pytest.raises(TimeoutError):
            c.recv(timeout=0.5)
    assert models.ChatMessage.objects.get().text == "****-****-****-4444"
