"""Real clients of a worker for end-to-end tests: the chat over WebSocket
(websockets' sync client), logged in by session cookie or token."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client as DjangoClient
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from main.chat.protocol import V2_SUBPROTOCOL

TIMEOUT = 5


def session_cookie(user):
    client = DjangoClient()
    client.force_login(user)
    return client.cookies["sessionid"].value


def token(user):
    return Token.objects.get(user=user).key


def open_chat(server, order_id, *, user=None, token_query=None, token_header=None, origin=None, v2=False, query=""):
    """A WebSocket to the chat; `user` logs in by session cookie."""
    headers = {}
    if user is not None:
        headers["Cookie"] = f"sessionid={session_cookie(user)}"
    if token_header is not None:
        headers["Authorization"] = f"Token {token_header}"
    params = "&".join(p for p in (f"token={token_query}" if token_query else "", query) if p)
    url = f"{server.ws_url}/ws/customer-service/{order_id}/" + (f"?{params}" if params else "")
    return connect(
        url,
        origin=origin,
        additional_headers=headers,
        subprotocols=[V2_SUBPROTOCOL] if v2 else None,
        open_timeout=TIMEOUT,
        close_timeout=2,
        proxy=None,
    )


def recv(ws, kind=None):
    """The next event (of type `kind`, skipping others), within TIMEOUT."""
    while True:
        event = json.loads(ws.recv(timeout=TIMEOUT))
        if kind is None or event["type"] == kind:
            return event


class ChatClient:
    """A v2 chat client that keeps what a real one keeps: every chat_message
    it was sent (by seq, to catch duplicates) and the seq up to which it has
    everything."""

    def __init__(self, server, order_id, user, ws=None):
        self.order_id, self.user = order_id, user
        self.seqs = []  # every chat_message seq received, in order, duplicates kept
        self.answers = {}  # ref of a message it sent -> "stored" or the error code
        self.ws = ws
        if ws is None:
            self.connect(server)

    @property
    def have_all_up_to(self):
        seqs, n = set(self.seqs), 0
        while n + 1 in seqs:
            n += 1
        return n

    def connect(self, server, resume=False):
        query = f"after_seq={self.have_all_up_to}" if resume else ""
        self.ws = open_chat(server, self.order_id, token_query=token(self.user), v2=True, query=query)
        self.until("resumed" if resume else "history")

    def send(self, frame):
        self.ws.send(json.dumps(frame))

    def say(self, text, client_id=None):
        frame = {"type": "message", "message": text, "ref": text}
        if client_id is not None:
            frame["client_id"] = client_id
        self.send(frame)

    def next(self, timeout=TIMEOUT):
        event = json.loads(self.ws.recv(timeout=timeout))
        if event["type"] == "chat_message":
            self.seqs.append(event["seq"])
        if event["type"] == "history":  # messages stored before the socket joined its room
            self.seqs.extend(m["seq"] for m in event["messages"])
        if event["type"] in ("chat_message", "error") and "ref" in event:
            self.answers[event["ref"]] = "stored" if event["type"] == "chat_message" else event["code"]
        return event

    def until(self, kind, timeout=TIMEOUT, **match):
        """The next event of type `kind` (with these keys), within `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event["type"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event

    def closed_code(self, timeout=TIMEOUT):
        """Read until the server ends the socket; its close code (None: no close frame)."""
        deadline = time.monotonic() + timeout
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                self.next(max(0.01, deadline - time.monotonic()))
        return closed.value.rcvd.code if closed.value.rcvd else None

    def quiet(self, seconds=1.0):
        """Nothing more arrives (no chat_message twice) within `seconds`."""
        with pytest.raises(TimeoutError):
            while True:
                assert self.next(seconds)["type"] != "chat_message"


def wait_for(condition, timeout, step=0.05):
    """Poll `condition` until it is true; how long that took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "not within the deadline"
        time.sleep(step)
    return time.monotonic() - started


async def wait_for_async(condition, within, step=0.05):
    """wait_for with an async `condition`, without blocking the event loop."""
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < within, "not within the deadline"
        await asyncio.sleep(step)
    return time.monotonic() - started


def converse(first, says, second, answers):
    """`first` says something, `second` hears it and answers, `first` hears
    the answer and `second` its own acknowledgement; then neither gets
    anything more (no message twice)."""
    first.say(says)
    second.until("chat_message", message=says)
    second.say(answers)
    first.until("chat_message", message=answers)
    second.until("chat_message", ref=answers)
    for client in (first, second):
        client.quiet(0.5)


def api(server, method, path, user=None, body=None):
    """A call of the REST API with `user`'s token: (status, JSON answer)."""
    headers = {"Content-Type": "application/json"}
    if user is not None:
        headers["Authorization"] = f"Token {token(user)}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{server.url}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")
