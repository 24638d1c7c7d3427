"""Sending through the REST API by the chat socket's rules, end to end: a
real worker, real HTTP and WebSocket clients. What text may be a message is
one rule for both (main/conversations/wire.py): the same refusals with the
same codes, odd but valid text stored exactly, card numbers masked."""

import json

import pytest

from main import models

from ..clients import api, open_chat, recv, token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(worker_server):
    return worker_server()


def send(server, order, user, body):
    return api(server, "POST", f"/mobile-api/conversations/{order.pk}/messages/", user, body)


def test_a_card_number_sent_through_the_api_is_masked_for_everyone_and_the_answer_says_so(server, people):
    customer, order, agent, _ = people
    with (
        open_chat(server, order.pk, token_query=token(agent), v2=True) as a,
        open_chat(server, order.pk, token_query=token(agent)) as v1,
    ):
        recv(a, "history")
        recv(v1, "chat_join")
        status, sent = send(server, order, customer, {"message": "Card 3782 822463 10005, thanks", "client_id": "c1"})
        assert status == 201
        assert sent["message"] == "Card **** ****** *0005, thanks" and sent["client_id"] == "c1"
        assert [n["code"] for n in sent["notices"]] == ["card_number_masked"] and sent["notices"][0]["detail"]
        assert set(sent) == {"id", "seq", "username", "message", "created", "employee", "mine", "client_id", "notices"}
        theirs = recv(a, "chat_message")
        assert theirs["message"] == "Card **** ****** *0005, thanks" and theirs["id"] == sent["id"]
        assert recv(v1, "chat_message")["message"] == "Card **** ****** *0005, thanks"
        with pytest.raises(TimeoutError):  # no notice for anyone else
            while True:
                assert json.loads(a.recv(timeout=0.5))["type"] != "notice"
    # Sent again: the message stored before, and the same notice.
    status, again = send(server, order, customer, {"message": "Card 3782 822463 10005, thanks", "client_id": "c1"})
    assert status == 200 and again["id"] == sent["id"] and again["notices"] == sent["notices"]
    status, plain = send(server, order, customer, {"message": "Order 378282246310006"})  # fails Luhn
    assert status == 201 and plain["message"] == "Order 378282246310006" and plain["notices"] == []
    assert list(models.ChatMessage.objects.order_by("seq").values_list("text", flat=True)) == [
        "Card **** ****** *0005, thanks",
        "Order 378282246310006",
    ]


# (body, the code the socket gives the same message)
REFUSED = [
    ({}, "bad_message"),
    ({"message": None}, "bad_message"),
    ({"message": 42}, "bad_message"),
    ({"message": 1.5}, "bad_message"),
    ({"message": True}, "bad_message"),
    ({"message": ["x"]}, "bad_message"),
    ({"message": {"x": 1}}, "bad_message"),
    ({"message": 10**400}, "bad_message"),
    ({"message": ""}, "empty_message"),
    ({"message": " \n\t\u3000"}, "empty_message"),
    ({"message": "x" * 2001}, "too_long"),
    ({"message": "a\x00b"}, "bad_message"),
    ({"message": "\ud800"}, "bad_message"),
    ({"message": "a\udfffb"}, "bad_message"),
]


def test_the_api_refuses_what_the_socket_refuses_with_the_same_code(server, people):
    customer, order, _, _ = people
    with open_chat(server, order.pk, token_query=token(customer), v2=True) as c:
        recv(c, "history")
        for body, code in REFUSED:
            status, answer = send(server, order, customer, body)
            assert (status, answer["code"]) == (400, code), body
            assert answer["detail"]
            c.send(json.dumps({"type": "message", **body}))
            assert recv(c, "error")["code"] == code, body
    assert not models.ChatMessage.objects.exists()


@pytest.mark.parametrize("client_id", [1, True, "", "c" * 65, "a b", "été", "\ud800", "a\x00", [], {}])
def test_a_client_id_the_socket_refuses_is_refused(server, people, client_id):
    customer, order, _, _ = people
    status, answer = send(server, order, customer, {"message": "hello", "client_id": client_id})
    assert status == 400 and answer["code"] == "invalid" and "client_id" in answer["errors"]
    assert not models.ChatMessage.objects.exists()


def test_odd_text_is_stored_and_answered_exactly(server, people):
    customer, order, _, _ = people
    texts = ["\u202eevil\u202c", "\ufffe\uffff\U0010ffff", "e\u0301\u200d", "\x01\x1b[31m\r\n", "  spaced  "]
    for text in texts:
        status, answer = send(server, order, customer, {"message": text})
        assert status == 201 and answer["message"] == text
    assert list(models.ChatMessage.objects.order_by("seq").values_list("text", flat=True)) == texts
