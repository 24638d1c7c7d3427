"""The chat end to end: a real worker on loopback (or two sharing Redis), a
real WebSocket client (websockets), PostgreSQL and Redis."""

import json
import socket
import urllib.request

import pytest
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidStatus

from main import models
from main.chat.protocol import V2_SUBPROTOCOL
from main.infra.access_changes import secret_hash
from main.infra.answers import CLOSE_TOKEN_REVOKED

from ..clients import TIMEOUT, open_chat, recv, token

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server(worker_server):
    return worker_server()


def refused(server, order_id, **kwargs):
    with pytest.raises(InvalidStatus) as error:
        open_chat(server, order_id, **kwargs).close()
    return error.value.response.status_code


def order_keys(order_id):
    r = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    try:
        return [*r.scan_iter(f"*customer-service_{order_id}"), *r.scan_iter(f"*customer-service_{order_id}_*")]
    finally:
        r.close()


def test_customer_and_agent_chat_and_v1_sees_only_v1(server, people):
    customer, order, agent, _ = people
    with (
        open_chat(server, order.pk, user=customer, origin=server.url) as v1,
        open_chat(server, order.pk, token_query=token(agent), v2=True) as v2,
    ):
        assert v2.subprotocol == V2_SUBPROTOCOL and v1.subprotocol is None
        assert recv(v1) == {"type": "chat_join", "username": "Jane Doe"}
        assert recv(v1) == {"type": "chat_join", "username": "Adam Ford"}
        v1.send(json.dumps({"type": "message", "message": "Where is my book?"}))
        assert recv(v1) == {"type": "chat_message", "username": "Jane Doe", "message": "Where is my book?"}
        got = recv(v2, "chat_message")
        assert got["message"] == "Where is my book?" and got["username"] == "Jane Doe" and got["id"] > 0
        v2.send(json.dumps({"type": "typing"}))
        v2.send(json.dumps({"type": "read", "id": got["id"]}))
        v2.send(json.dumps({"type": "message", "message": "On its way 📦"}))
        assert recv(v1) == {"type": "chat_message", "username": "Adam Ford", "message": "On its way 📦"}
    texts = list(models.ChatMessage.objects.filter(order=order).order_by("id").values_list("user__email", "text"))
    assert texts == [("jane_doe@example.com", "Where is my book?"), ("agent@booktime.domain", "On its way 📦")]
    order.refresh_from_db()
    assert order.last_spoken_to == agent


def test_refusals_are_403_and_leave_nothing(server, people):
    customer, order, agent, other = people
    # (A killed server may have left memberships behind in a previous run.)
    keys_before = order_keys(order.pk)
    assert refused(server, order.pk) == 403  # anonymous
    assert refused(server, order.pk, user=other) == 403
    assert refused(server, order.pk + 1000, user=customer) == 403
    assert refused(server, "abc", user=customer) == 403
    assert refused(server, "99999999999999999999999", user=customer) == 403
    assert refused(server, order.pk, token_query="not-a-token") == 403
    assert refused(server, order.pk, token_header=token(other)) == 403
    assert order_keys(order.pk) == keys_before
    order.refresh_from_db()
    assert order.last_spoken_to is None
    assert "Traceback" not in server.log()


def test_origin_check(server, people):
    customer, order, _, _ = people
    # A foreign page cannot ride the user's session cookie...
    assert refused(server, order.pk, user=customer, origin="https://evil.example") == 403
    assert refused(server, order.pk, user=customer, origin="null") == 403
    # ...while our own pages and native apps (no Origin at all) get in.
    with open_chat(server, order.pk, user=customer, origin=server.url) as ws:
        assert recv(ws)["type"] == "chat_join"
    with open_chat(server, order.pk, user=customer) as ws:
        assert recv(ws)["type"] == "chat_join"


