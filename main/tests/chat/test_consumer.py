"""The chat consumer's rules, through channels.testing communicators against
the real channel layer (Redis) and PostgreSQL. The end-to-end tests with a
real server and client are in test_e2e.py."""

import asyncio
import gc
import weakref

import pytest
from autobahn.exception import Disconnected
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from main import factories, models, presence
from main.chat import consumer, service
from main.chat.consumer import ChatConsumer
from main.chat.limits import STRIKE_LIMIT, RateLimiter, Strikes
from main.chat.protocol import V2_SUBPROTOCOL, ChatError
from main.infra import access_changes
from main.infra.answers import CLOSE_TRY_AGAIN_LATER
from main.infra.redis_client import close_redis, get_redis

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 3


@pytest.fixture
def people():
    customer = factories.UserFactory(email="jane_doe@example.com", first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(email="agent@booktime.domain")  # no name: shown by email
    other = factories.UserFactory(email="other@example.com")
    return customer, order, agent, other


@pytest.fixture(autouse=True)
async def redis_pool():
    yield
    await close_redis()


def communicator(user, order_id, v2=False, query="", server=None):
    """A client of a chat consumer; `server` wraps the consumer as a server would."""
    path = f"/ws/customer-service/{order_id}/" + (f"?{query}" if query else "")
    app = ChatConsumer.as_asgi() if server is None else server
    c = WebsocketCommunicator(app, path, subprotocols=[V2_SUBPROTOCOL] if v2 else None)
    c.scope["user"] = user
    c.scope["url_route"] = {"kwargs": {"order_id": order_id}}
    return c


async def connected(user, order_id, v2=False, query="", server=None):
    c = communicator(user, order_id, v2, query, server)
    ok, subprotocol = await c.connect(timeout=TIMEOUT)
    assert ok
    assert subprotocol == (V2_SUBPROTOCOL if v2 else None)
    return c


async def receive(c, kind=None):
    """The next event (of type `kind`, skipping others when given)."""
    while True:
        event = await c.receive_json_from(timeout=TIMEOUT)
        if kind is None or event["type"] == kind:
            return event


async def redis_keys(order_id):
    """Keys and pub/sub channels about this order's chat (channel-layer
    groups of either layer)."""
    return (
        [key async for key in get_redis().scan_iter(f"*customer-service_{order_id}[_]*")]
        + [key async for key in get_redis().scan_iter(f"*customer-service_{order_id}")]
        + await get_redis().pubsub_channels(f"*customer-service_{order_id}")
    )


@pytest.fixture
def list_layer(settings):
    """channels_redis's list-based layer (CHANNEL_LAYER=redis) for this test."""
    settings.CHANNEL_LAYERS = {"default": settings.CHANNEL_LAYER_CONFIGS["redis"]}


def v1_message(username, text):
    """A chat_message as v1 has it: the chapter's three keys, nothing more."""
    return {"type": "chat_message", "username": username, "message": text}


async def test_v1_gets_the_chapters_exact_shapes_and_no_v2_events(people):
    customer, order, agent, _ = people
    v1 = await connected(customer, order.pk)
    v2 = await connected(agent, order.pk, v2=True)
    assert await v1.receive_json_from(timeout=TIMEOUT) == {"type": "chat_join", "username": "Jane Doe"}
    assert await v1.receive_json_from(timeout=TIMEOUT) == {"type": "chat_join", "username": "agent@booktime.domain"}

    await v2.send_json_to({"type": "typing"})
    await v2.send_json_to({"type": "read", "id": 1})
    await v2.send_json_to({"type": "history"})
    await v2.send_json_to({"type": "nonsense"})
    await v2.send_json_to({"type": "message", "message": "Hello Jane"})
    assert await v1.receive_json_from(timeout=TIMEOUT) == {
        "type": "chat_message",
        "username": "agent@booktime.domain",
        "message": "Hello Jane",
    }
    await v2.disconnect()
    assert await v1.receive_json_from(timeout=TIMEOUT) == {"type": "chat_leave", "username": "agent@booktime.domain"}
    assert await v1.receive_nothing(timeout=0.3)
    await v1.disconnect()


async def test_v2_events_carry_ids_timestamps_and_are_stored_first(people):
    customer, order, agent, _ = people
    c = await connected(customer, order.pk, v2=True)
    ready = await receive(c, "ready")
    assert ready["you"] == {"username": "Jane Doe", "employee": False}
    assert ready["limits"]["max_message_chars"] > 0
    assert (await receive(c, "history"))["messages"] == []
    assert (await receive(c, "chat_join"))["mine"] is True
    a = await connected(agent, order.pk, v2=True)
    join = await receive(c, "chat_join")
    assert join["username"] == "agent@booktime.domain" and join["employee"] is True

    await a.send_json_to({"type": "message", "message": "Hi, how can I help?"})
    event = await receive(c, "chat_message")
    stored = await database_sync_to_async(models.ChatMessage.objects.get)(pk=event["id"])
    assert stored.text == "Hi, how can I help?" and stored.user_id == agent.pk and stored.order_id == order.pk
    assert event["created"].endswith("Z") and event["employee"] is True and event["mine"] is False
    assert (await receive(a, "chat_message"))["mine"] is True

    await a.send_json_to({"type": "typing"})
    assert await receive(c, "typing") == {"type": "typing", "username": "agent@booktime.domain"}
    await c.send_json_to({"type": "read", "id": event["id"]})
    read = await receive(a, "read")
    assert read["id"] == event["id"] and read["username"] == "Jane Doe" and read["mine"] is False
    await c.send_json_to({"type": "read", "id": 0})  # markers never move back...
    assert (await receive(a, "read"))["id"] == event["id"]
    await c.send_json_to({"type": "read", "id": 10**9})  # ...nor past the last message
    assert (await receive(a, "read"))["id"] == event["id"]
    await a.disconnect()
    # A later socket learns the markers on connect.
    a = await connected(agent, order.pk, v2=True)
    assert (await receive(a, "ready"))["reads"] == [{"username": "Jane Doe", "id": event["id"], "mine": False}]
    await a.disconnect()
    await c.disconnect()


class Remembered(ChatConsumer):
    """A chat consumer whose instances can be looked for after they end."""

    instances = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instances.append(weakref.ref(self))


@pytest.fixture
def no_collector():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


async def test_a_closed_chat_is_freed_without_the_garbage_collector(people, no_collector):
    # Freed as it ends, not left as cyclic garbage: a worker holding
    # thousands of sockets pauses for each full collection.
    customer, order, agent, _ = people
    Remembered.instances.clear()
    c = await connected(customer, order.pk, v2=True, server=Remembered.as_asgi())
    a = await connected(agent, order.pk, v2=True, server=Remembered.as_asgi())
    await c.send_json_to({"type": "message", "message": "hello"})
    await receive(a, "chat_message")
    await c.send_json_to({"type": "heartbeat"})
    await c.disconnect()
    await a.disconnect()
    assert len(Remembered.instances) == 2
    assert [ref() for ref in Remembered.instances] == [None, None]


async def test_a_chat_that_crashes_lets_go_of_what_watched_for_it(people):
    # Ended by an error, not by its client's close: no access change
    # reaches it afterwards, and the process's listener no longer holds it.
    from channels.layers import get_channel_layer

    customer, order, _, _ = people
    Remembered.instances.clear()
    c = await connected(customer, order.pk, v2=True, server=Remembered.as_asgi())
    await receive(c, "ready")
    chat = Remembered.instances[0]()
    watch = chat.watch
    await get_channel_layer().send(chat.channel_name, {"type": "no.such.event"})
    with pytest.raises(ValueError, match="No handler for message type no.such.event"):
        await c.wait(TIMEOUT)
    assert chat.closing and watch.callback is None
    assert all(watch not in watchers for watchers in access_changes.listener().watchers.values())
    assert chat.place is None or chat.place.tell is None


async def test_unicode_is_stored_and_echoed_exactly(people):
    customer, order, _, _ = people
    c = await connected(customer, order.pk, v2=True)
    text = "<b>héllo</b> &amp; 🙂 مرحبا 你好 \u200d\n  spaced  "
    await c.send_json_to({"type": "message", "message": text})
    event = await receive(c, "chat_message")
    assert event["message"] == text
    stored = await database_sync_to_async(models.ChatMessage.objects.get)(pk=event["id"])
    assert stored.text == text
    await c.disconnect()


@pytest.mark.parametrize(
    "frame, code",
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_frame"),
        ('"message"', "bad_frame"),
        ('{"message": "no type"}', "unknown_type"),
        ('{"type": "shout", "message": "x"}', "unknown_type"),
        ('{"type": "message"}', "bad_message"),
        ('{"type": "message", "message": 42}', "bad_message"),
        ('{"type": "message", "message": ""}', "empty_message"),
        ('{"type": "message", "message": " \\n\\t "}', "empty_message"),
        ('{"type": "message", "message": "a\\u0000b"}', "bad_message"),
        ('{"type": "message", "message": "\\ud800"}', "bad_message"),
        ('{"type": "message", "message": "%s"}' % ("x" * 2001), "too_long"),
        ('{"type": "message", "message": "%s"}' % ("x" * 20000), "too_large"),
        ('{"type": "history", "before": "x"}', "bad_request"),
        ('{"type": "history", "limit": 0}', "bad_request"),
        ('{"type": "resume"}', "bad_request"),
        ('{"type": "read", "id": -1}', "bad_request"),
    ],
)
async def test_bad_input_gets_an_error_and_the_chat_goes_on(people, frame, code):
    customer, order, agent, _ = people
    c = await connected(customer, order.pk, v2=True)
    other = await connected(agent, order.pk)  # v1
    await receive(c, "history")
    await c.send_to(text_data=frame)
    error = await receive(c, "error")
    assert error["code"] == code and error["message"]
    await c.send_json_to({"type": "message", "message": "still here"})
    assert (await receive(c, "chat_message"))["message"] == "still here"
    assert (await receive(other, "chat_message"))["message"] == "still here"
    assert await database_sync_to_async(models.ChatMessage.objects.count)() == 1
    await c.disconnect()
    await other.disconnect()


