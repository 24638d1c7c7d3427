"""How a real worker reads a chat client's WebSocket frames: a chunk that is
one small text frame is taken whole (main/infra/server.py), and a heartbeat
so read while the consumer waits is handled there and then; everything else
goes through the `websockets` parser and the consumer's receive. Whichever
way, the same messages in the same order, the same counts, and the same
1002 for what breaks the protocol. The frames are written as raw bytes on
the client's socket, chunk by chunk."""

import json
import os
import socket

import pytest
import redis
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.frames import apply_mask

from main import models
from main.chat.limits import STRIKE_LIMIT
from main.presence import redis_store

from ..clients import TIMEOUT, open_chat, recv, token, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TEXT, CONTINUATION = 0x1, 0x0
FIN, RSV1 = 0x80, 0x40


def frame(first_byte, payload, masked=True):
    """A client's frame with a payload under 126 bytes."""
    if not masked:
        return bytes([first_byte, len(payload)]) + payload
    key = os.urandom(4)
    return bytes([first_byte, 0x80 | len(payload)]) + key + apply_mask(payload, key)


def message(text):
    return json.dumps({"type": "message", "message": text}).encode()


READ = None  # in a list of chunks: the server has read what came before (a ping answered)


def write(ws, *chunks):
    """Each chunk in a write of its own on the client's socket."""
    ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for chunk in chunks:
        if chunk is READ:
            assert ws.ping().wait(TIMEOUT)
        else:
            ws.socket.sendall(chunk)


def test_frames_joined_split_or_fragmented_arrive_whole_and_in_order(default_worker, people):
    customer, order, agent, _ = people
    with open_chat(default_worker, order.pk, token_query=token(agent), v2=True) as a:
        recv(a, "history")
        split = frame(FIN | TEXT, message("split"))
        first, rest = message("fragmented")[:10], message("fragmented")[10:]
        write(
            a,
            frame(FIN | TEXT, message("one")) + frame(FIN | TEXT, message("two")),  # two in one chunk
            split[:5],  # a frame over two chunks
            split[5:],
            frame(TEXT, first),  # a message in two frames, read apart
            READ,
            frame(FIN | CONTINUATION, rest),
            READ,
            frame(FIN | TEXT, message("small")),  # a chunk that is one small frame
        )
        shown = [recv(a, "chat_message")["message"] for _ in range(5)]
    assert shown == ["one", "two", "split", "fragmented", "small"]
    assert list(models.ChatMessage.objects.order_by("seq").values_list("text", flat=True)) == shown


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([frame(FIN | RSV1 | TEXT, message("x"))], id="reserved-bit"),
        pytest.param([frame(FIN | TEXT, message("x"), masked=False)], id="unmasked"),
        pytest.param(
            [frame(TEXT, b'{"type": '), READ, frame(FIN | TEXT, message("x"))], id="text-inside-a-fragmented-one"
        ),
        pytest.param([frame(FIN | CONTINUATION, message("x"))], id="continuation-of-nothing"),
    ],
)
def test_a_frame_that_breaks_the_protocol_closes_the_socket_with_1002(default_worker, people, chunks):
    customer, order, agent, _ = people
    with open_chat(default_worker, order.pk, token_query=token(agent), v2=True) as a:
        recv(a, "history")
        write(a, *chunks)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                a.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1002
    assert not models.ChatMessage.objects.exists()


def beat_alone(ws, order, user):
    """A heartbeat the server reads alone, as the consumer waits: written
    once the frames before it have been read (a ping answered), and nothing
    more until it has reached presence in Redis."""
    expiry, member = redis_store.keys()[0], redis_store.member(order.pk, user.email)
    with redis.Redis.from_url(settings.REDIS_URL) as client:
        before = client.zscore(expiry, member)
        write(ws, READ, frame(FIN | TEXT, b'{"type":"heartbeat"}'))
        wait_for(lambda: client.zscore(expiry, member) != before, TIMEOUT)


def test_a_heartbeat_taken_as_it_is_read_starts_the_strike_count_again(worker_server, people):
    customer, order, agent, _ = people
    worker = worker_server({"CHAT_RATE_BURST": "100"})  # the refusals below are not rate-limited
    refused = frame(FIN | TEXT, b'{"type": "nonsense"}')
    with open_chat(worker, order.pk, token_query=token(agent), v2=True) as a:
        recv(a, "history")
        for _ in range(2):
            for _ in range(STRIKE_LIMIT - 1):
                write(a, refused)
                assert recv(a, "error")["code"] == "unknown_type"
            beat_alone(a, order, agent)
        write(a, frame(FIN | TEXT, message("still here")))
        assert recv(a, "chat_message")["message"] == "still here"
        for _ in range(STRIKE_LIMIT):
            write(a, refused)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                a.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_a_heartbeat_over_the_frame_rate_is_refused_whichever_way_it_is_read(worker_server, people):
    customer, order, agent, _ = people
    worker = worker_server({"CHAT_RATE_PER_SECOND": "0.01"})  # the frame bucket does not refill meanwhile
    with open_chat(worker, order.pk, token_query=token(agent), v2=True) as a:
        ready = recv(a, "ready")
        recv(a, "history")
        burst = ready["limits"]["rate_burst"] * 6  # main.chat.limits.FRAME_RATE_FACTOR
        write(a, *[frame(FIN | TEXT, b'{"type":"heartbeat"}') for _ in range(burst)])
        write(a, READ, frame(FIN | TEXT, b'{"type":"heartbeat"}'))
        assert recv(a, "error")["code"] == "rate_limited"
