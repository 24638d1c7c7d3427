"""Fault: PostgreSQL unreachable for a while, end to end. A throwaway
PostgreSQL cluster of its own (a port of its own; never the shared one)
holds a copy of the test database; a worker runs on it and on a
throwaway Redis; the cluster is crashed (`pg_ctl stop -m immediate`) and
started again under open sockets, new handshakes and HTTP requests."""

import json
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis as redis_client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from harness import servers
from main.chat.protocol import V2_SUBPROTOCOL
from main.infra.answers import CLOSE_TRY_AGAIN_LATER
from main.presence.redis_store import keys as presence_keys

from ..clients import ChatClient, open_chat, session_cookie, token, wait_for

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

TIMEOUT = 5
POOL_TIMEOUT = 3.0  # the worker's DATABASE_POOL_TIMEOUT: the longest any one request waits for PostgreSQL
BOUND = POOL_TIMEOUT + 2.0  # every answer while it is down comes within this


@pytest.fixture
def throwaway_postgres():
    pg = servers.PostgresServer()
    yield pg
    pg.close()


def copy_test_database(pg, name="booktime"):
    """The suite's test database (schema and rows: the people, their tokens
    and sessions) copied into the throwaway cluster as `name`."""
    source = servers.test_database_url()
    subprocess.run([pg.BIN / "createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", name], check=True)
    dump = subprocess.run(
        [pg.BIN / "pg_dump", "--no-owner", "--no-privileges", "-d", source], check=True, capture_output=True
    )
    subprocess.run(
        [pg.BIN / "psql", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.url(name)],
        input=dump.stdout,
        check=True,
        capture_output=True,
    )
    return pg.url(name)


