"""Faults, end to end on real worker processes: Redis restarted mid-chat, a
worker killed mid-chat, a client gone without a close, a hanging courier, a
slow reader. Each test starts its
own throwaway Redis (a port of its own, no persistence; never the shared
one) and its own server processes, and waits on events with deadlines."""

import contextlib
import json
import socket
import struct
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis as redis_client
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import connect

from harness import servers
from main import models
from main.chat.protocol import V2_SUBPROTOCOL
from main.infra.answers import CLOSE_TRY_AGAIN_LATER

from .. import mobile_servers
from ..clients import ChatClient, api, converse, open_chat, token, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # Client keeps its socket across reconnects, outside a `with` block.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

TIMEOUT = 5


def stored_seqs(order):
    return list(models.ChatMessage.objects.filter(order=order).order_by("seq").values_list("seq", flat=True))


def present(server, agent):
    """{order id: emails present}, from the dashboard's stream (one event);
    None when the server answers 503 (presence unavailable)."""
    request = urllib.request.Request(
        f"{server.url}/customer-service/notify/?nopoll&format=v2", headers={"Authorization": f"Token {token(agent)}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code == 503:
            return None
        raise
    data = json.loads(body.removeprefix(b"data: "))
    return {c["order_id"]: sorted(p["email"] for p in c["present"]) for c in data["chats"]}


def inbox_status(server, agent):
    """The status the inbox stream answers with (its response left unread)."""
    request = urllib.request.Request(
        f"{server.url}/customer-service/inbox/", headers={"Authorization": f"Token {token(agent)}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_redis_restart_mid_chat_closes_sockets_that_reconnect_and_resume(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    redis = throwaway_redis()
    server = worker_server({"REDIS_URL": redis.url})
    both = sorted([customer.email, agent.email])
    c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)
    for client in (c, a):
        client.send({"type": "heartbeat"})
    c.say("before")
    c.until("chat_message", ref="before")
    a.until("chat_message", message="before")
    wait_for(lambda: present(server, agent) == {order.pk: both}, TIMEOUT)

    redis.stop()  # killed: every key (presence, group memberships, queues) is gone
    lost = time.monotonic()
    # A message sent as Redis goes: the server stores it and says so, refuses
    # it with an error, or closes the socket first (then the client resumes
    # to learn whether it was stored). Never a success for something unstored.
    with contextlib.suppress(ConnectionClosed):
        c.say("as Redis goes")
    # Every chat socket is closed with 4503 (try again later): its channel
    # layer's subscription broke, and what was sent meanwhile never came.
    assert c.closed_code() == CLOSE_TRY_AGAIN_LATER
    assert a.closed_code() == CLOSE_TRY_AGAIN_LATER
    closed_after = time.monotonic() - lost
    # While Redis is down: no new socket (the handshake is accepted and closed
    # at once with 4503, nothing is kept that could not be delivered), and the
    # dashboard answers 503.
    with open_chat(server, order.pk, token_query=token(customer), v2=True) as refused:
        with pytest.raises(ConnectionClosed) as closed:
            refused.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == CLOSE_TRY_AGAIN_LATER
    assert present(server, agent) is None
    assert inbox_status(server, agent) == 503

    redis.start()  # empty, on the same port
    back = time.monotonic()
    # The clients reconnect (with back-off) and resume from their seq.
    for client in (c, a):
        wait_for(lambda client=client: reconnected(client, server), 10, step=0.2)
    reconnect_took = time.monotonic() - back
    for client in (c, a):
        client.send({"type": "heartbeat"})
    presence_took = wait_for(lambda: present(server, agent) == {order.pk: both}, TIMEOUT)
    converse(c, "after", a, "welcome back")

    stored = stored_seqs(order)
    texts = list(models.ChatMessage.objects.filter(order=order).order_by("seq").values_list("text", flat=True))
    assert texts[0] == "before" and texts[-2:] == ["after", "welcome back"]
    # The message sent as Redis went: stored only if the server said so (or
    # said nothing before the close, and then the resume brought it).
    answer = c.answers.get("as Redis goes")
    if answer == "stored":
        assert "as Redis goes" in texts
    elif answer is not None:
        assert "as Redis goes" not in texts, f"stored, yet answered {answer}"
    # Nothing stored was lost, nothing came twice.
    assert sorted(c.seqs) == stored and sorted(a.seqs) == stored
    assert len(set(c.seqs)) == len(c.seqs) and len(set(a.seqs)) == len(a.seqs)
    print(
        f"\nRedis restart: sockets closed 4503 in {closed_after:.3f}s, reconnected in {reconnect_took:.3f}s, "
        f"presence back {presence_took:.3f}s after the heartbeat; stored {texts}; "
        f"answer to the one sent as Redis went: {answer}"
    )


def test_while_redis_is_down_a_message_sent_through_the_api_is_answered_503_and_not_stored(
    worker_server, throwaway_redis, people
):
    customer, order, _, _ = people
    redis = throwaway_redis()
    server = worker_server({"REDIS_URL": redis.url})
    path = f"/mobile-api/conversations/{order.pk}/messages/"
    assert api(server, "POST", path, customer, {"message": "before"})[0] == 201
    redis.stop()
    # The send throttle counts in Redis: without it the send is refused, as
    # the chat socket refuses with 4503, rather than taken unthrottled.
    status, answer = api(server, "POST", path, customer, {"message": "while Redis is down"})
    assert status == 503 and answer["code"] == "unavailable"
    assert "Traceback" not in server.log()
    redis.start()  # empty, on the same port: the worker's pooled connections are dead
    assert api(server, "POST", path, customer, {"message": "after"})[0] == 201
    texts = list(models.ChatMessage.objects.filter(order=order).order_by("seq").values_list("text", flat=True))
    assert texts == ["before", "after"]


def test_a_broken_subscription_closes_the_sockets_which_resume(worker_server, throwaway_redis, people):
    """Redis drops the channel layer's subscription connection (CLIENT KILL)
    while Redis itself stays up: whatever was published until it is back is
    lost, so the sockets are closed (4503), and resume."""
    customer, order, agent, _ = people
    redis = throwaway_redis()
    server = worker_server({"REDIS_URL": redis.url})
    c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)
    c.say("before")
    a.until("chat_message", message="before")
    admin = redis_client.Redis.from_url(redis.url, socket_timeout=2)
    assert admin.client_kill_filter(_type="pubsub") == 1  # the worker's one subscription
    assert c.closed_code() == CLOSE_TRY_AGAIN_LATER
    assert a.closed_code() == CLOSE_TRY_AGAIN_LATER
    for client in (c, a):
        client.connect(server, resume=True)
    a.say("after")
    c.until("chat_message", message="after")
    a.until("chat_message", ref="after")
    assert sorted(c.seqs) == stored_seqs(order) == sorted(a.seqs)
    admin.close()


def reconnected(client, server):
    try:
        client.connect(server, resume=True)
        return True
    except (InvalidHandshake, ConnectionClosed, OSError, TimeoutError):
        return False


def test_a_killed_worker_s_client_resumes_on_another_with_no_loss_or_duplicate(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    redis = throwaway_redis()
    one, two = worker_server({"REDIS_URL": redis.url}), worker_server({"REDIS_URL": redis.url})
    c, a = ChatClient(one, order.pk, customer), ChatClient(two, order.pk, agent)
    c.say("hello from worker one")
    c.until("chat_message", ref="hello from worker one")
    a.until("chat_message", message="hello from worker one")
    a.say("hello from worker two")
    a.until("chat_message", ref="hello from worker two")
    c.until("chat_message", message="hello from worker two")

    servers.kill(one)  # SIGKILL: no close frame, no chat_leave, nothing tidied
    killed = time.monotonic()
    assert c.closed_code() is None  # the connection just drops (1006)
    noticed = time.monotonic() - killed
    for n in range(3):  # the agent, on the live worker, goes on
        a.say(f"while you were away {n}")
        a.until("chat_message", ref=f"while you were away {n}")
    had = list(c.seqs)

    c.connect(two, resume=True)  # the client reconnects (to the other worker) from its seq
    resumed = c.seqs[len(had) :]
    converse(a, "after the return", c, "thanks")

    stored = stored_seqs(order)
    assert len(stored) == 7
    assert resumed == stored[2:5]  # exactly what it missed, in order
    assert c.seqs == stored and a.seqs == stored  # nothing lost, nothing twice
    print(f"\nWorker killed: client noticed in {noticed:.3f}s, resumed seqs {resumed} on the other worker")


def test_a_client_gone_without_a_close_leaves_after_10_s_and_nothing_stays(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    redis = throwaway_redis()
    server = worker_server({"REDIS_URL": redis.url})
    layer = redis_client.Redis.from_url(redis.url, socket_timeout=2)
    c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)

    def sockets_subscribed():  # the channel layer subscribes to each socket's own channel
        # ...and to the worker's listener for access changes (main/infra/access_changes.py).
        return len(layer.pubsub_channels(f"{settings.CHANNEL_LAYER_PREFIX}specific.*")) - 1

    assert sockets_subscribed() == 2  # the two sockets' (this Redis serves this server alone)
    beat = time.monotonic()  # the customer's last heartbeat
    c.send({"type": "heartbeat"})
    wait_for(lambda: customer.email in present(server, agent).get(order.pk, []), TIMEOUT)

    # The network drops the client: a TCP reset, no WebSocket close frame.
    raw = c.ws.socket
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()

    # The server notices: the consumer ends, its group membership is gone and
    # the other party is told.
    left = a.until("chat_leave", username="Jane Doe")
    assert left["mine"] is False
    wait_for(lambda: sockets_subscribed() == 1, TIMEOUT)  # its channel is gone, the agent's stays
    wait_for(lambda: f"Chat closed: user {customer.pk}, order {order.pk}" in server.log(), TIMEOUT)
    consumer_gone = time.monotonic() - beat

    # Presence is the heartbeat's 10 s, whatever the socket does: still there...
    assert customer.email in present(server, agent)[order.pk]
    # ...and gone 10 s after the last heartbeat.
    wait_for(lambda: customer.email not in present(server, agent).get(order.pk, []), 12, step=0.1)
    presence_ended = time.monotonic() - beat
    assert 9.8 <= presence_ended <= 11.5
    layer.close()
    print(
        f"\nClient vanished: consumer gone in {consumer_gone:.3f}s, "
        f"presence ended {presence_ended:.2f}s after its heartbeat"
    )


def test_a_hanging_courier_does_not_slow_the_chat(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    courier_timeout = 4.0
    standin = servers.courier_standin()
    try:
        mobile_servers.configure(standin, mode="hang")  # accepts, never answers
        redis = throwaway_redis()
        server = worker_server(
            {
                "REDIS_URL": redis.url,
                "COURIER_API_URL": f"{standin.url}/",
                "COURIER_API_TIMEOUT": str(courier_timeout),
            }
        )
        c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)
        url = f"{server.url}/mobile-api/my-orders/{order.pk}/tracker/"
        headers = mobile_servers.token_header(token(customer))
        with ThreadPoolExecutor(20) as pool:
            started = time.monotonic()
            trackers = [pool.submit(mobile_servers.fetch, "GET", url, headers=headers) for _ in range(20)]
            # Once the courier holds all 20, chat.
            waited = mobile_servers.fetch("GET", f"{standin.url}/control/wait?order_id={order.pk}&hits=20&timeout=5")
            assert waited.status == 200
            trips = []
            for n in range(10):  # 5 messages each way: within the rate limit's burst
                sender, receiver = (c, a) if n % 2 == 0 else (a, c)
                sent = time.monotonic()
                sender.say(f"round trip {n}")
                receiver.until("chat_message", message=f"round trip {n}")
                trips.append(time.monotonic() - sent)
                sender.until("chat_message", ref=f"round trip {n}")
            chatted = time.monotonic() - started
            answers = [f.result() for f in trackers]
        assert chatted < courier_timeout  # every round trip while the 20 hung
        assert max(trips) < 0.5, trips
        assert [answer.status for answer in answers] == [504] * 20
        assert max(answer.elapsed for answer in answers) < courier_timeout + 1.5
        assert mobile_servers.hits(standin, order.pk) >= 20
    finally:
        servers.kill(standin)  # its hanging handlers would hold up a graceful stop
        standin.stop()
    print(
        f"\nCourier hanging: 20 trackers held, 10 chat round trips in {chatted:.3f}s "
        f"(slowest {max(trips) * 1000:.1f} ms); trackers answered 504 in at most "
        f"{max(answer.elapsed for answer in answers):.2f}s"
    )


def test_a_slow_reader_stalls_no_one_and_resumes_what_it_missed(worker_server, throwaway_redis, people):
    customer, order, agent, _ = people
    redis = throwaway_redis()
    size, batches, batch = 8000, 20, 50  # 8 MB to each reader: more than the kernel's socket buffers hold
    server = worker_server(
        {
            "REDIS_URL": redis.url,
            "CHAT_RATE_BURST": "100000",
            "CHAT_RATE_PER_SECOND": "100000",
            "CHAT_MAX_MESSAGE_CHARS": str(size + 100),
            "CHAT_MAX_FRAME_BYTES": str(4 * size),
        }
    )
    c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)
    # The customer's other device stops reading: a tiny receive buffer, and
    # the client library stops reading the socket once 2 frames wait.
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", server.port))
    url = f"{server.ws_url}/ws/customer-service/{order.pk}/?token={token(customer)}"
    slow = ChatClient(server, order.pk, customer, ws=connect(url, sock=raw, subprotocols=[V2_SUBPROTOCOL], max_queue=2))

    rss_before = rss_mb(server)
    probes = []
    for n in range(batches):
        for m in range(batch):
            a.send({"type": "message", "message": f"{n}.{m} " + "x" * size, "ref": f"{n}.{m}"})
        sent = time.monotonic()
        c.say(f"probe {n}")  # the room goes on: the agent hears the customer at once
        a.until("chat_message", message=f"probe {n}", timeout=10)
        probes.append(time.monotonic() - sent)
        c.until("chat_message", ref=f"probe {n}", timeout=10)
    # Bounded: each probe waits only behind the agent's own 50 large echoes.
    assert max(probes) < 3.0, probes
    a.until("chat_message", ref=f"{batches - 1}.{batch - 1}", timeout=30)  # all stored
    stored = stored_seqs(order)
    assert len(stored) == batches * (batch + 1)
    for client in (c, a):  # the readers got everything, once
        deadline = time.monotonic() + 30
        while client.have_all_up_to < stored[-1]:
            client.next(timeout=max(0.01, deadline - time.monotonic()))
        client.quiet(0.5)
        assert sorted(client.seqs) == stored

    rss_held = rss_mb(server)  # the worker holds what the slow reader has not read
    # The slow reader reads again: what it missed comes, or it resumes it.
    drained = time.monotonic()
    resumed = False
    with contextlib.suppress(TimeoutError):
        while slow.have_all_up_to < stored[-1]:
            slow.next(timeout=3)
    missing = sorted(set(stored) - set(slow.seqs))  # live events it never got
    while slow.have_all_up_to < stored[-1]:  # (a resume replays at most 500)
        slow.send({"type": "resume", "after_seq": slow.have_all_up_to})
        slow.until("resumed", timeout=30)
        resumed = True
    caught_up = time.monotonic() - drained
    assert sorted(set(slow.seqs)) == stored
    received, twice = len(slow.seqs), len(slow.seqs) - len(set(slow.seqs))
    # And a resume on that socket replays exactly from where it asks.
    slow.seqs = []
    slow.send({"type": "resume", "after_seq": stored[-10]})
    assert slow.until("resumed")["last_seq"] == stored[-1]
    assert slow.seqs == stored[-9:]
    for client in (c, a, slow):
        client.ws.close()
    print(
        f"\nSlow reader: {batches} probes while {batches * batch} messages of {size} chars went out, "
        f"slowest probe {max(probes) * 1000:.0f} ms; slow reader caught up in {caught_up:.2f}s "
        f"({received} messages, {twice} twice, resume needed: {resumed}, "
        f"missed live: {len(missing)}); "
        f"worker RSS {rss_before:.0f} MB before, {rss_held:.0f} MB holding the slow reader's backlog"
    )


def rss_mb(server):
    with open(f"/proc/{server.process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
