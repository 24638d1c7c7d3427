"""A server that stops closes the connections its process shared (Redis,
the courier session) instead of leaving them to the garbage collector, and
a worker started on its port (--reuse-port) takes its chats over, and
listens with the backlog of its settings."""

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest
from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from harness.servers import free_port, listens
from main import factories

from ..clients import ChatClient, converse


def test_a_worker_closes_the_shared_connections_when_it_stops(worker_server):
    user = factories.UserFactory(email="leaving@site.com")
    order = factories.OrderFactory(user=user)
    token = Token.objects.get(user=user).key
    # The courier is down: the tracker still opens the shared session to try.
    server = worker_server({"COURIER_API_URL": f"http://127.0.0.1:{free_port()}/"})

    with connect(f"{server.ws_url}/ws/customer-service/{order.pk}/?token={token}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "heartbeat"}))  # presence: the shared Redis pool
        ws.send(json.dumps({"type": "message", "message": "bye"}))
        while json.loads(ws.recv(timeout=10))["type"] != "chat_message":
            pass
    try:
        urllib.request.urlopen(f"{server.url}/mobile-api/my-orders/{order.pk}/tracker/?token={token}", timeout=10)
    except urllib.error.HTTPError as answer:
        assert answer.code == 502

    server.stop()
    log = server.log()
    assert server.process.returncode == 0
    closed = [line for line in log.splitlines() if "Closed the shared connections" in line]
    assert closed and "redis" in closed[-1] and "courier" in closed[-1]
    assert "Unclosed" not in log


def test_a_worker_started_on_its_port_takes_its_chats_over(worker_server, people):
    """The restart of docs/operations.md: the successor listens on the same
    port (SO_REUSEPORT) before the old worker stops; the old one closes its
    sockets with 1012 and exits with 0, and its clients reconnect on that
    port to the successor, resuming with what was sent meanwhile."""
    customer, order, agent, _ = people
    old = worker_server(reuse_port=True)
    c, a = ChatClient(old, order.pk, customer), ChatClient(old, order.pk, agent)
    converse(c, "Where is my book?", a, "On its way.")

    new = worker_server(port=old.port, reuse_port=True)
    assert listens(old.process.pid, old.port) and listens(new.process.pid, old.port)
    old.stop()
    assert (c.closed_code(), a.closed_code()) == (1012, 1012)
    assert old.process.returncode == 0
    # The stop's closes are one line, not one each (thousands, in production).
    stopping = re.search(r"Stopping: closing (\d+) connections \(chat sockets with 1012\)", old.log())
    assert stopping and int(stopping[1]) >= 2
    assert "Chat closed" not in old.log()

    a.connect(new, resume=True)
    a.say("Anything else?")
    a.until("chat_message", ref="Anything else?")
    c.connect(new, resume=True)
    assert sorted(c.seqs) == sorted(set(c.seqs)) == [1, 2, 3]
    assert new.process.poll() is None
    for server in (old, new):
        assert "Traceback" not in server.log() and " ERROR " not in server.log()
    c.ws.close()
    a.ws.close()


def test_a_port_held_without_reuse_is_not_shared(worker_server):
    """Only workers started with --reuse-port share a port: the second of
    two on a port one holds alone is refused, saying why."""
    first = worker_server()
    with pytest.raises(RuntimeError, match="exited early with code 3"):
        worker_server(port=first.port, reuse_port=True)


def listen_backlogs(port):
    """The backlog of each socket listening on TCP `port` (ss shows it as a listener's Send-Q)."""
    if shutil.which("ss") is None:
        pytest.fail("ss (iproute2) is missing: run scripts/install --dev")
    rows = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return [int(row.split()[2]) for row in rows.splitlines()]


def test_a_worker_listens_with_the_backlog_of_its_settings(worker_server, settings):
    """A successor's clients arrive all at once: the kernel holds
    SERVER_LISTEN_BACKLOG of them for the worker to accept, not uvicorn's
    2048. It caps each listening socket's backlog at net.core.somaxconn: a
    worker on a port of its own has the one socket, capped; one that may
    share its port (--reuse-port) listens on as many as hold them all."""
    with open("/proc/sys/net/core/somaxconn") as cap:
        somaxconn = int(cap.read())
    assert listen_backlogs(worker_server().port) == [min(settings.SERVER_LISTEN_BACKLOG, somaxconn)]
    shared = worker_server({"SERVER_LISTEN_BACKLOG": "300"}, reuse_port=True)
    assert listen_backlogs(shared.port) == [min(300, somaxconn)]
    several = worker_server({"SERVER_LISTEN_BACKLOG": str(2 * somaxconn + 1)}, reuse_port=True)
    assert listen_backlogs(several.port) == [somaxconn] * 3
    assert f"Listening on 127.0.0.1:{several.port}: 3 sockets, a backlog of {somaxconn} each" in several.log()