async def test_binary_frames_are_refused_as_an_error(people):
    customer, order, _, _ = people
    c = await connected(customer, order.pk, v2=True)
    await c.send_to(bytes_data=b'{"type": "message", "message": "x"}')
    assert (await receive(c, "error"))["code"] == "bad_frame"
    await c.disconnect()


async def test_v1_bad_input_is_dropped_silently_and_the_chat_goes_on(people):
    customer, order, _, _ = people
    c = await connected(customer, order.pk)
    assert await c.receive_json_from(timeout=TIMEOUT) == {"type": "chat_join", "username": "Jane Doe"}
    for frame in ("not json", "[]", '{"type": "history"}', '{"type": "message", "message": "  "}'):
        await c.send_to(text_data=frame)
    await c.send_to(bytes_data=b"\x00\x01")
    assert await c.receive_nothing(timeout=0.3)
    await c.send_json_to({"type": "message", "message": "ok"})
    assert await c.receive_json_from(timeout=TIMEOUT) == v1_message("Jane Doe", "ok")
    await c.disconnect()


async def test_a_flood_is_rate_limited_per_socket(people, settings):
    customer, order, agent, _ = people
    # Storing the burst must not refill the bucket, however slow the machine.
    settings.CHAT_RATE_PER_SECOND = 0.01
    c = await connected(customer, order.pk, v2=True)
    a = await connected(agent, order.pk, v2=True)
    await receive(c, "history")
    for n in range(settings.CHAT_RATE_BURST + 3):
        await c.send_json_to({"type": "message", "message": f"spam {n}"})
    # The refusals are sent at once; the echoes come back through the channel
    # layer, so the two may interleave.
    sent, errors = [], []
    while len(sent) < settings.CHAT_RATE_BURST or not errors:
        event = await receive(c)
        if event["type"] == "chat_message":
            sent.append(event["message"])
        elif event["type"] == "error":
            errors.append(event)
    assert sent == [f"spam {n}" for n in range(settings.CHAT_RATE_BURST)]
    assert errors[0]["code"] == "rate_limited" and errors[0]["retry_after"] > 0
    # Another socket is not limited by this one.
    await a.send_json_to({"type": "message", "message": "agent speaking"})
    while (event := await receive(a, "chat_message"))["message"] != "agent speaking":
        assert event["message"].startswith("spam")
    stored = await database_sync_to_async(models.ChatMessage.objects.count)()
    assert stored == settings.CHAT_RATE_BURST + 1
    await c.disconnect()
    await a.disconnect()


