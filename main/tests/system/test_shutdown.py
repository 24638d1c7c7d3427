"""A server that stops closes the connections its process shared (Redis,
the courier session) instead of leaving them to the garbage collector."""

import json
import urllib.error
import urllib.request

from rest_framework.authtoken.models import Token
from websockets.sync.client import connect

from harness.servers import free_port
from main import factories


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