def stored(url, order_id):
    """(seq, text) of the order's stored messages, read from the cluster itself."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT seq, text FROM main_chatmessage WHERE order_id = %s ORDER BY seq", [order_id])
        return rows.fetchall()


def http(method, url, headers=None, body=None, timeout=15):
    """(status, headers, body, seconds) of one request; headers are looked up
    case-insensitively, as HTTP names them."""
    request = urllib.request.Request(url, method=method, headers=headers or {}, data=body)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read(), time.monotonic() - started


def handshake(server, order_id, token=None, cookie=None):
    """What a new v2 chat handshake (by token or session cookie) gets:
    ("accepted", ws) when the chat opens (a `ready` event), ("closed", code)
    when the server closes it at once, ("refused", status) when the handshake
    fails; and how long that took."""
    url = f"{server.ws_url}/ws/customer-service/{order_id}/" + (f"?token={token}" if token else "")
    headers = {"Cookie": f"sessionid={cookie}"} if cookie else {}
    started = time.monotonic()
    try:
        ws = connect(url, additional_headers=headers, subprotocols=[V2_SUBPROTOCOL], open_timeout=2 * BOUND, proxy=None)
    except InvalidStatus as error:
        return ("refused", error.response.status_code), time.monotonic() - started
    try:
        event = json.loads(ws.recv(timeout=2 * BOUND))
        assert event["type"] == "ready", event
        return ("accepted", ws), time.monotonic() - started
    except ConnectionClosed as closed:
        return ("closed", closed.rcvd.code if closed.rcvd else None), time.monotonic() - started


def test_postgres_down_then_back_clean_errors_and_full_recovery(worker_server, throwaway_postgres, people):
    customer, order, agent, _ = people
    pg = throwaway_postgres
    cookie = session_cookie(agent)  # the agent's browser session, copied with the database
    db_url = copy_test_database(pg)
    redis, started = servers.RedisServer(), []
    try:
        server = worker_server(
            {"DATABASE_URL": db_url, "REDIS_URL": redis.url, "DATABASE_POOL_TIMEOUT": str(POOL_TIMEOUT)}
        )
        started.append(server)
        run_outage(server, pg, redis, db_url, customer, order, agent, cookie)
    finally:
        for process in (*started, redis):  # the workers first: they would log Redis going
            process.stop()


def run_outage(server, pg, redis, db_url, customer, order, agent, cookie):
    ctoken = token(customer)
    rest = {"Authorization": f"Token {ctoken}"}
    c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)
    v1 = open_chat(server, order.pk, token_query=ctoken)
    c.say("before")
    c.until("chat_message", ref="before")
    a.until("chat_message", message="before")
    # Joins first (its own, and others' still on their way when it joined).
    while (event := json.loads(v1.recv(timeout=TIMEOUT)))["type"] == "chat_join":
        pass
    assert event == {"type": "chat_message", "username": "Jane Doe", "message": "before"}
    assert http("GET", f"{server.url}/mobile-api/my-orders/", rest)[0] == 200

    pg.stop()  # a crash: every pooled connection is dead, new ones are refused
    down = time.monotonic()

    # Open sockets: each message (both people, at once) is answered with an
    # `error` carrying its ref, code `unavailable`, within the bound; none
    # is acknowledged as a chat_message.
    sent = {}
    for client, prefix in ((c, "c"), (a, "a")):
        for n in range(2):
            ref = f"{prefix} while down {n}"
            client.say(ref)
            sent[ref] = (client, time.monotonic())
    answered = {}
    for ref, (client, at) in sent.items():
        error = client.until("error", ref=ref, timeout=2 * BOUND)
        answered[ref] = time.monotonic() - at
        assert error["code"] == "unavailable" and error["retry_after"] > 0, error
    assert max(answered.values()) < BOUND, answered
    assert not any(client.answers.get(ref) == "stored" for ref, (client, _) in sent.items())
    # A v1 client's message is dropped: no echo, so it is never shown as sent.
    v1.send(json.dumps({"type": "message", "message": "v1 while down"}))

    # Heartbeats and typing need Redis only: they go on, on the same sockets.
    layer = redis_client.Redis.from_url(redis.url, socket_timeout=2)
    member = json.dumps([order.pk, customer.email], separators=(",", ":"))
    expiry_before = layer.zscore(presence_keys()[0], member) or 0
    c.send({"type": "heartbeat"})
    wait_for(lambda: (layer.zscore(presence_keys()[0], member) or 0) > expiry_before, TIMEOUT)
    layer.close()
    a.send({"type": "typing"})
    c.until("typing", username="Adam Ford")

    # New handshakes, by token and by session cookie: accepted and closed at
    # once with 4503 (try again later), within the bound.
    (outcome, took_token) = handshake(server, order.pk, token=ctoken)
    assert outcome == ("closed", CLOSE_TRY_AGAIN_LATER), outcome
    (outcome, took_session) = handshake(server, order.pk, cookie=cookie)
    assert outcome == ("closed", CLOSE_TRY_AGAIN_LATER), outcome
    assert max(took_token, took_session) < BOUND

    # HTTP: the REST API and the tracker answer 503 JSON with Retry-After; a
    # page answers an error page. None hangs.
    answers = {}
    with ThreadPoolExecutor(4) as pool:
        futures = {
            "my-orders": pool.submit(http, "GET", f"{server.url}/mobile-api/my-orders/", rest),
            "login": pool.submit(
                http,
                "POST",
                f"{server.url}/mobile-api/auth/",
                {"Content-Type": "application/json"},
                json.dumps({"username": customer.email, "password": "abcabcabc"}).encode(),
            ),
            "tracker": pool.submit(http, "GET", f"{server.url}/mobile-api/my-orders/{order.pk}/tracker/", rest),
            "page": pool.submit(http, "GET", f"{server.url}/my-orders/", {"Cookie": f"sessionid={cookie}"}),
        }
        answers = {name: future.result() for name, future in futures.items()}
    for name in ("my-orders", "login", "tracker"):
        status, headers, body, _ = answers[name]
        assert status == 503, (name, status, body)
        assert json.loads(body)["code"] == "unavailable" and int(headers["Retry-After"]) > 0, (name, body)
    assert answers["page"][0] in (500, 503), answers["page"][:3]
    assert max(answer[3] for answer in answers.values()) < BOUND, {n: a[3] for n, a in answers.items()}

    # The worker is up, and the sockets open before the outage still are.
    assert server.process.poll() is None
    with pytest.raises(TimeoutError):  # nothing more: no v1 echo, no close
        v1.recv(timeout=0.5)
    outage = time.monotonic() - down

    pg.start()  # the same cluster, on the same port
    back = time.monotonic()
    # The same sockets send again: a client retries (as after any
    # `unavailable`) until its message is stored, without a reconnect.
    attempts = 0
    while True:
        attempts += 1
        c.say(f"after {attempts}")
        answer = until_answer(c, f"after {attempts}")
        if answer == "stored":
            break
        assert answer == "unavailable", answer
        assert time.monotonic() - back < 3 * BOUND, "the chat did not recover"
        time.sleep(0.2)
    recovered = time.monotonic() - back
    a.until("chat_message", message=f"after {attempts}")
    a.say("welcome back")
    c.until("chat_message", message="welcome back")
    a.until("chat_message", ref="welcome back")
    v1.send(json.dumps({"type": "message", "message": "v1 after"}))
    v1_heard = []
    while "v1 after" not in v1_heard:
        event = json.loads(v1.recv(timeout=TIMEOUT))
        if event["type"] == "chat_message":
            v1_heard.append(event["message"])
    assert v1_heard == [f"after {attempts}", "welcome back", "v1 after"]  # and never "v1 while down"
    # New handshakes (token, session) and the REST API work again. The chat
    # writes on a connection of their own, so a handshake (through Django's
    # pool, which reconnects on its own schedule) may still be told to try
    # again later for a moment, as a client reconnecting with back-off is.
    for kwargs in ({"token": ctoken}, {"cookie": cookie}):
        while True:
            (outcome, _) = handshake(server, order.pk, **kwargs)
            if outcome[0] == "accepted":
                break
            assert outcome == ("closed", CLOSE_TRY_AGAIN_LATER), outcome
            assert time.monotonic() - back < 3 * BOUND, "handshakes did not recover"
            time.sleep(0.2)
        outcome[1].close()
    handshakes_back = time.monotonic() - back
    status, _, body, _ = http("GET", f"{server.url}/mobile-api/my-orders/", rest)
    assert status == 200 and json.loads(body)[0]["id"] == order.pk
    for client in (c, a):
        client.until("chat_message", message="v1 after")
        client.quiet(0.5)

    # Stored: exactly what was acknowledged, once each, with gap-free seqs;
    # nothing sent while PostgreSQL was down.
    rows = stored(db_url, order.pk)
    seqs, texts = [seq for seq, _ in rows], [text for _, text in rows]
    assert seqs == list(range(1, len(rows) + 1))
    acknowledged = ["before", f"after {attempts}", "welcome back", "v1 after"]
    assert sorted(texts) == sorted(acknowledged), texts
    assert c.seqs == seqs and a.seqs == seqs  # everyone got each once, in order
    print(
        f"\nPostgreSQL down {outage:.1f}s: {len(sent)} messages answered `unavailable` in "
        f"{min(answered.values()):.3f}-{max(answered.values()):.3f}s; handshakes closed 4503 in "
        f"{took_token:.3f}s (token) / {took_session:.3f}s (session); HTTP answered in "
        + ", ".join(f"{name} {answer[0]} {answer[3]:.3f}s" for name, answer in answers.items())
        + f". Back: a message on the same socket stored {recovered:.3f}s after the restart "
        f"(attempt {attempts}), new handshakes accepted {handshakes_back:.3f}s after it; stored {texts}"
    )


def until_answer(client, ref):
    """ "stored" or the error code the server answers to message `ref`."""
    deadline = time.monotonic() + 2 * BOUND
    while ref not in client.answers:
        client.next(max(0.01, deadline - time.monotonic()))
    return client.answers[ref]


def test_pooled_connections_idle_across_a_restart_are_never_handed_out(worker_server, throwaway_postgres, people):
    customer, order, agent, _ = people
    pg = throwaway_postgres
    db_url = copy_test_database(pg)
    redis, started = servers.RedisServer(), []
    try:
        server = worker_server({"DATABASE_URL": db_url, "REDIS_URL": redis.url})
        started.append(server)
        rest = {"Authorization": f"Token {token(customer)}"}
        url = f"{server.url}/mobile-api/my-orders/"
        assert [http("GET", url, rest)[0] for _ in range(4)] == [200] * 4  # the pool's 2 connections, idle
        c, a = ChatClient(server, order.pk, customer), ChatClient(server, order.pk, agent)

        pg.stop()  # a quick bounce with no request in between: the idle connections die unseen
        pg.start()
        # Every request after the restart is served: no dead connection is lent.
        answers = [http("GET", url, rest) for _ in range(8)]
        statuses = [answer[0] for answer in answers]
        c.say("after the bounce")
        answer = until_answer(c, "after the bounce")
        a.until("chat_message", message="after the bounce")
    finally:
        for process in (*started, redis):
            process.stop()
    assert statuses == [200] * 8
    assert answer == "stored"
    assert [text for _, text in stored(db_url, order.pk)] == ["after the bounce"]
    print(f"\nPostgreSQL bounced: the first request after it answered in {answers[0][3]:.3f}s, all 200")