def test_rate_limiter_refills_over_time():
    now = [0.0]
    limiter = RateLimiter(2, 1.0, clock=lambda: now[0])
    limiter.take()
    limiter.take()
    with pytest.raises(ChatError) as refused:
        limiter.take()
    assert refused.value.code == "rate_limited" and refused.value.extra["retry_after"] == 1.0
    now[0] = 1.0
    limiter.take()


@pytest.mark.parametrize("who", ["anonymous", "other", "unknown", "not a number", "huge", "negative"])
async def test_refusals_leave_nothing_behind(people, who):
    customer, order, agent, other = people
    user, order_id = {
        "anonymous": (AnonymousUser(), order.pk),
        "other": (other, order.pk),
        "unknown": (customer, order.pk + 1000),
        "not a number": (customer, "12abc"),
        "huge": (customer, 10**30),
        "negative": (customer, -1),
    }[who]
    keys_before = await redis_keys(order.pk)  # (a killed server may have left some in a previous run)
    c = communicator(user, order_id, v2=True)
    ok, code = await c.connect(timeout=TIMEOUT)
    assert not ok
    await c.wait(timeout=TIMEOUT)  # the consumer has ended
    assert await redis_keys(order.pk) == keys_before
    await database_sync_to_async(order.refresh_from_db)()
    assert order.last_spoken_to_id is None


