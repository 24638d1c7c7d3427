"""Hostile input against a real worker (booktime.serve): every frame, body,
query string, path and header a client can send gets a documented answer
(docs/protocol.md, "Bad input"; docs/mobile-api.md, "Errors"), never a
traceback. On the chat socket: v2's `error` event with its code, v1's silent
drop, and the socket still open and still carrying messages. On every route
under /mobile-api/ (found by walking the URL resolvers, so a new route is
covered as soon as it exists): a 4xx with a JSON body in the API's error
shape. And nothing the worker logs is an ERROR or a traceback."""

import json
import re
import socket

import pytest
from django.urls import get_resolver
from rest_framework.authtoken.models import Token
from websockets.exceptions import ConnectionClosed

from harness import servers
from main import factories, models
from main import routing as asgi_routing

from ..clients import TIMEOUT, open_chat, recv, token
from ..mobile_servers import configure, standin
from ..routes import walk

pytestmark = pytest.mark.django_db(transaction=True)

__all__ = ["standin"]  # the courier stand-in, for the tracker's route

# High enough that these tests meet the refusals they are about, not the rates.
LIMITS = {
    "CHAT_RATE_BURST": "100000",
    "CHAT_RATE_PER_SECOND": "100000",
    "CHAT_API_SEND_RATE": "100000/min",
    "LOGIN_FAILURE_LIMIT": "100000",
}
# A socket is closed after 40 refusals in a row: an accepted frame every so often.
REFUSALS_BETWEEN_ACCEPTED = 20


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, standin):
    with django_db_blocker.unblock():
        server = servers.worker({**LIMITS, "COURIER_API_URL": f"{standin.url}/"})
    yield server
    server.stop()


@pytest.fixture
def log(worker, standin):
    """The worker's log from this test on; `log.clean()` asserts it has no
    ERROR line and no traceback."""
    configure(standin, reset=True)
    return LogWatch(worker)


class LogWatch:
    def __init__(self, server):
        self.server = server
        self.start = len(server.log())

    def lines(self):
        return self.server.log()[self.start :].splitlines()

    def clean(self):
        bad = [line for line in self.lines() if re.search(r"\bERROR\b|Traceback", line)]
        assert not bad, "the worker logged:\n" + "\n".join(bad[:40])


# --- The chat socket ---------------------------------------------------------------

DEEP = 8000  # nesting levels that still fit in one frame (CHAT_MAX_FRAME_BYTES, 16 KiB)


def put(template, value):
    """A frame: `template` with `value` (raw JSON) in place of its @."""
    return template.replace("@", value)


