import json
import os
import subprocess
import sys
import urllib.request

from websockets.sync.client import connect

from harness import servers
from main.chat.protocol import V2_SUBPROTOCOL


def run_settings(**env):
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS", "DEBUG")
    }
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import booktime.settings as s; print(s.ALLOWED_HOSTS)"],
        cwd=servers.ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_allowed_hosts_star_is_refused_outside_debug():
    result = run_settings(SECRET_KEY="x", ALLOWED_HOSTS="*", DEBUG="0")
    assert result.returncode != 0
    assert "ALLOWED_HOSTS='*' is refused outside DEBUG" in result.stderr


def test_allowed_hosts_star_is_accepted_in_debug():
    result = run_settings(SECRET_KEY="x", ALLOWED_HOSTS="*", DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert "['*']" in result.stdout


def test_secret_key_is_required_outside_debug():
    result = run_settings(SECRET_KEY="", DEBUG="0", ALLOWED_HOSTS="example.com")
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def test_embedded_default_smoke(tmp_path):
    """No REDIS_URL, a SQLite file: migrate, seed, serve pages with runserver."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(DEBUG="1", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", MEDIA_ROOT=str(tmp_path / "media"))
    manage = [sys.executable, "manage.py"]
    for command in (["migrate", "--noinput"], ["seed_demo"]):
        result = subprocess.run(
            manage + command, cwd=servers.ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr

    port = servers.free_port()
    server = servers.Server(
        manage + ["runserver", f"127.0.0.1:{port}", "--noreload"], port, env=env, log_path=tmp_path / "runserver.log"
    )
    try:
        with urllib.request.urlopen(f"{server.url}/login/?token=s3cret-token", timeout=10) as response:
            assert response.status == 200
            assert b"Log in" in response.read()
        chat_on_sqlite(server)
        log = server.log()
        assert "REDIS_URL is not set" in log
        assert "ASGI" in log  # daphne's runserver, not the WSGI one
        assert "GET /login/ 200" in log and "s3cret" not in log  # no query strings in logs
        assert "Traceback" not in log
    finally:
        server.stop()


def chat_on_sqlite(server):
    """The demo's customer chats on SQLite: messages numbered 1, 2, 3 in the
    order they were sent, and there again after a reconnect."""
    login = urllib.request.Request(
        f"{server.url}/mobile-api/auth/",
        data=json.dumps({"username": "john@bestemails.com", "password": "booktime-demo"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=10) as response:
        key = json.loads(response.read())["token"]
    url = f"{server.ws_url}/ws/customer-service/1/?token={key}"
    with connect(url, subprotocols=[V2_SUBPROTOCOL], open_timeout=10, proxy=None) as ws:
        for n in (0, 1, 2, 1):  # the second "hello 1" is sent again under its client id
            ws.send(json.dumps({"type": "message", "message": f"hello {n}", "client_id": f"c{n}"}))
        seqs = []
        while len(seqs) < 4:
            event = json.loads(ws.recv(timeout=10))
            if event["type"] == "chat_message":
                seqs.append((event["seq"], event["message"]))
    # The answer to the second "hello 1" may overtake the echoes of the others.
    assert sorted(seqs) == [(1, "hello 0"), (2, "hello 1"), (2, "hello 1"), (3, "hello 2")]
    seqs = sorted(set(seqs))
    conversation = urllib.request.Request(
        f"{server.url}/mobile-api/conversations/1/", headers={"Authorization": f"Token {key}"}
    )
    with urllib.request.urlopen(conversation, timeout=10) as response:
        state = json.loads(response.read())
    assert (state["status"], state["last_message"]["seq"]) == ("waiting", 3)
    assert state["queue"]["position"] == 1
    with connect(url, subprotocols=[V2_SUBPROTOCOL], open_timeout=10, proxy=None) as ws:
        while (event := json.loads(ws.recv(timeout=10)))["type"] != "history":
            pass
    assert [(m["seq"], m["message"]) for m in event["messages"]] == seqs
