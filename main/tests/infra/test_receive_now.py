"""main.infra.server's RECEIVE_NOW hook, on a real worker serving a small
app (receive_now_app.py): a small text frame read while the app waits goes
to the hook, and what it leaves, or fails on, reaches receive() as usual, in
order."""

import os
import socket

import pytest
from websockets.sync.client import connect

from harness import servers

from ..clients import TIMEOUT

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def app_server(django_db_setup, django_db_blocker):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="booktime.settings_test", PYTHONUNBUFFERED="1")
    with django_db_blocker.unblock():
        env["DATABASE_URL"] = servers.test_database_url()
    server = servers.serve(env, application="main.tests.infra.receive_now_app:application")
    yield server
    server.stop()


def settled(ws):
    """A ping answered: the server has read everything before it, and the
    app, which answered the last message before the ping was sent, has had
    the loop's turns since to wait in receive() again."""
    assert ws.ping().wait(TIMEOUT)


def test_what_the_hook_takes_never_reaches_receive_and_the_rest_does_in_order(app_server):
    with connect(f"{app_server.ws_url}/", compression=None, open_timeout=TIMEOUT) as ws:
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for text, answer in [("one", "one"), ("quiet", "taken"), ("two", "two"), ("quiet", "taken"), ("count", "2")]:
            settled(ws)
            ws.send(text)
            assert ws.recv(timeout=TIMEOUT) == answer


def test_a_frame_read_while_the_app_is_busy_is_queued_for_it_not_taken(app_server):
    with connect(f"{app_server.ws_url}/", compression=None, open_timeout=TIMEOUT) as ws:
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws.send("slow")
        assert ws.recv(timeout=TIMEOUT) == "slow"
        ws.send("first")  # the app takes a while over this one...
        ws.send("quiet")  # ...so this is queued behind it, and echoed, not taken
        assert [ws.recv(timeout=TIMEOUT) for _ in range(2)] == ["first", "quiet"]
        ws.send("count")
        assert ws.recv(timeout=TIMEOUT) == "0"


def test_a_hook_that_fails_is_logged_and_the_frame_reaches_receive(app_server):
    with connect(f"{app_server.ws_url}/", compression=None, open_timeout=TIMEOUT) as ws:
        ws.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        settled(ws)
        ws.send("boom")
        assert ws.recv(timeout=TIMEOUT) == "boom"
        ws.send("still here")
        assert ws.recv(timeout=TIMEOUT) == "still here"
    assert "the application's receive-now hook failed" in app_server.log()
    assert "RuntimeError: the hook failed" in app_server.log()