# (what, the frame, v2's error code); each is refused, in v1 and v2 alike.
REFUSED_FRAMES = [
    ("an empty frame", "", "bad_json"),
    ("blanks", " \n\t", "bad_json"),
    ("not JSON", "hello", "bad_json"),
    ("a cut object", '{"type": "message"', "bad_json"),
    ("NUL", "\x00", "bad_json"),
    ("a byte-order mark first", '\ufeff{"type": "heartbeat"}', "bad_json"),
    ("a number past Python's digits", "1" * 5000, "bad_json"),
    ("a huge number in a field", '{"type": "read", "id": %s}' % ("9" * 5000), "bad_json"),
    ("nested arrays", "[" * DEEP + "]" * DEEP, "bad_json"),
    ("nested objects", '{"a":' * 2500 + "1" + "}" * 2500, "bad_json"),
    ("a nested message", '{"type": "message", "message": ' + "[" * DEEP + "]" * DEEP + "}", "bad_json"),
    ("NaN", "NaN", "bad_frame"),
    ("Infinity", "-Infinity", "bad_frame"),
    ("a float past its range", "1e400", "bad_frame"),
    ("null", "null", "bad_frame"),
    ("true", "true", "bad_frame"),
    ("a string", '"message"', "bad_frame"),
    ("an array", '[{"type": "message", "message": "x"}]', "bad_frame"),
    ("no type", "{}", "unknown_type"),
    *(
        (f"type {t}", put('{"type": @, "message": "x"}', t), "unknown_type")
        for t in ("null", "1", "true", "[]", "{}", '["message"]', '""', '"MESSAGE"', '"message "')
    ),
    ("type with NUL", '{"type": "message\\u0000", "message": "x"}', "unknown_type"),
    ("type a lone surrogate", '{"type": "\\ud800", "message": "x"}', "unknown_type"),
    ("no message", '{"type": "message"}', "bad_message"),
    *(
        (f"message {m}", put('{"type": "message", "message": @}', m), "bad_message")
        for m in ("null", "42", "-1.5", "true", "false", "[]", "{}", '["x"]', "1" + "0" * 400, "NaN", "Infinity")
    ),
    ("an empty message", '{"type": "message", "message": ""}', "empty_message"),
    ("a blank message", '{"type": "message", "message": " \\n\\t\\u3000 "}', "empty_message"),
    ("a message over the limit", json.dumps({"type": "message", "message": "x" * 2001}), "too_long"),
    ("a lone high surrogate", '{"type": "message", "message": "\\ud800"}', "bad_message"),
    ("a lone low surrogate", '{"type": "message", "message": "a\\udfffb"}', "bad_message"),
    ("two high surrogates", '{"type": "message", "message": "\\ud83d\\ud83d"}', "bad_message"),
    ("NUL in a message", '{"type": "message", "message": "a\\u0000b"}', "bad_message"),
]
# v2's message frame: `ref` and `client_id` (refused before anything is stored).
REFUSED_FRAMES_V2 = [
    *(
        (f"ref {r}", put('{"type": "message", "message": "x", "ref": @}', r), "bad_request")
        for r in ("1", "true", "[]", "{}", '""', json.dumps("r" * 65), "1" + "0" * 400)
    ),
    ("ref a lone surrogate", '{"type": "message", "message": "x", "ref": "\\ud800"}', "bad_request"),
    ("ref with NUL", '{"type": "message", "message": "x", "ref": "a\\u0000"}', "bad_request"),
    *(
        (f"client_id {c}", put('{"type": "message", "message": "x", "client_id": @}', c), "bad_request")
        for c in ("1", "true", "[]", "{}", '""', json.dumps("c" * 65), '"a b"', '"\\u00e9t\\u00e9"', '"a\\n"')
    ),
    ("client_id a lone surrogate", '{"type": "message", "message": "x", "client_id": "\\udc00"}', "bad_request"),
    ("client_id with NUL", '{"type": "message", "message": "x", "client_id": "a\\u0000"}', "bad_request"),
    *(
        (f"history before {v}", put('{"type": "history", "before": @}', v), "bad_request")
        for v in ('"1"', "-1", "1.5", "1.0", "true", "[]", "{}", "1" + "0" * 400, "NaN", "-Infinity", '"\\ud800"')
    ),
    *(
        (f"history limit {v}", put('{"type": "history", "limit": @}', v), "bad_request")
        for v in ("null", "0", "-1", "1.5", '"5"', "true", "[]", "NaN", "Infinity")
    ),
    ("resume without a place", '{"type": "resume"}', "bad_request"),
    *(
        (f"resume after_seq {v}", put('{"type": "resume", "after_seq": @}', v), "bad_request")
        for v in ('"0"', "-1", "0.5", "false", "[0]", "1" + "0" * 400, str(2**63), "NaN")
    ),
    *(
        (f"resume after {v}", put('{"type": "resume", "after": @}', v), "bad_request")
        for v in ('"0"', "-1", "0.5", "true", "{}", "1" + "0" * 400, "Infinity")
    ),
    ("read without an id", '{"type": "read"}', "bad_request"),
    *(
        (f"read id {v}", put('{"type": "read", "id": @}', v), "bad_request")
        for v in ("null", '"1"', "-1", "1.5", "true", "[1]", "1" + "0" * 400, str(2**63), "NaN", '"\\u0000"')
    ),
]
# Types only v2 has: v1 drops them.
V2_ONLY = ('"typing"', '"history"', '"resume"', '"read"')
# Binary frames: bad_frame.
BINARY_FRAMES = [b"", b"\x00", b"\xff\xfe\xfd", json.dumps({"type": "message", "message": "x"}).encode()]

# Frames that are odd but fine: accepted, with no answer of their own.
ACCEPTED_QUIETLY = [
    '{"type": "heartbeat", "\\ud800": "\\u0000", "x": ' + "[" * 100 + "]" * 100 + "}",
    '{"type": "message", "type": "heartbeat"}',  # duplicate keys: the last counts
    '{"type": "heartbeat", "message": 1e400}',
]
ACCEPTED_V2 = ['{"type": "typing", "ref": "\\ud800"}', '{"type": "history", "limit": %s}' % ("1" + "0" * 400)]

# Texts that are unusual but are text: stored and shown exactly as sent.
ODD_TEXTS = [
    "\u202eevil.exe\u202c and \u2067isolate\u2069",  # right-to-left overrides
    "\ufffe\uffff\ufdd0\U0001fffe",  # non-characters
    "\U0010ffff\U000e0001\ue000",  # the highest code point, a tag, private use
    "e\u0301" * 50 + " \u200b\u200d\u2060",  # combining marks, zero-width characters
    "\U0001f469\u200d\U0001f469\u200d\U0001f467 \U0001f3f3\ufe0f\u200d\U0001f308",  # joined emoji
    "\x01\x07\x1b[31mred\x1b[0m\x7f\r\n\ufeffafter a BOM",  # control characters
    "<script>alert(1)</script> {{ x }} %s ${x}",
    "\U0001f600" * 2000,  # the most characters, four UTF-8 bytes each
]