async def test_employee_joining_is_recorded_customer_is_not(people):
    customer, order, agent, _ = people
    c = await connected(customer, order.pk)
    await database_sync_to_async(order.refresh_from_db)()
    assert order.last_spoken_to_id is None
    a = await connected(agent, order.pk)
    await database_sync_to_async(order.refresh_from_db)()
    assert order.last_spoken_to_id == agent.pk
    await a.disconnect()
    await c.disconnect()


async def test_heartbeat_marks_presence(people):
    customer, order, _, _ = people
    c = await connected(customer, order.pk)
    await c.send_json_to({"type": "heartbeat"})
    await c.receive_json_from(timeout=TIMEOUT)  # own join
    await c.disconnect(timeout=TIMEOUT)  # a socket leaves once its last heartbeat has landed
    assert (order.pk, customer.email) in {(p.order_id, p.email) for p in (await presence.snapshot()).people}


async def test_history_pages_back_to_the_first_message(people, settings):
    customer, order, agent, _ = people

    def store(n):
        models.ChatMessage.objects.bulk_create(
            models.ChatMessage(order=order, seq=i + 1, user=customer if i % 2 else agent, text=f"m{i}")
            for i in range(n)
        )

    await database_sync_to_async(store)(120)
    c = await connected(customer, order.pk, v2=True)
    first = await receive(c, "history")
    assert [m["message"] for m in first["messages"]] == [f"m{i}" for i in range(70, 120)]
    assert first["has_more"] is True
    assert first["messages"][0]["employee"] is True and first["messages"][1]["employee"] is False
    texts = [m["message"] for m in first["messages"]]
    before = first["messages"][0]["id"]
    while True:
        await c.send_json_to({"type": "history", "before": before, "limit": 30})
        page = await receive(c, "history")
        texts = [m["message"] for m in page["messages"]] + texts
        if not page["has_more"]:
            break
        before = page["messages"][0]["id"]
    assert texts == [f"m{i}" for i in range(120)]
    await c.disconnect()


