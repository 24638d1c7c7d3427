"""Limits where the bytes arrive, against a real worker (booktime.serve):
WebSocket frame size, request headers' size and time, sockets per user, a
client that stops reading and one that sends faster than it is served
(main/infra/server.py, docs/operations.md)."""

import contextlib
import json
import os
import socket
import time

import pytest
from django.db import connection, transaction
from websockets.exceptions import ConnectionClosed

from harness import wire
from main import factories, models
from main.tests.clients import TIMEOUT, ChatClient, open_chat, recv, token, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Clients kept outside a `with` block: the sockets are read until the server closes them.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]


def rss_kib(server):
    """The worker process's resident memory, in KiB."""
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_request(server, data, timeout=TIMEOUT):
    """Send `data` on a fresh connection; everything the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(data)
        return read_until_closed(conn, timeout)


def read_until_closed(conn, timeout):
    conn.settimeout(timeout)
    received = b""
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:  # closed with our bytes unread: ended all the same
            return received
        if not chunk:
            return received
        received += chunk


def raw_websocket(server, order_id, key, rcvbuf=None):
    return wire.raw_websocket(server.port, order_id, key, rcvbuf, TIMEOUT)


# --- WebSocket frames ------------------------------------------------------------


def test_a_frame_over_the_chat_limit_closes_the_socket_with_1009(worker_server, people):
    customer, order, _, _ = people
    server = worker_server()
    ws = open_chat(server, order.pk, token_query=token(customer), v2=True)
    recv(ws, "history")
    ws.send(json.dumps({"type": "message", "message": "x" * 20000}))  # over the 16 KiB frame limit
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=TIMEOUT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # The customer's next socket works.
    ChatClient(server, order.pk, customer).say("still here")


def test_oversized_frames_do_not_grow_the_worker(worker_server, people):
    """Frames of 8 MiB from several sockets of one customer: each is refused
    as its header arrives, before its body is buffered."""
    customer, order, _, _ = people
    server = worker_server()
    ChatClient(server, order.pk, customer).ws.close()  # the worker has served a chat once
    before = rss_kib(server)
    for _ in range(20):
        conn = raw_websocket(server, order.pk, token(customer))
        conn.sendall(wire.oversized_frame_header(8 * 1024 * 1024))
        with contextlib.suppress(OSError):  # the server may have closed it already
            conn.sendall(os.urandom(1024 * 1024))  # the first MiB of its body, if the server still reads
        read_until_closed(conn, TIMEOUT)  # the server ends it (a timeout here fails the test)
        conn.close()
    grown = rss_kib(server) - before
    assert grown < 40 * 1024, f"the worker grew by {grown} KiB"


# --- Request headers ------------------------------------------------------------


def test_huge_request_headers_are_refused_with_431(worker_server):
    server = worker_server()
    answer = raw_request(server, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * 200_000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_headers_within_the_limit_are_served(worker_server):
    server = worker_server()
    answer = raw_request(
        server,
        b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Filler: " + b"a" * 8000 + b"\r\nConnection: close\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]


def test_headers_that_never_finish_are_answered_408_and_closed(worker_server):
    server = worker_server({"SERVER_HEADER_TIMEOUT": "1"})
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        answer = read_until_closed(conn, TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert time.monotonic() - started < 4


def test_a_connection_that_sends_nothing_is_closed(worker_server):
    server = worker_server({"SERVER_HEADER_TIMEOUT": "1"})
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        assert read_until_closed(conn, TIMEOUT) == b""
    assert time.monotonic() - started < 4


def test_a_slow_body_after_headers_is_not_cut_by_the_header_timeout(worker_server, people):
    """The header timeout is for headers: a chat page request that arrives
    slowly but whose headers came in time is answered."""
    server = worker_server({"SERVER_HEADER_TIMEOUT": "1"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"GET /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.5)  # within the timeout: the rest of the headers comes later
        conn.sendall(b"Connection: close\r\n\r\n")
        assert read_until_closed(conn, TIMEOUT).startswith(b"HTTP/1.1 200")


# --- Sockets per user -----------------------------------------------------------


def test_a_user_may_open_only_so_many_chat_sockets(worker_server, people):
    customer, order, _, _ = people
    server = worker_server({"CHAT_MAX_SOCKETS_PER_USER": "3"})
    first = [ChatClient(server, order.pk, customer) for _ in range(3)]
    extra = open_chat(server, order.pk, token_query=token(customer), v2=True)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            extra.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 4429
    # Another user is not held back, and a closed socket frees its place.
    other = factories.OrderFactory()
    ChatClient(server, other.pk, other.user)
    first[0].ws.close()
    wait_for(lambda: _opens(server, order.pk, customer), TIMEOUT)


def test_an_employee_may_follow_more_chats_than_a_customer(worker_server, people):
    _, _, agent, _ = people
    server = worker_server({"CHAT_MAX_SOCKETS_PER_USER": "1", "CHAT_MAX_SOCKETS_PER_EMPLOYEE": "3"})
    orders = [factories.OrderFactory() for _ in range(4)]
    following = [ChatClient(server, order.pk, agent) for order in orders[:3]]
    extra = open_chat(server, orders[3].pk, token_query=token(agent), v2=True)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            extra.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 4429 and len(following) == 3


def _opens(server, order_id, user):
    ws = open_chat(server, order_id, token_query=token(user), v2=True)
    try:
        return json.loads(ws.recv(timeout=TIMEOUT))["type"] == "ready"
    except ConnectionClosed:
        return False
    finally:
        ws.close()


# --- Keepalive pings ----------------------------------------------------------------


PING = 0x9


def test_a_client_heard_from_is_not_pinged_and_a_silent_one_is(worker_server, people):
    """A chat client's heartbeats prove it is there: the server pings only
    a socket it has not heard from for the ping interval, and one that
    falls silent once that interval has passed."""
    customer, order, _, _ = people
    server = worker_server({"WS_PING_INTERVAL": "2", "WS_PING_TIMEOUT": "5"})
    talking = wire.ServerFrames(raw_websocket(server, order.pk, token(customer)))
    silent = wire.ServerFrames(raw_websocket(server, order.pk, token(customer)))
    heard = []
    for _ in range(15):  # 4.5 s, two ping intervals
        talking.conn.sendall(wire.client_frame(b'{"type":"heartbeat"}'))
        heard += talking.opcodes(0.3)
    assert PING not in heard
    assert PING in silent.opcodes(TIMEOUT)
    assert PING in talking.opcodes(TIMEOUT)  # now silent too


# --- A client that stops reading ------------------------------------------------


def test_a_client_that_stops_reading_is_closed_and_its_room_told(worker_server, people):
    customer, order, agent, _ = people
    # Long messages to page through: each history page is about 100 KB.
    models.ChatMessage.objects.bulk_create(
        models.ChatMessage(order=order, seq=n + 1, user=agent, text=f"{n} " + "w" * 1990) for n in range(50)
    )
    server = worker_server({"SERVER_SEND_TIMEOUT": "2", "WS_PING_INTERVAL": "1", "WS_PING_TIMEOUT": "1"})
    watcher = ChatClient(server, order.pk, agent)
    stuck = raw_websocket(server, order.pk, token(customer), rcvbuf=4096)
    watcher.until("chat_join", username="Jane Doe")
    before = rss_kib(server)
    # It asks for page after page and reads none of them.
    for _ in range(25):
        stuck.sendall(wire.client_frame(json.dumps({"type": "history", "limit": 50}).encode()))
    started = time.monotonic()
    watcher.until("chat_leave", timeout=15, username="Jane Doe")
    assert time.monotonic() - started < 10
    grown = rss_kib(server) - before
    assert grown < 40 * 1024, f"the worker grew by {grown} KiB"
    stuck.close()
    # The chat goes on for the others, and the log has no error.
    watcher.say("anyone there?")
    watcher.until("chat_message", ref="anyone there?")
    assert " ERROR " not in server.log() and "Traceback" not in server.log()


# --- A client that sends faster than it is served -------------------------------


def test_a_client_whose_messages_wait_is_no_longer_read(worker_server, people):
    """While its chat cannot store a message (the table locked against
    writes), a socket's next frames wait for its consumer. Past a few of
    them the worker stops reading the socket: what the client sends backs up
    in its own buffers, not in the worker. Once the lock is gone the chat
    goes on."""
    customer, order, agent, _ = people
    server = worker_server()
    watcher = ChatClient(server, order.pk, agent)
    hasty = raw_websocket(server, order.pk, token(customer))
    watcher.until("chat_join", username="Jane Doe")
    hasty.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    hasty.settimeout(2.0)
    frame = wire.client_frame(json.dumps({"type": "message", "message": "m" * 1000}).encode())
    sent = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '5s'")
        cursor.execute(f"LOCK TABLE {models.ChatMessage._meta.db_table} IN SHARE MODE")
        # Held for a few seconds, well within the chat writer's own timeout.
        with pytest.raises(TimeoutError):
            # A worker reading on would take all 5,000 (5 MB) into its memory;
            # one that stops holds a read's worth, and the kernel's buffers the rest.
            while sent < 5000:
                hasty.sendall(frame)
                sent += 1
    assert sent < 1000, f"{sent} frames went in before the worker stopped reading"
    watcher.until("chat_message", message="m" * 1000)  # the first, stored once the lock is gone
    hasty.close()
    watcher.until("chat_leave", username="Jane Doe")
    assert " ERROR " not in server.log() and "Traceback" not in server.log()