def send_raw(ws, frame):
    if isinstance(frame, bytes):
        ws.send(frame)  # a binary frame
    else:
        ws.send(frame.encode("utf-8"), text=True)


@pytest.fixture
def chat(worker, people, log):
    customer, order, agent, _ = people
    return worker, customer, order, agent


def test_v2_refuses_each_hostile_frame_with_its_code_and_goes_on(chat, log):
    worker, customer, order, agent = chat
    wrong = []
    with (
        open_chat(worker, order.pk, token_query=token(customer), v2=True) as c,
        open_chat(worker, order.pk, token_query=token(agent)) as a,
    ):
        recv(c, "history")
        frames = (
            REFUSED_FRAMES + REFUSED_FRAMES_V2 + [(f"binary {frame!r}", frame, "bad_frame") for frame in BINARY_FRAMES]
        )
        for n, (what, frame, code) in enumerate(frames, start=1):
            send_raw(c, frame)
            try:
                error = recv(c, "error")
            except (TimeoutError, ConnectionClosed) as gone:
                pytest.fail(f"{what}: no answer ({gone!r}); wrong so far: {wrong}")
            if error["code"] != code or not error.get("message"):
                wrong.append((what, error))
            if "ref" in error:  # none of these frames has a ref that may be echoed
                wrong.append((what, "a ref echoed", error))
            if n % REFUSALS_BETWEEN_ACCEPTED == 0:
                c.send(json.dumps({"type": "heartbeat"}))
        for frame in ACCEPTED_QUIETLY + ACCEPTED_V2:
            send_raw(c, frame)
        c.send(json.dumps({"type": "message", "message": "still here", "ref": "r"}))
        own = recv(c, "chat_message")
        assert own["message"] == "still here" and own["ref"] == "r", "an accepted frame was answered first"
        assert recv(a, "chat_message")["message"] == "still here"
    assert not wrong, wrong
    assert list(models.ChatMessage.objects.values_list("text", flat=True)) == ["still here"]
    log.clean()


def test_v1_drops_each_hostile_frame_and_goes_on(chat, log):
    worker, customer, order, agent = chat
    frames = [frame for _, frame, _ in REFUSED_FRAMES] + BINARY_FRAMES
    frames += [put('{"type": @}', t) for t in V2_ONLY] + ACCEPTED_QUIETLY
    with (
        open_chat(worker, order.pk, token_query=token(customer)) as c,
        open_chat(worker, order.pk, token_query=token(agent), v2=True) as a,
    ):
        recv(a, "history")
        recv(c, "chat_join")
        sent = 0
        for start in range(0, len(frames), REFUSALS_BETWEEN_ACCEPTED):
            for frame in frames[start : start + REFUSALS_BETWEEN_ACCEPTED]:
                send_raw(c, frame)
            sent += 1
            c.send(json.dumps({"type": "message", "message": f"still here {sent}"}))
            while (event := recv(c))["type"] == "chat_join":  # the agent's
                pass
            assert event == {"type": "chat_message", "username": "Jane Doe", "message": f"still here {sent}"}
            assert recv(a, "chat_message")["message"] == f"still here {sent}"
    stored = list(models.ChatMessage.objects.order_by("seq").values_list("text", flat=True))
    assert stored == [f"still here {n}" for n in range(1, sent + 1)]
    log.clean()


def test_odd_text_is_stored_and_shown_exactly_as_sent(chat, log):
    worker, customer, order, agent = chat
    with (
        open_chat(worker, order.pk, token_query=token(customer), v2=True) as c,
        open_chat(worker, order.pk, token_query=token(agent)) as a,
    ):
        recv(c, "history")
        for n, text in enumerate(ODD_TEXTS):
            c.send(json.dumps({"type": "message", "message": text, "ref": str(n)}, ensure_ascii=False))
            own = recv(c, "chat_message")
            assert (own["message"], own["ref"]) == (text, str(n))
            assert recv(a, "chat_message")["message"] == text
    assert list(models.ChatMessage.objects.order_by("seq").values_list("text", flat=True)) == ODD_TEXTS
    log.clean()