def test_token_auth_by_query_string_and_header(server, people):
    customer, order, _, _ = people
    with open_chat(server, order.pk, token_query=token(customer)) as ws:
        assert recv(ws) == {"type": "chat_join", "username": "Jane Doe"}
    with open_chat(server, order.pk, token_header=token(customer)) as ws:
        assert recv(ws) == {"type": "chat_join", "username": "Jane Doe"}
    assert token(customer) not in server.log()


BAD_FRAMES = [
    ("not json", "bad_json"),
    ("[1]", "bad_frame"),
    ('{"type": "sing"}', "unknown_type"),
    ('{"type": "message"}', "bad_message"),
    ('{"type": "message", "message": ["x"]}', "bad_message"),
    ('{"type": "message", "message": "   "}', "empty_message"),
    (json.dumps({"type": "message", "message": "x" * 2001}), "too_long"),
    # A frame over CHAT_MAX_FRAME_BYTES closes the socket with 1009 at the
    # worker (system/test_limits.py); the consumer's own `too_large` is for
    # servers without that limit (test_consumer.py).
    (b"\x00binary", "bad_frame"),
]


def test_bad_input_gets_an_answer_and_everyone_goes_on(server, people, settings):
    customer, order, agent, _ = people
    with (
        open_chat(server, order.pk, user=customer, v2=True) as c,
        open_chat(server, order.pk, user=agent) as a,
    ):
        recv(c, "history")
        for frame, code in BAD_FRAMES:
            c.send(frame)
            error = recv(c, "error")
            assert error["code"] == code, frame
        with open_chat(server, order.pk, user=customer) as v1_customer:
            recv(v1_customer)
            for frame, _ in BAD_FRAMES:
                v1_customer.send(frame)  # v1: dropped without an answer
            v1_customer.send(json.dumps({"type": "message", "message": "still talking"}))
            assert recv(v1_customer, "chat_message")["message"] == "still talking"
            assert recv(a, "chat_message")["message"] == "still talking"
            c.send(json.dumps({"type": "message", "message": "me too"}))
            assert recv(a, "chat_message")["message"] == "me too"
    assert models.ChatMessage.objects.filter(order=order).count() == 2
    assert "Traceback" not in server.log()


def test_flood_is_rate_limited(server, people):
    customer, order, _, _ = people
    with open_chat(server, order.pk, user=customer, v2=True) as c:
        recv(c, "history")
        for n in range(settings.CHAT_RATE_BURST + 5):
            c.send(json.dumps({"type": "message", "message": f"flood {n}"}))
        error = recv(c, "error")
        assert error["code"] == "rate_limited"
        c.send(json.dumps({"type": "heartbeat"}))  # the socket is still open
    assert models.ChatMessage.objects.filter(order=order).count() == settings.CHAT_RATE_BURST


def test_history_on_open(server, people):
    customer, order, agent, _ = people
    models.ChatMessage.objects.bulk_create(
        models.ChatMessage(order=order, seq=n + 1, user=agent if n % 2 else customer, text=f"line {n}")
        for n in range(60)
    )
    with open_chat(server, order.pk, user=customer, v2=True) as c:
        ready = recv(c)
        assert ready["type"] == "ready" and ready["you"]["username"] == "Jane Doe"
        page = recv(c)
        assert page["type"] == "history" and page["has_more"] is True
        assert [m["message"] for m in page["messages"]] == [f"line {n}" for n in range(10, 60)]
        c.send(json.dumps({"type": "history", "before": page["messages"][0]["id"]}))
        older = recv(c, "history")
        assert [m["message"] for m in older["messages"]] == [f"line {n}" for n in range(10)]
        assert older["has_more"] is False