async def test_resume_sends_exactly_what_was_missed_in_order(people, settings):
    settings.CHAT_RATE_BURST = 20
    customer, order, agent, _ = people
    a = await connected(agent, order.pk, v2=True)
    for n in range(3):
        await a.send_json_to({"type": "message", "message": f"seen {n}"})
    seen = [(await receive(a, "chat_message"))["id"] for _ in range(3)]
    for n in range(4):
        await a.send_json_to({"type": "message", "message": f"missed {n}"})
    for _ in range(4):
        await receive(a, "chat_message")

    c = await connected(customer, order.pk, v2=True, query=f"after={seen[-1]}")
    await receive(c, "ready")
    replayed = []
    while (event := await receive(c))["type"] != "resumed":
        if event["type"] == "chat_message":
            replayed.append(event["message"])
    assert replayed == [f"missed {n}" for n in range(4)]
    assert event["has_more"] is False
    await a.send_json_to({"type": "message", "message": "live"})
    assert (await receive(c, "chat_message"))["message"] == "live"
    # A resume frame works the same way, from any id.
    await c.send_json_to({"type": "resume", "after": seen[0]})
    again = []
    while (event := await receive(c))["type"] != "resumed":
        again.append(event["message"])
    assert again == ["seen 1", "seen 2"] + [f"missed {n}" for n in range(4)] + ["live"]
    assert await c.receive_nothing(timeout=0.3)
    await a.disconnect()
    await c.disconnect()


async def test_resume_by_seq_gets_a_message_that_was_fanned_out_late(people):
    """Two messages are stored (seq 1, 2) but only the later one reaches the
    client live, as when two server processes fan out out of order. The
    client keeps the highest seq up to which it has everything (0 here), so
    its resume brings back the one it missed, in order, once."""
    from channels.layers import get_channel_layer

    customer, order, agent, _ = people
    c = await connected(customer, order.pk, v2=True)
    assert (await receive(c, "history"))["messages"] == []
    member = (await service.open_chat(agent, order.pk)).member
    first, _ = await service.send_message(member, "stored first, delivered late")
    second, _ = await service.send_message(member, "stored second, delivered first")
    assert (first["seq"], second["seq"]) == (1, 2)
    await get_channel_layer().group_send(service.group_name(order.pk), second)  # `first` is still on its way

    have = {}  # what the client holds, by seq, as the chat page keeps it
    event = await receive(c, "chat_message")
    have[event["seq"]] = event["message"]
    contiguous = max((n for n in range(len(have) + 1) if all(s in have for s in range(1, n + 1))), default=0)
    assert contiguous == 0  # the highest id seen (second's) would have skipped `first`
    await c.disconnect()  # the connection drops before `first` arrives

    c = await connected(customer, order.pk, v2=True, query=f"after_seq={contiguous}")
    replayed = []
    while (event := await receive(c))["type"] != "resumed":
        if event["type"] == "chat_message":
            replayed.append((event["seq"], event["id"], event["message"]))
    assert replayed == [
        (1, first["id"], "stored first, delivered late"),
        (2, second["id"], "stored second, delivered first"),
    ]
    assert event["last_seq"] == 2 and event["has_more"] is False
    new = [(seq, text) for seq, _, text in replayed if seq not in have]
    assert new == [(1, "stored first, delivered late")]  # exactly the missed one; the page drops the other
    # The resume frame does the same.
    await c.send_json_to({"type": "resume", "after_seq": 1})
    again = []
    while (event := await receive(c))["type"] != "resumed":
        if event["type"] == "chat_message":
            again.append(event["seq"])
    assert again == [2] and event["after_seq"] == 1
    await c.disconnect()


async def test_v1_events_have_no_seq_or_ref(people):
    customer, order, _, _ = people
    c = await connected(customer, order.pk)
    await receive(c, "chat_join")
    await c.send_json_to({"type": "message", "message": "hi", "ref": "r1"})
    assert await c.receive_json_from(timeout=TIMEOUT) == v1_message("Jane Doe", "hi")
    await c.disconnect()