def not_utf8_frame(worker, customer, order, agent):
    """A text frame that is not UTF-8 ends its socket with 1007 (the
    WebSocket protocol's rule, applied by the server before the app sees the
    frame); everyone else goes on."""
    with open_chat(worker, order.pk, token_query=token(agent), v2=True) as a:
        recv(a, "history")
        with open_chat(worker, order.pk, token_query=token(customer), v2=True) as c:
            recv(c, "history")
            c.send(b'{"type": "message", "message": "\xed\xa0\x80"}', text=True)  # a surrogate, UTF-8 encoded
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    recv(c)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
        a.send(json.dumps({"type": "message", "message": "still here"}))
        assert recv(a, "chat_message")["message"] == "still here"
    assert list(models.ChatMessage.objects.values_list("text", flat=True)) == ["still here"]


def test_a_text_frame_that_is_not_utf8_ends_the_socket_with_1007(chat):
    not_utf8_frame(*chat)


def test_a_text_frame_that_is_not_utf8_is_no_error_in_the_log(chat, log):
    not_utf8_frame(*chat)
    log.clean()


def test_a_ref_that_is_not_text_is_refused_before_anything_is_stored(chat, log):
    """A `ref` goes into the message's group event: one the channel layer
    cannot encode (a lone surrogate) would store the message and keep it
    from everyone else. It is refused first, as any field but the text."""
    worker, customer, order, agent = chat
    with (
        open_chat(worker, order.pk, token_query=token(customer), v2=True) as c,
        open_chat(worker, order.pk, token_query=token(agent), v2=True) as a,
    ):
        recv(c, "history")
        recv(a, "history")
        c.send('{"type": "message", "message": "hello", "ref": "\\udfff"}')
        error = recv(c, "error")
        assert error["code"] == "bad_request" and "ref" not in error
        c.send(json.dumps({"type": "message", "message": "hello again", "ref": "\u202e\U0010ffff"}))
        assert recv(c, "chat_message")["ref"] == "\u202e\U0010ffff"
        assert recv(a, "chat_message")["message"] == "hello again"
    assert list(models.ChatMessage.objects.values_list("text", flat=True)) == ["hello again"]
    log.clean()


@pytest.mark.parametrize(
    "query",
    [
        "after_seq=-1",
        "after_seq=abc",
        "after_seq=%00",
        "after_seq=%FF%FE",
        "after=99999999999999999999999",
        "after_seq=%D9%A3",
        "after_seq=1e3&after_seq=2",
        "after_seq",
        "%ED%A0%80=1",
        "&&&=&",
    ],
)
def test_a_handshake_with_a_hostile_query_string_opens_with_the_latest_history(chat, log, query):
    worker, customer, order, _ = chat
    with open_chat(worker, order.pk, token_query=token(customer), v2=True, query=query) as c:
        assert recv(c)["type"] == "ready"
        assert recv(c)["type"] == "history"  # a place that is not one is no place: the latest history
    log.clean()


