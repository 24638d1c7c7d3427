"""Health probes and metrics on a real worker (booktime.serve): /healthz,
/readyz with PostgreSQL or Redis closed or hanging, and /metrics behind its
token, counting a real chat socket and real tracker calls."""

import contextlib
import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from harness import servers

from .. import mobile_servers
from ..clients import ChatClient, open_chat, token
from .test_deploy import NGINX, nginx_config

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # The chat client keeps its socket outside a `with` block.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

standin = mobile_servers.standin

TOKEN = "metrics-test-token"
PROBE_DEADLINE = 2.0  # a probe answers within this, whatever PostgreSQL or Redis do
TIMEOUT = 5


def get(server, path, headers=None):
    """(status, headers, body, seconds taken) of one GET."""
    request = urllib.request.Request(f"{server.url}{path}", headers=headers or {})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read(), time.monotonic() - started
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read(), time.monotonic() - started


def scrape(server):
    status, headers, body, _ = get(server, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return body.decode()


def value(text, name, **labels):
    """The sample `name` with `labels` in an exposition, or None."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def scraped_until(server, condition, timeout=TIMEOUT):
    """Scrape until `condition(text)` holds; that scrape's text."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(server)
        if condition(text):
            return text
        assert time.monotonic() < deadline, f"not within {timeout}s; last scrape:\n{text}"
        time.sleep(0.05)


@contextlib.contextmanager
def silent_port():
    """A port that takes connections and never says a word (nothing accepts
    them): a server that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]


def test_healthz_answers_and_only_to_get(worker_server):
    server = worker_server()
    status, headers, body, _ = get(server, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["Content-Type"] == "application/json" and headers["Cache-Control"] == "no-store"
    request = urllib.request.Request(f"{server.url}/healthz", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405


def test_readyz_is_ready_with_postgresql_and_redis_up_and_probes_write_no_access_line(worker_server):
    server = worker_server()
    for _ in range(3):
        status, _, body, _ = get(server, "/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready", "checks": {"postgresql": "ok", "redis": "ok"}})
        assert get(server, "/healthz")[0] == 200
    assert get(server, "/login/")[0] == 200  # an ordinary request, logged
    log = server.log()
    assert '"GET /login/ HTTP/1.1" 200' in log
    assert "/readyz" not in log and "/healthz" not in log


def test_readyz_names_redis_when_nothing_listens_on_its_port(worker_server):
    server = worker_server({"REDIS_URL": f"redis://127.0.0.1:{servers.free_port()}/0"})
    status, headers, body, seconds = get(server, "/readyz")
    assert status == 503 and seconds < PROBE_DEADLINE
    assert json.loads(body) == {"status": "unavailable", "checks": {"postgresql": "ok", "redis": "unreachable"}}
    assert headers["Retry-After"] == "5"
    assert get(server, "/healthz")[0] == 200  # alive all the same: not restarted for it
    assert '"GET /readyz HTTP/1.1" 503' in server.log()  # a failing probe is logged


def test_readyz_names_postgresql_when_nothing_listens_on_its_port(worker_server):
    server = worker_server({"DATABASE_URL": f"postgres://postgres@127.0.0.1:{servers.free_port()}/booktime"})
    status, headers, body, seconds = get(server, "/readyz")
    assert status == 503 and seconds < PROBE_DEADLINE
    assert json.loads(body) == {"status": "unavailable", "checks": {"postgresql": "unreachable", "redis": "ok"}}
    assert headers["Retry-After"] == "5"


def test_readyz_answers_in_time_when_postgresql_and_redis_hang(worker_server):
    with silent_port() as pg_port, silent_port() as redis_port:
        server = worker_server(
            {
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:{pg_port}/booktime",
                "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            }
        )
        status, _, body, seconds = get(server, "/readyz")
        assert status == 503 and seconds < PROBE_DEADLINE
        assert json.loads(body)["checks"] == {"postgresql": "timeout", "redis": "timeout"}
        status, _, _, seconds = get(server, "/healthz")
        assert status == 200 and seconds < 0.5


def test_metrics_is_absent_without_the_right_token(worker_server):
    without = worker_server()  # METRICS_TOKEN unset: absent, whatever is sent
    assert get(without, "/metrics", {"Authorization": "Bearer "})[0] == 404
    server = worker_server({"METRICS_TOKEN": TOKEN})
    absent = get(server, "/no-such-page/")
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Token {TOKEN}"},
        {"Authorization": TOKEN},
    ):
        status, _, body, _ = get(server, "/metrics", headers)
        assert (status, body) == (404, absent[2]), headers  # as any unknown path
    status, headers, body, _ = get(server, "/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    text = body.decode()
    assert value(text, "booktime_chat_sockets_open", protocol="v2") == 0
    assert value(text, "process_resident_memory_bytes") > 0  # the process's own, from the same registry
    assert '/metrics HTTP/1.1" 200' not in server.log() and '"GET /metrics HTTP/1.1" 404' in server.log()


def test_metrics_count_a_chat_socket_its_message_and_heartbeat(worker_server, people):
    customer, order, _, _ = people
    server = worker_server({"METRICS_TOKEN": TOKEN})
    client = ChatClient(server, order.pk, customer)
    client.say("hello")
    client.until("chat_message", ref="hello")
    client.send({"type": "heartbeat"})
    text = scraped_until(
        server,
        lambda t: value(t, "booktime_chat_heartbeats_total") and value(t, "booktime_presence_people", role="customer"),
    )
    assert value(text, "booktime_chat_sockets_open", protocol="v2") == 1
    assert value(text, "booktime_chat_sockets_open", protocol="v1") == 0
    assert value(text, "booktime_chat_messages_stored_total", via="socket") == 1
    assert value(text, "booktime_chat_messages_fanned_out_total") == 1
    assert value(text, "booktime_chat_heartbeats_total") == 1
    assert value(text, "booktime_presence_people", role="customer") == 1
    assert value(text, "booktime_presence_chats") == 1
    client.ws.close()
    scraped_until(server, lambda t: value(t, "booktime_chat_sockets_open", protocol="v2") == 0)


def test_metrics_count_refused_handshakes_by_reason(worker_server, people):
    customer, order, _, other = people
    server = worker_server({"METRICS_TOKEN": TOKEN})
    for kwargs in ({}, {"token_query": token(other)}, {"user": customer, "origin": "https://evil.example"}):
        with pytest.raises(InvalidStatus) as refusal:
            open_chat(server, order.pk, **kwargs).close()
        assert refusal.value.response.status_code == 403
    text = scrape(server)
    for reason in ("unauthenticated", "forbidden", "origin"):
        assert value(text, "booktime_chat_handshakes_refused_total", reason=reason) == 1, reason
    assert value(text, "booktime_chat_handshakes_refused_total", reason="database_unavailable") == 0


def test_metrics_count_courier_calls_by_outcome_with_their_latency(worker_server, standin, people):
    customer, order, _, _ = people
    mobile_servers.configure(standin, reset=True)
    server = worker_server({"METRICS_TOKEN": TOKEN, "COURIER_API_URL": f"{standin.url}/"})
    tracker = f"/mobile-api/my-orders/{order.pk}/tracker/"
    auth = {"Authorization": f"Token {token(customer)}"}
    assert get(server, tracker, auth)[0] == 200
    mobile_servers.configure(standin, orders={order.pk: {"mode": "error500"}})
    assert get(server, tracker, auth)[0] == 502
    text = scrape(server)
    assert value(text, "booktime_courier_calls_total", outcome="ok") == 1
    assert value(text, "booktime_courier_calls_total", outcome="http_error") == 1
    assert value(text, "booktime_courier_call_seconds_count") == 2
    assert 0 < value(text, "booktime_courier_call_seconds_sum") < 2 * mobile_servers.COURIER_TIMEOUT


def test_nginx_keeps_readiness_and_metrics_to_the_workers_ports(worker_server, tmp_path):
    """The shipped nginx config passes /healthz and answers 404 for /readyz and
    /metrics, however the path is spelled; the worker's own port answers both."""
    worker = worker_server({"METRICS_TOKEN": TOKEN})
    port = servers.free_port()
    proxy = servers.Server([NGINX, "-c", str(nginx_config(tmp_path, port, [worker.port]))], port)
    try:
        assert get(proxy, "/healthz")[0] == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/readyz", "/metrics", "/metrics?x=1", "//metrics", "/%6detrics"):
            assert get(proxy, path, bearer)[0] == 404, path
    finally:
        proxy.stop()
    assert get(worker, "/readyz")[0] == 200 and get(worker, "/metrics", bearer)[0] == 200