async def test_ref_comes_back_to_its_sender_only_with_its_message_or_error(people, settings):
    settings.CHAT_RATE_BURST = 1
    customer, order, agent, _ = people
    c = await connected(customer, order.pk, v2=True)
    a = await connected(agent, order.pk, v2=True)
    await receive(c, "history")
    await receive(a, "history")
    await c.send_json_to({"type": "message", "message": "one", "ref": "r1"})
    await c.send_json_to({"type": "message", "message": "two", "ref": "r2"})
    # The error may come before the first message's echo (which goes round
    # the channel layer): `ref` says which frame each is about.
    got = {}
    while len(got) < 2:
        event = await receive(c)
        if event["type"] in ("chat_message", "error"):
            got[event["type"]] = event
    own, error = got["chat_message"], got["error"]
    assert own["ref"] == "r1" and own["mine"] is True and own["seq"] == 1
    assert error["code"] == "rate_limited" and error["ref"] == "r2"
    theirs = await receive(a, "chat_message")
    assert theirs["message"] == "one" and "ref" not in theirs
    await c.send_json_to({"type": "message", "message": "x", "ref": 5})
    assert (await receive(c, "error"))["code"] == "bad_request"
    await c.disconnect()
    await a.disconnect()


@pytest.mark.parametrize("v2", [True, False])
async def test_a_socket_that_keeps_being_refused_is_closed_with_1008(people, settings, v2):
    settings.CHAT_RATE_BURST = 20  # frames of any kind: 120 at once, so these are refused for what they are
    customer, order, agent, _ = people
    c = await connected(customer, order.pk, v2=v2)
    other = await connected(agent, order.pk)
    for _ in range(STRIKE_LIMIT - 1):
        await c.send_to(text_data="not json")
    if v2:
        for _ in range(STRIKE_LIMIT - 1):
            assert (await receive(c, "error"))["code"] == "bad_json"
    # One accepted frame starts the count again...
    await c.send_json_to({"type": "heartbeat"})
    for _ in range(STRIKE_LIMIT - 1):
        await c.send_to(text_data="not json")
    await c.send_json_to({"type": "message", "message": "still open"})
    assert (await receive(c, "chat_message"))["message"] == "still open"
    # ...and refusal after refusal ends the socket: policy violation.
    for _ in range(STRIKE_LIMIT):
        await c.send_to(text_data="[]")
    while True:
        output = await c.receive_output(timeout=TIMEOUT)
        if output["type"] == "websocket.close":
            break
        assert output["type"] == "websocket.send"
    assert output["code"] == 1008
    await c.wait(timeout=TIMEOUT)
    # Everyone else chats on.
    await other.send_json_to({"type": "message", "message": "hello?"})
    while (await receive(other, "chat_message"))["message"] != "hello?":
        pass
    await other.disconnect()


def test_strikes_count_only_recent_refusals_in_a_row():
    now = [0.0]
    strikes = Strikes(limit=3, window=10, clock=lambda: now[0])
    assert not strikes.refused() and not strikes.refused()
    now[0] = 11.0  # the first two are out of the window
    assert not strikes.refused() and not strikes.refused()
    assert strikes.refused()
    strikes.accepted()
    assert not strikes.refused()


