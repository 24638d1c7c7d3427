"""The conversations API end to end: real workers on loopback (two where a
customer and an agent are on different processes), real HTTP and WebSocket
clients, the test PostgreSQL and Redis."""

import json
import threading

import pytest
from websockets.exceptions import ConnectionClosed

from main import factories, models

from ..clients import TIMEOUT, ChatClient, api, open_chat, recv, token

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # ChatClient keeps its socket across reconnects, outside a `with` block.
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]

BASE = "/mobile-api/conversations/"


@pytest.fixture
def two(worker_server):
    """Two workers sharing PostgreSQL and Redis."""
    return worker_server(), worker_server()


@pytest.fixture
def cast(people):
    customer, order, agent, other = people
    other_agent = factories.EmployeeFactory(email="eve@booktime.domain", first_name="Eve", last_name="Hall")
    return customer, order, agent, other, other_agent


def until_conversation(client, **match):
    """The next `conversation` event (v2) with these values."""
    return client.until("conversation", **match)


def test_status_follows_the_messages_with_a_customer_and_an_agent_on_two_workers(two, cast):
    one, other = two
    customer, order, agent, _, _ = cast
    c = ChatClient(one, order.pk, customer)
    a = ChatClient(other, order.pk, agent)
    c.say("My book arrived damaged")
    a.until("chat_message", message="My book arrived damaged")
    waiting = until_conversation(a, status="waiting")
    assert waiting["waiting_since"] and waiting["assigned_to"] is None
    status, listed = api(other, "GET", BASE, agent)
    assert status == 200 and [(i["order_id"], i["status"]) for i in listed] == [(order.pk, "waiting")]

    a.say("Sorry to hear that: a new copy is on its way")
    until_conversation(c, status="answered", waiting_since=None)
    assert api(one, "GET", f"{BASE}{order.pk}/", customer)[1]["status"] == "answered"

    status, resolved = api(other, "POST", f"{BASE}{order.pk}/resolve/", agent)
    assert status == 200 and resolved["status"] == "resolved"
    until_conversation(c, status="resolved")
    c.say("Thanks! One more thing")
    until_conversation(a, status="waiting")
    assert api(one, "GET", f"{BASE}?status=waiting", agent)[1][0]["order_id"] == order.pk


def test_customers_see_their_own_conversations_and_no_employee_field(worker_server, cast):
    server = worker_server()
    customer, order, agent, other, _ = cast
    others_order = factories.OrderFactory(user=other)
    for who, where in ((customer, order), (other, others_order)):
        assert api(server, "POST", f"{BASE}{where.pk}/messages/", who, {"message": "Hello"})[0] == 201
    status, mine = api(server, "GET", BASE, customer)
    assert status == 200 and [i["order_id"] for i in mine] == [order.pk]
    [item] = mine
    assert "customer" not in item and "online" not in item
    assert item["queue"]["position"] in (1, 2) and item["queue"]["waiting"] == 2
    assert api(server, "GET", f"{BASE}{others_order.pk}/", customer)[0] == 404
    assert api(server, "GET", f"{BASE}{others_order.pk}/messages/", customer)[0] == 404

    status, everyone = api(server, "GET", BASE, agent)
    assert {i["order_id"] for i in everyone} == {order.pk, others_order.pk}
    assert all(i["customer"]["email"] and i["online"] is False and "queue" not in i for i in everyone)


