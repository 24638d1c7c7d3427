"""The chat consumer's rules, through channels.testing communicators against
the real channel layer (Redis) and PostgreSQL. The end-to-end tests with a
real server and client are in test_chat_e2e.py."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from main import chat, factories, models
from main.consumers import ChatConsumer
from main.redis_pool import close_redis, get_redis

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


def communicator(user, order_id, v2=False, query=""):
    path = f"/ws/customer-service/{order_id}/" + (f"?{query}" if query else "")
    c = WebsocketCommunicator(ChatConsumer.as_asgi(), path, subprotocols=[chat.V2] if v2 else None)
    c.scope["user"] = user
    c.scope["url_route"] = {"kwargs": {"order_id": order_id}}
    return c


async def connected(user, order_id, v2=False, query=""):
    c = communicator(user, order_id, v2, query)
    ok, subprotocol = await c.connect(timeout=TIMEOUT)
    assert ok
    assert subprotocol == (chat.V2 if v2 else None)
    return c


async def receive(c, kind=None):
    """The next event (of type `kind`, skipping others when given)."""
    while True:
        event = await c.receive_json_from(timeout=TIMEOUT)
        if kind is None or event["type"] == kind:
            return event


async def redis_keys(order_id):
    """Keys about this order's chat: channel-layer groups, presence."""
    return [key async for key in get_redis().scan_iter(f"*customer-service_{order_id}[_]*")] + [
        key async for key in get_redis().scan_iter(f"*customer-service_{order_id}")
    ]


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
    assert await c.receive_json_from(timeout=TIMEOUT) == {
        "type": "chat_message",
        "username": "Jane Doe",
        "message": "ok",
    }
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
    sent = [(await receive(c, "chat_message"))["message"] for _ in range(settings.CHAT_RATE_BURST)]
    assert sent == [f"spam {n}" for n in range(settings.CHAT_RATE_BURST)]
    error = await receive(c, "error")
    assert error["code"] == "rate_limited" and error["retry_after"] > 0
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
    limiter = chat.RateLimiter(2, 1.0, clock=lambda: now[0])
    limiter.take()
    limiter.take()
    with pytest.raises(chat.ChatError) as refused:
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
    await c.receive_json_from(timeout=TIMEOUT)  # own join; the heartbeat was handled before the next frame
    await c.send_json_to({"type": "message", "message": "sync"})
    await c.receive_json_from(timeout=TIMEOUT)
    assert await redis_keys(order.pk) != []
    await c.disconnect()


async def test_history_pages_back_to_the_first_message(people, settings):
    customer, order, agent, _ = people

    def store(n):
        models.ChatMessage.objects.bulk_create(
            models.ChatMessage(order=order, user=customer if i % 2 else agent, text=f"m{i}") for i in range(n)
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