async def test_a_heartbeat_brings_back_a_group_membership_redis_lost(people, monkeypatch, list_layer):
    """With the list-based layer: Redis restarted without its data, the
    sockets' group memberships are gone, so messages reach nobody until each
    socket's next heartbeat. (The pub/sub layer keeps memberships in the
    process: see system/test_faults.py for a Redis restart with it.)"""
    customer, order, agent, _ = people
    # Clients heartbeat every 10 s, so any renewal interval under that renews
    # on every heartbeat; the test renews on every one rather than wait 5 s.
    assert consumer.GROUP_RENEW_SECONDS < 10
    monkeypatch.setattr(consumer, "GROUP_RENEW_SECONDS", 0.0)
    c = await connected(customer, order.pk, v2=True)
    a = await connected(agent, order.pk, v2=True)
    while (await receive(c, "chat_join"))["username"] != "agent@booktime.domain":
        pass
    await receive(a, "chat_join")

    await get_redis().flushdb()  # what a restart without persistence leaves
    await a.send_json_to({"type": "message", "message": "lost in the void"})
    assert await c.receive_nothing(timeout=0.5)

    for s in (c, a):
        await s.send_json_to({"type": "heartbeat"})
    await a.send_json_to({"type": "message", "message": "back again"})
    assert (await receive(c, "chat_message"))["message"] == "back again"
    # What fan-out missed is stored: a resume brings it.
    await c.send_json_to({"type": "resume", "after_seq": 0})
    assert [(await receive(c, "chat_message"))["message"] for _ in range(2)] == ["lost in the void", "back again"]
    await c.disconnect()
    await a.disconnect()


class GoneClient:
    """The server's side of a chat socket whose client has gone, before the
    consumer has handled the websocket.disconnect: every send is refused, as
    autobahn (runserver's daphne) refuses a send on a closed connection."""

    def __init__(self, app):
        self.app, self.gone, self.refused = app, False, asyncio.Event()

    async def __call__(self, scope, receive, send):
        async def sending(message):
            if self.gone:
                self.refused.set()
                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        return await self.app(scope, receive, sending)


async def test_an_event_for_a_socket_closed_under_it_is_dropped_and_its_user_still_leaves(people):
    customer, order, agent, _ = people
    server = GoneClient(ChatConsumer.as_asgi())
    c = await connected(customer, order.pk, v2=True, server=server)
    a = await connected(agent, order.pk, v2=True)

    server.gone = True  # the customer's connection drops as the agent writes
    await a.send_json_to({"type": "message", "message": "still there?", "ref": "q"})
    await asyncio.wait_for(server.refused.wait(), TIMEOUT)  # the customer's consumer tried to pass it on
    await c.send_input({"type": "websocket.disconnect", "code": 1006})

    left = await receive(a, "chat_leave")  # the customer's consumer lived to leave the chat
    assert left["username"] == "Jane Doe"
    await c.wait(TIMEOUT)  # and ended without an error
    await a.disconnect()


class StrictServer:
    """The server's side of a chat socket as uvicorn keeps it: once the
    application has sent websocket.close, any further send is an error."""

    def __init__(self, app):
        self.app, self.after_close = app, []

    async def __call__(self, scope, receive, send):
        closed = False

        async def sending(message):
            nonlocal closed
            if closed:
                self.after_close.append(message["type"])
                raise RuntimeError(f"Unexpected ASGI message '{message['type']}', after sending 'websocket.close'.")
            closed = message["type"] == "websocket.close"
            await send(message)

        return await self.app(scope, receive, sending)


async def test_after_closing_its_socket_a_consumer_sends_nothing_more_and_ends_cleanly(people):
    """The channel layer's subscription broke twice in a row (two `lost`
    events) and the room's events keep coming before the client's
    disconnect arrives: one close, nothing sent after it, no error."""
    from channels.layers import get_channel_layer

    customer, order, agent, _ = people
    server = StrictServer(ChatConsumer.as_asgi())
    c = await connected(customer, order.pk, v2=True, server=server)
    await receive(c, "history")

    group, layer = service.group_name(order.pk), get_channel_layer()
    await layer.group_send(group, {"type": "channel_layer.lost"})
    await layer.group_send(group, {"type": "channel_layer.lost"})
    await layer.group_send(group, {"type": "chat_typing", "username": "Adam Ford", "user_id": agent.pk})
    output = await c.receive_output(TIMEOUT)
    while output["type"] != "websocket.close":
        output = await c.receive_output(TIMEOUT)
    assert output["code"] == CLOSE_TRY_AGAIN_LATER
    assert await c.receive_nothing(0.5)
    await c.send_input({"type": "websocket.disconnect", "code": CLOSE_TRY_AGAIN_LATER})
    await c.wait(TIMEOUT)  # ended without an error
    assert server.after_close == []