def test_bad_filters_and_unknown_orders_get_json_answers(worker_server, cast):
    server = worker_server()
    customer, order, agent, _, _ = cast
    status, body = api(server, "GET", f"{BASE}?status=lost", agent)
    assert status == 400 and body["code"] == "invalid" and "status" in body["errors"]
    assert api(server, "GET", f"{BASE}?assigned=everyone", agent)[0] == 400
    assert api(server, "GET", f"{BASE}?limit=0", agent)[0] == 400
    assert api(server, "GET", f"{BASE}{order.pk}/messages/?after_seq=-1", agent)[0] == 400
    status, body = api(server, "GET", f"{BASE}{order.pk + 1000}/", agent)
    assert (status, body["code"]) == (404, "not_found")
    assert api(server, "GET", BASE)[0] == 401
    status, body = api(server, "POST", f"{BASE}{order.pk}/claim/", customer)
    assert (status, body["code"]) == (403, "permission_denied")
    status, body = api(server, "POST", f"{BASE}{order.pk}/assign/", agent, {"user_id": customer.pk})
    assert status == 400 and body["errors"]["user_id"]
    status, body = api(server, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": "   "})
    assert (status, body["code"]) == (400, "empty_message")
    status, body = api(
        server, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": "x", "client_id": "no spaces"}
    )
    assert status == 400 and "client_id" in body["errors"]


def test_messages_come_in_pages_by_seq(worker_server, cast):
    server = worker_server()
    customer, order, agent, _, _ = cast
    for n in range(1, 8):
        models_user = customer if n % 2 else agent
        assert api(server, "POST", f"{BASE}{order.pk}/messages/", models_user, {"message": f"m{n}"})[0] == 201
    status, latest = api(server, "GET", f"{BASE}{order.pk}/messages/?limit=3", customer)
    assert [m["seq"] for m in latest["messages"]] == [5, 6, 7] and latest["has_more"]
    older = api(server, "GET", f"{BASE}{order.pk}/messages/?before_seq=5&limit=3", customer)[1]
    assert [m["seq"] for m in older["messages"]] == [2, 3, 4] and older["has_more"]
    after = api(server, "GET", f"{BASE}{order.pk}/messages/?after_seq=5", customer)[1]
    assert [m["seq"] for m in after["messages"]] == [6, 7] and not after["has_more"]
    first = older["messages"][0]
    assert set(first) == {"id", "seq", "username", "message", "created", "employee", "mine"}
    assert (first["username"], first["employee"], first["mine"]) == ("Adam Ford", True, False)


def test_a_message_sent_through_the_api_reaches_v1_and_v2_sockets_once(two, cast):
    one, other = two
    customer, order, agent, _, _ = cast
    phone = open_chat(one, order.pk, token_query=token(customer))  # v1, the chapter's app
    page = ChatClient(other, order.pk, agent)
    recv(phone, "chat_join")

    status, sent = api(one, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": "Hi", "client_id": "m-1"})
    assert status == 201
    assert (sent["seq"], sent["mine"], sent["client_id"]) == (1, True, "m-1")
    assert recv(phone, "chat_message") == {"type": "chat_message", "username": "Jane Doe", "message": "Hi"}
    seen = page.until("chat_message", message="Hi")
    assert seen["id"] == sent["id"] and "client_id" not in seen

    status, again = api(other, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": "Hi", "client_id": "m-1"})
    assert status == 200 and (again["id"], again["seq"]) == (sent["id"], 1)
    page.quiet(0.5)  # not sent again
    with pytest.raises(TimeoutError):
        while recv(phone)["type"] != "chat_message":
            pass
    assert models.ChatMessage.objects.filter(order=order).count() == 1
    phone.close()


def test_exactly_once_over_sockets_rest_a_reconnect_and_two_workers(two, cast):
    """The same client_id over the socket twice (the second after a
    reconnect to the other worker), and over REST: one row, one fan-out,
    every answer with the same id and seq. Another sender's same client_id
    is a message of its own."""
    one, other = two
    customer, order, agent, _, _ = cast
    c = ChatClient(one, order.pk, customer)
    a = ChatClient(other, order.pk, agent)
    c.say("Is it shipped?", client_id="q-1")
    first = c.until("chat_message", ref="Is it shipped?")
    assert first["client_id"] == "q-1"
    a.until("chat_message", message="Is it shipped?")

    c.ws.close()
    c.connect(other, resume=True)  # the acknowledgement was lost: sent again, to the other worker
    c.say("Is it shipped?", client_id="q-1")
    again = c.until("chat_message", ref="Is it shipped?")
    assert (again["id"], again["seq"]) == (first["id"], first["seq"])
    status, by_rest = api(one, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": "?", "client_id": "q-1"})
    assert status == 200 and (by_rest["id"], by_rest["seq"]) == (first["id"], first["seq"])
    a.quiet(0.5)  # the agent got it once

    a.say("Yes, yesterday", client_id="q-1")  # the same client id, another sender
    reply = a.until("chat_message", ref="Yes, yesterday")
    assert reply["seq"] == first["seq"] + 1
    rows = list(models.ChatMessage.objects.filter(order=order).order_by("seq").values_list("text", "client_id"))
    assert rows == [("Is it shipped?", "q-1"), ("Yes, yesterday", "q-1")]


def test_two_agents_claim_at_once_on_two_workers_and_one_wins(two, cast):
    one, other = two
    customer, order, agent, _, other_agent = cast
    api(one, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": "Help"})
    start, answers = threading.Barrier(2), {}

    def claim(server, who):
        start.wait(TIMEOUT)
        answers[who.pk] = api(server, "POST", f"{BASE}{order.pk}/claim/", who)

    threads = [threading.Thread(target=claim, args=a) for a in ((one, agent), (other, other_agent))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * TIMEOUT)
    statuses = sorted(status for status, _ in answers.values())
    assert statuses == [200, 409]
    winner = next(pk for pk, (status, _) in answers.items() if status == 200)
    loser_body = next(body for status, body in answers.values() if status == 409)
    assert loser_body["code"] == "held" and loser_body["assigned_to"]["id"] == winner
    assert models.Conversation.objects.get(order=order).assigned_to_id == winner

    loser = agent if winner != agent.pk else other_agent
    assert api(one, "POST", f"{BASE}{order.pk}/release/", loser)[0] == 409
    assert (
        api(other, "POST", f"{BASE}{order.pk}/release/", models.User.objects.get(pk=winner))[1]["assigned_to"] is None
    )
    status, assigned = api(one, "POST", f"{BASE}{order.pk}/assign/", loser, {"user_id": loser.pk})
    assert status == 200 and assigned["assigned_to"]["id"] == loser.pk
    assert api(one, "GET", f"{BASE}?assigned=me", loser)[1][0]["order_id"] == order.pk
    assert api(one, "GET", f"{BASE}?assigned=none", loser)[1] == []


def test_reading_through_the_api_moves_the_marker_and_the_unread_count(worker_server, cast):
    server = worker_server()
    customer, order, agent, _, _ = cast
    for text in ("one", "two", "three"):
        api(server, "POST", f"{BASE}{order.pk}/messages/", customer, {"message": text})
    assert api(server, "GET", f"{BASE}{order.pk}/", agent)[1]["unread"] == 3
    status, after = api(server, "POST", f"{BASE}{order.pk}/read/", agent, {"seq": 2})
    assert status == 200 and after["unread"] == 1
    assert api(server, "POST", f"{BASE}{order.pk}/read/", agent, {"seq": 1})[1]["unread"] == 1  # never back
    assert api(server, "POST", f"{BASE}{order.pk}/read/", agent, {"seq": "x"})[0] == 400


def test_a_waiting_customer_is_told_where_they_stand(worker_server, cast):
    server = worker_server()
    customer, order, agent, other, _ = cast
    ahead = factories.OrderFactory(user=other)
    api(server, "POST", f"{BASE}{ahead.pk}/messages/", other, {"message": "I was first"})
    c = ChatClient(server, order.pk, customer)
    c.say("Where is my book?")
    place = c.until("queue")
    assert (place["position"], place["waiting"], place["agents_online"]) == (2, 2, 0)
    assert place["message"].startswith("Nobody from customer service is online right now.")

    api(server, "POST", f"{BASE}{ahead.pk}/messages/", agent, {"message": "Answered"})  # the one ahead is answered
    assert c.until("queue", position=1)["waiting"] == 1
    status, mine = api(server, "GET", f"{BASE}{order.pk}/", customer)
    assert mine["queue"]["position"] == 1

    # Answered, then waiting again at the same place: told it again.
    api(server, "POST", f"{BASE}{order.pk}/messages/", agent, {"message": "On its way"})
    c.until("conversation", status="answered")
    c.say("Thanks, one more thing")
    assert c.until("queue", position=1)["waiting"] == 1


def test_employees_get_no_queue_and_v1_gets_no_conversation_events(worker_server, cast):
    server = worker_server()
    customer, order, agent, _, _ = cast
    phone = open_chat(server, order.pk, token_query=token(customer))
    a = ChatClient(server, order.pk, agent)
    phone.send(json.dumps({"type": "message", "message": "from the phone"}))
    a.until("chat_message", message="from the phone")
    a.until("conversation", status="waiting")
    with pytest.raises((TimeoutError, ConnectionClosed)):
        while True:
            event = a.next(0.5)
            assert event["type"] != "queue"
    kinds = set()
    with pytest.raises(TimeoutError):
        while True:
            kinds.add(recv(phone)["type"])
    assert kinds <= {"chat_join", "chat_message"}
    phone.close()