# A WebSocket handshake's headers, for raw_http.
WEBSOCKET_UPGRADE = [
    (b"Upgrade", b"websocket"),
    (b"Connection", b"Upgrade"),
    (b"Sec-WebSocket-Version", b"13"),
    (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
]


@pytest.mark.parametrize("query", ["token=%FF%FE", "token=%00", "token=", "token=" + "a" * 3000, "token=%ED%A0%80"])
def test_a_handshake_with_a_token_that_is_not_one_is_refused_with_403(chat, log, query):
    worker, _, order, _ = chat
    answer = raw_http(worker, "GET", f"/ws/customer-service/{order.pk}/?{query}", WEBSOCKET_UPGRADE)
    assert answer.status == 403, answer
    log.clean()


# Header values with bytes past ASCII (HTTP's obs-text): a refused
# handshake, 403 as every refusal. A Sec-WebSocket-Protocol header the server
# cannot parse, or control bytes in any header, are refused by the server
# itself, before the app, with 400.
ODD_HANDSHAKE_HEADERS = [
    (b"Authorization", b"Token \xff\xfe\x80", 403),
    (b"Authorization", b"Token " + b"a" * 5000, 403),
    (b"Authorization", b"\xff", 403),
    (b"Cookie", b"sessionid=\xff\xfe; csrftoken=\x80", 403),
    (b"Cookie", b"sessionid=\x01; csrftoken=\x7f", 400),  # control bytes: not HTTP
    (b"Cookie", b"sessionid=" + b"%FF" * 100, 403),
    (b"Origin", b"http://\xff.example", 403),
    (b"Origin", b"null", 403),
    (b"Sec-WebSocket-Protocol", b"booktime.chat.v2\xff, \x80", 400),
]


@pytest.mark.parametrize("name, value, status", ODD_HANDSHAKE_HEADERS)
def test_a_handshake_with_odd_header_bytes_is_refused(chat, log, name, value, status):
    worker, _, order, _ = chat
    answer = raw_http(worker, "GET", f"/ws/customer-service/{order.pk}/", [*WEBSOCKET_UPGRADE, (name, value)])
    assert answer.status == status, answer
    log.clean()


# --- A raw HTTP client: any method, target, header bytes and body ---------------------


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        return self.headers.get(name.lower(), "")

    def __repr__(self):
        return f"<{self.status} {self.header('content-type')} {self.body[:300]!r}>"


def raw_http(server, method, target, headers=(), body=b"", host=b"127.0.0.1"):
    """One request on a fresh connection, written byte for byte: the answer."""
    if isinstance(target, str):
        target = target.encode("latin-1")
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: " + host, b"Connection: close"]
    lines += [name + b": " + value for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as conn:
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        found[name.strip().lower()] = value.strip()
    if found.get("transfer-encoding") == "chunked":
        rest = unchunked(rest)
    return Answer(int(status_line.split()[1]), found, b"" if method == "HEAD" else rest)


def unchunked(data):
    body = b""
    while data:
        size, _, data = data.partition(b"\r\n")
        size = int(size.split(b";")[0], 16)
        if size == 0:
            break
        body, data = body + data[:size], data[size + 2 :]
    return body


# --- Every REST route under /mobile-api/ ---------------------------------------------


def mobile_api_routes():
    """Every route under /mobile-api/, Django's and the ASGI router's own."""

    found = [*walk(get_resolver().url_patterns), *walk(asgi_routing.http_urlpatterns)]
    return sorted({route for route in found if route.startswith("mobile-api/")})


def url_of(route, order_id):
    path = "/" + route.replace("<int:order_id>", str(order_id))
    assert "<" not in path and "(?P" not in path, f"{route}: a parameter this test does not know how to fill"
    return path


def wrong(answer, method):
    """What is wrong with an answer to hostile input, or None: no 5xx, and
    an error is JSON with `detail` and `code` (a HEAD has no body)."""
    if answer.status >= 500:
        return f"{answer.status}"
    if 300 <= answer.status < 400:
        return None if answer.header("location").startswith("/mobile-api/") else "a redirect away"
    if answer.status < 400 or method == "HEAD":
        return None
    if not answer.header("content-type").startswith("application/json"):
        return "not JSON"
    try:
        body = json.loads(answer.body)
    except ValueError:
        return "not JSON"
    if not (isinstance(body, dict) and isinstance(body.get("detail"), str) and isinstance(body.get("code"), str)):
        return "not the error shape"
    return None


def login_renders_html(method, target, headers, answer):
    asked_html = (b"Accept", b"text/html") in headers or "format=api" in str(target)
    return method == "POST" and str(target).startswith("/mobile-api/auth/") and asked_html and answer.status == 400


class Caller:
    """Asks the worker as one user (or nobody) and collects what was wrong."""

    def __init__(self, worker, user):
        self.worker, self.user = worker, user
        self.key = token(user) if user is not None else None
        self.wrong = []

    def ask(self, method, target, headers=(), body=b"", auth=True, host=b"127.0.0.1"):
        headers = list(headers)
        if auth and self.key is not None:
            headers.append((b"Authorization", b"Token " + self.key.encode()))
        answer = raw_http(self.worker, method, target, headers, body, host)
        if b"/logout/" in (target if isinstance(target, bytes) else target.encode("latin-1")) and self.key:
            Token.objects.get_or_create(key=self.key, defaults={"user": self.user})  # logged out: back in
        problem = wrong(answer, method)
        if problem is not None and login_renders_html(method, target, headers, answer):
            problem = None  # a known gap: test_a_refused_login_is_json_whatever_the_client_accepts
        if problem is not None:
            shown = headers[:-1] if auth and self.key else headers
            self.wrong.append(f"{method} {target!r} {shown} {body[:80]!r}: {problem} {answer}")
        return answer

    def assert_nothing_wrong(self):
        assert not self.wrong, f"{len(self.wrong)} wrong answers:\n" + "\n".join(w[:500] for w in self.wrong[:60])


@pytest.fixture
def callers(worker, people, log):
    customer, order, agent, _ = people
    return order, [Caller(worker, agent), Caller(worker, customer), Caller(worker, None)]


MANY = 2000  # fields: past Django's DATA_UPLOAD_MAX_NUMBER_FIELDS
HUGE = 3 * 1024 * 1024  # bytes: past Django's DATA_UPLOAD_MAX_MEMORY_SIZE

QUERIES = [
    "?page=abc",
    "?after_seq=-1",
    "?after_seq=abc&before_seq=%FF",
    "?before_seq=99999999999999999999999",
    "?limit=0",
    "?limit=-5",
    "?limit=1e3",
    "?limit=%00",
    "?limit=%D9%A3",  # an Arabic-Indic digit
    "?status=%F0%9F%92%A9",
    "?status=%FF%FE",
    "?status=%ED%A0%80",  # a surrogate, UTF-8 encoded
    "?status=waiting%00",
    "?status=" + "%E2%80%AE" * 50,
    "?assigned=-1",
    "?assigned=%FF",
    "?assigned=99999999999999999999999",
    "?format=xml",
    "?format=%00",
    "?format=api",
    "?lang=%FF&version=%00",
    "?a=1&a=2&a=&=&&=",
    "?%",
    "?%zz=%zz",
    "?token=%FF",
    "?" + "&".join(f"f{n}=1" for n in range(MANY)),
]

JSON_TYPE = b"application/json"
FORM_TYPE = b"application/x-www-form-urlencoded"
FIELDS = ("message", "client_id", "seq", "user_id", "username", "password")
VALUES = (
    '"\\ud800"',
    '"a\\udc00b"',
    '"a\\u0000b"',
    '"\\ufffe\\uffff"',
    '"\\u202e\\U0010ffff"',
    "1" + "0" * 400,
    "-1",
    "1.5",
    "true",
    "null",
    "[]",
    "{}",
    '["x"]',
    "NaN",
    "-Infinity",
    "[" * 5000 + "]" * 5000,
)


def json_with(field, value):
    base = {"message": '"hello"', "seq": "1", "user_id": "1", "username": '"a@b.c"', "password": '"pw"'}
    base[field] = value
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in base.items()) + "}").encode()