def test_resume_after_a_dropped_socket_loses_and_repeats_nothing(server, people):
    customer, order, agent, _ = people
    with open_chat(server, order.pk, user=agent, v2=True) as a:
        with open_chat(server, order.pk, user=customer, v2=True) as c:
            recv(c, "history")
            a.send(json.dumps({"type": "message", "message": "before the drop"}))
            last_seen = recv(c, "chat_message")["id"]
            # The network goes away: no close frame, the server finds out later.
            c.socket.shutdown(socket.SHUT_RDWR)
        for n in range(3):
            a.send(json.dumps({"type": "message", "message": f"while away {n}"}))
        for _ in range(3):
            recv(a, "chat_message")
        with open_chat(server, order.pk, user=customer, v2=True, query=f"after={last_seen}") as c2:
            got = []
            while (event := recv(c2))["type"] != "resumed":
                if event["type"] == "chat_message":
                    got.append(event["message"])
            assert got == [f"while away {n}" for n in range(3)]
            a.send(json.dumps({"type": "message", "message": "after the return"}))
            assert recv(c2, "chat_message")["message"] == "after the return"
            with pytest.raises(TimeoutError):  # nothing twice
                while True:
                    assert recv(c2)["type"] != "chat_message"


def test_two_server_processes_share_the_chat_through_redis(worker_server, people):
    customer, order, agent, _ = people
    one, two = worker_server(), worker_server()
    with (
        open_chat(one, order.pk, user=customer) as c,
        open_chat(two, order.pk, user=agent, v2=True) as a,
    ):
        recv(a, "history")  # the agent is in: from now on, everything is live
        joins = [recv(c), recv(c)]
        assert {"type": "chat_join", "username": "Adam Ford"} in joins
        c.send(json.dumps({"type": "message", "message": "from process one"}))
        a.send(json.dumps({"type": "message", "message": "from process two"}))
        for ws in (c, a):
            got = [recv(ws, "chat_message")["message"] for _ in range(2)]
            assert sorted(got) == ["from process one", "from process two"]


def test_one_process_without_redis_chats_in_memory(worker_server, people):
    """The demo's set-up: no REDIS_URL, the in-process channel layer."""
    customer, order, agent, _ = people
    server = worker_server({"REDIS_URL": ""})
    with (
        open_chat(server, order.pk, user=customer, v2=True) as c,
        open_chat(server, order.pk, user=agent) as a,
    ):
        recv(c, "history")
        c.send(json.dumps({"type": "heartbeat"}))
        c.send(json.dumps({"type": "message", "message": "no Redis here"}))
        assert recv(a, "chat_message") == {"type": "chat_message", "username": "Jane Doe", "message": "no Redis here"}
        assert recv(c, "chat_message")["message"] == "no Redis here"
        with pytest.raises(TimeoutError):  # no error event for the heartbeat either
            while True:
                assert json.loads(c.recv(timeout=1))["type"] != "error"


def post(server, path, key):
    request = urllib.request.Request(f"{server.url}{path}", method="POST", headers={"Authorization": f"Token {key}"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.status


def closed_with(ws):
    """The close code the server ended `ws` with, waiting up to TIMEOUT."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=TIMEOUT)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_logout_closes_the_chat_sockets_opened_with_that_token(worker_server, people):
    customer, order, agent, _ = people
    one, two = worker_server(), worker_server()  # the logout reaches every server process
    key = token(customer)
    with (
        open_chat(one, order.pk, token_query=key, v2=True) as by_query,
        open_chat(two, order.pk, token_header=key) as by_header,
        open_chat(one, order.pk, user=customer, v2=True) as by_session,
        open_chat(two, order.pk, token_query=token(agent), v2=True) as agents_token,
    ):
        for ws in (by_query, by_session, agents_token):
            recv(ws, "history")
        recv(by_header, "chat_join")

        assert post(one, "/mobile-api/logout/", key) == 204

        assert closed_with(by_query) == CLOSE_TOKEN_REVOKED
        assert closed_with(by_header) == CLOSE_TOKEN_REVOKED
        # The session and someone else's token are not affected.
        by_session.send(json.dumps({"type": "message", "message": "still here"}))
        assert recv(by_session, "chat_message")["message"] == "still here"
        assert recv(agents_token, "chat_message")["message"] == "still here"
    # The revoked token opens nothing any more.
    assert refused(one, order.pk, token_query=key) == 403
    for server in (one, two):
        assert key not in server.log() and secret_hash(key) not in server.log()
        assert "Traceback" not in server.log()