BODIES = [
    (JSON_TYPE, b""),
    (JSON_TYPE, b"{"),
    (JSON_TYPE, b"null"),
    (JSON_TYPE, b"[]"),
    (JSON_TYPE, b'"message"'),
    (JSON_TYPE, b"1"),
    (JSON_TYPE, b"NaN"),
    (JSON_TYPE, b"\xff\xfe{}"),
    (JSON_TYPE, b'{"message": "\xed\xa0\x80"}'),  # a surrogate, UTF-8 encoded
    (JSON_TYPE, b"[" * 100_000 + b"]" * 100_000),
    (JSON_TYPE, b'{"message": ' + b"{" * 0 + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"),
    (JSON_TYPE, b'{"message": "one", "message": "two", "seq": 1, "seq": "x"}'),
    (JSON_TYPE, b'{"message": "' + b"x" * HUGE + b'"}'),
    *((JSON_TYPE, json_with(field, value)) for field in FIELDS for value in VALUES),
    (b"text/plain", b'{"message": "hello"}'),
    (b"application/json; charset=rot13", b'{"message": "hello"}'),
    (b"application/json; charset=zlib", b'{"message": "hello"}'),
    (b"application/json; charset=utf-16", b'{"message": "hello"}'),
    (b"application/json; charset=\xff", b'{"message": "hello"}'),
    (b"\xff/\xfe", b'{"message": "hello"}'),
    (FORM_TYPE, b"message=%FF%FE&seq=%00&user_id=%ED%A0%80&client_id=%00"),
    (FORM_TYPE, b"message=a%00b&username=%00&password=%00"),
    (FORM_TYPE, b"&".join(b"f%d=1" % n for n in range(MANY))),
    (FORM_TYPE, b"message=" + b"x" * HUGE),
    (FORM_TYPE + b"; charset=rot13", b"message=hello"),
    (FORM_TYPE + b"; charset=zlib", b"message=hello"),
    (b"multipart/form-data", b"message=hello"),
    (b"multipart/form-data; boundary=xyz", b"garbage"),
    (
        b"multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="message"\r\n\r\n\xff\x00\r\n--xyz--\r\n',
    ),
    (
        b"multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="message"\r\n\r\n' + b"x" * HUGE + b"\r\n--xyz--\r\n",
    ),
    (
        b"multipart/form-data; boundary=xyz",
        b"".join(b'--xyz\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n1\r\n' % n for n in range(MANY))
        + b"--xyz--\r\n",
    ),
]

HEADERS = [
    [(b"Authorization", b"Token \xff\xfe\x80")],
    [(b"Authorization", b"Token " + b"a" * 5000)],
    [(b"Authorization", b"Token a b")],
    [(b"Authorization", b"Token")],
    [(b"Authorization", b"Basic \xff")],
    [(b"Authorization", b"Basic !!!")],
    [(b"Authorization", b"Basic /_/+")],  # base64 of bytes that are not UTF-8
    [(b"Authorization", b"Bearer x")],
    [(b"Accept", b"text/html")],
    [(b"Accept", b"application/xml")],
    [(b"Accept", b"\xff/\xfe")],
    [(b"Accept", b"*/*;q=abc")],
    [(b"Accept-Language", b"\xff")],
    [(b"Accept-Language", b"xx-" * 1000)],
    [(b"X-Forwarded-For", b"\xff, 999.999.999.999")],
    [(b"Cookie", b"sessionid=\xff; csrftoken=\xfe")],
    [(b"X-CSRFToken", b"\xff")],
    [(b"If-None-Match", b"\xff")],
    [(b"Range", b"bytes=abc")],
    [(b"Content-Type", b"application/json; charset=rot13")],
]

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def test_every_route_answers_every_method_and_hostile_query_string_with_json(callers, log):
    order, users = callers
    for route in mobile_api_routes():
        for caller in users:
            for method in METHODS:
                caller.ask(method, url_of(route, order.pk))
            for query in QUERIES:
                caller.ask("GET", url_of(route, order.pk) + query)
                caller.ask("POST", url_of(route, order.pk) + query, [(b"Content-Type", JSON_TYPE)], b"{}")
    for caller in users:
        caller.assert_nothing_wrong()
    log.clean()


def test_every_route_answers_hostile_bodies_with_json(callers, log):
    order, users = callers
    for route in mobile_api_routes():
        for caller in users[:2]:  # nobody: refused before the body is read
            for content_type, body in BODIES:
                for method in ("POST", "PUT") if len(body) < 1000 else ("POST",):
                    caller.ask(method, url_of(route, order.pk), [(b"Content-Type", content_type)], body)
    for caller in users:
        caller.assert_nothing_wrong()
    log.clean()


def test_every_route_answers_hostile_headers_with_json(callers, log):
    order, users = callers
    for route in mobile_api_routes():
        for caller in users:
            for headers in HEADERS:
                caller.ask("GET", url_of(route, order.pk), headers, auth=headers[0][0] != b"Authorization")
                caller.ask(
                    "POST",
                    url_of(route, order.pk),
                    [*headers, (b"Content-Type", JSON_TYPE)],
                    b'{"message": "hi", "seq": 1}',
                    auth=headers[0][0] != b"Authorization",
                )
    for caller in users:
        caller.assert_nothing_wrong()
    log.clean()


PATHS = [
    "/mobile-api/",
    "/mobile-api/nope/",
    "/mobile-api/nope",
    "/mobile-api/auth",  # no slash: redirected to the route
    "/mobile-api/conversations/abc/",
    "/mobile-api/conversations/99999999999999999999999/",
    "/mobile-api/conversations/99999999999999999999999/messages/",
    "/mobile-api/conversations/-1/",
    "/mobile-api/conversations/+1/",
    "/mobile-api/conversations/%FF/",
    "/mobile-api/conversations/%00/",
    "/mobile-api/conversations/%ED%A0%80/",
    "/mobile-api/conversations/%D9%A3/",
    "/mobile-api/conversations/1%2F2/",
    "/mobile-api/conversations/{id}/%2e%2e/",
    "/mobile-api/conversations/{id}/nope/",
    "/mobile-api//conversations/",
    "/mobile-api/my-orders/{id}/tracker/x/",
    "/mobile-api/my-orders/99999999999999999999999/tracker/",
    "/mobile-api/my-orders/%FF/tracker/",
    "/mobile-api/" + "a/" * 2000,
]


def test_unknown_and_malformed_mobile_api_paths_get_json_404s(callers, log):
    order, users = callers
    for path in PATHS:
        for caller in users:
            for method in ("GET", "POST"):
                answer = caller.ask(method, path.format(id=order.pk), [(b"Content-Type", JSON_TYPE)], b"{}")
                if answer.status < 300 and "{id}" not in path:
                    caller.wrong.append(f"{method} {path}: {answer.status}, no route should answer it")
    for caller in users:
        caller.assert_nothing_wrong()
    log.clean()


def test_a_request_that_is_not_http_gets_the_servers_own_400(worker, log):
    """Bytes past ASCII in the request line, control bytes in a header: the
    server refuses them before the app (a plain-text 400, the connection
    closed); docs/mobile-api.md, "Errors"."""
    for target, headers in (
        (b"/mobile-api/\xff\xfe/", []),
        (b"/mobile-api/conversations/\x01/", []),
        (b"/mobile-api/my-orders/", [(b"Authorization", b"Token \x00")]),
        (b"/mobile-api/my-orders/", [(b"X-Anything", b"a\x7fb")]),
    ):
        answer = raw_http(worker, "GET", target, headers)
        assert answer.status == 400 and answer.header("content-type").startswith("text/plain"), (target, answer)
    log.clean()


def test_a_host_the_server_does_not_serve_gets_a_json_answer(callers, log):
    order, users = callers
    caller = users[0]
    for route in mobile_api_routes():
        answer = caller.ask("GET", url_of(route, order.pk), host=b"evil.example")
        # The tracker, an ASGI route of its own, needs no host: its usual 404.
        assert answer.status == (404 if route.endswith("/tracker/") else 400), (route, answer)
    caller.assert_nothing_wrong()
    assert [line for line in log.lines() if " ERROR " in line and "DisallowedHost" not in line] == []


def test_a_host_the_server_does_not_serve_is_no_error_in_the_log(callers, log):
    order, users = callers
    users[0].ask("GET", url_of("mobile-api/my-orders/", order.pk), host=b"evil.example")
    log.clean()


def test_what_a_view_refuses_itself_is_json_whatever_the_client_accepts(worker, people, log):
    customer, order, agent, _ = people
    other_agent = factories.EmployeeFactory(email="eve@booktime.domain")
    caller = Caller(worker, agent)
    html = [(b"Accept", b"text/html"), (b"Content-Type", JSON_TYPE)]
    refused = caller.ask("POST", f"/mobile-api/conversations/{order.pk}/messages/", html, b'{"message": 1}')
    assert refused.status == 400 and json.loads(refused.body)["code"] == "bad_message"
    assert Caller(worker, other_agent).ask("POST", f"/mobile-api/conversations/{order.pk}/claim/").status == 200
    held = caller.ask("POST", f"/mobile-api/conversations/{order.pk}/claim/", html, b"{}")
    body = json.loads(held.body)
    assert held.status == 409 and body["code"] == "held" and body["assigned_to"]["id"] == other_agent.pk
    # A format the API does not have (the browsable API's) is a JSON 404.
    unknown = caller.ask("POST", f"/mobile-api/conversations/{order.pk}/claim/?format=api", html, b"{}")
    assert unknown.status == 404 and json.loads(unknown.body)["code"] == "not_found"
    caller.assert_nothing_wrong()
    log.clean()


def test_a_refused_login_is_json_whatever_the_client_accepts(worker, people, log):
    html = raw_http(worker, "POST", "/mobile-api/auth/", [(b"Accept", b"text/html"), (b"Content-Type", JSON_TYPE)])
    api = raw_http(worker, "POST", "/mobile-api/auth/?format=api", [(b"Content-Type", JSON_TYPE)], b"{}")
    assert (wrong(html, "POST"), wrong(api, "POST")) == (None, None)


def test_each_kind_of_hostile_request_gets_its_documented_code(callers, log):
    order, users = callers
    caller = users[0]
    messages = f"/mobile-api/conversations/{order.pk}/messages/"
    as_json = [(b"Content-Type", JSON_TYPE)]
    for method, target, headers, body, status, code in [
        ("POST", messages, as_json, b"[" * 100_000 + b"]" * 100_000, 400, "parse_error"),
        ("POST", messages, as_json, b'{"message": NaN}', 400, "parse_error"),
        ("POST", messages, as_json, b'{"message": "\xff"}', 400, "parse_error"),
        ("POST", messages, [(b"Content-Type", b"application/json; charset=zlib")], b"{}", 400, "parse_error"),
        ("POST", messages, as_json, b'{"message": "' + b"x" * HUGE + b'"}', 413, "too_large"),
        (
            "POST",
            messages,
            [(b"Content-Type", FORM_TYPE)],
            b"&".join(b"f%d=1" % n for n in range(MANY)),
            400,
            "too_many_fields",
        ),
        ("GET", messages + "?" + "&".join(f"f{n}=1" for n in range(MANY)), [], b"", 400, "too_many_fields"),
        ("POST", messages, [(b"Content-Type", b"text/plain")], b"hello", 415, "unsupported_media_type"),
        ("GET", messages + "?after_seq=-1", [], b"", 400, "invalid"),
        ("GET", "/mobile-api/conversations/?status=%F0%9F%92%A9", [], b"", 400, "invalid"),
        ("GET", "/mobile-api/conversations/99999999999999999999999/", [], b"", 404, "not_found"),
        ("GET", "/mobile-api/conversations/%FF/", [], b"", 404, "not_found"),
        ("GET", "/mobile-api/nope/", [], b"", 404, "not_found"),
        ("GET", "/mobile-api/schema/?format=xml", [], b"", 404, "not_found"),
        ("OPTIONS", "/mobile-api/docs/", [], b"", 405, "method_not_allowed"),
    ]:
        answer = caller.ask(method, target, headers, body)
        assert (answer.status, json.loads(answer.body)["code"]) == (status, code), (target[:80], body[:40], answer)
    # A client that accepts nothing the API has gets JSON all the same.
    answer = caller.ask("GET", "/mobile-api/my-orders/", [(b"Accept", b"application/xml")])
    assert answer.status == 200 and isinstance(json.loads(answer.body), list)
    caller.assert_nothing_wrong()
    log.clean()
