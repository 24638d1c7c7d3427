"""Conversations derived from the stored messages, and what people do to
them (main/conversations/: store, state, actions, queue), on the real
PostgreSQL."""

import asyncio
from datetime import timedelta

import pytest
from django.utils import timezone

from main import factories, presence
from main.conversations import actions, queue, state
from main.conversations.store import store_messages, store_now
from main.models import Conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cast():
    customer = factories.UserFactory(first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(first_name="Adam", last_name="Ford")
    other_agent = factories.EmployeeFactory(first_name="Eve", last_name="Hall")
    return customer, order, agent, other_agent


def conversation(order):
    return Conversation.objects.get(order=order)


def test_a_customer_s_message_waits_until_an_employee_replies(cast):
    customer, order, agent, _ = cast
    first = store_now(order.pk, customer.pk, "My book arrived damaged")
    store_now(order.pk, customer.pk, "The cover is torn")
    c = conversation(order)
    assert (c.status, c.waiting_since, c.last_seq) == ("waiting", first.created, 2)

    store_now(order.pk, agent.pk, "Sorry to hear that")
    c = conversation(order)
    assert (c.status, c.waiting_since, c.last_employee_seq) == ("answered", None, 3)
    assert c.last_wait_started == first.created and c.last_replied_at is not None

    again = store_now(order.pk, customer.pk, "Thanks! And the invoice?")
    c = conversation(order)
    assert (c.status, c.waiting_since) == ("waiting", again.created)


def test_an_employee_writing_first_leaves_nothing_waiting(cast):
    customer, order, agent, _ = cast
    store_now(order.pk, agent.pk, "Your order has shipped")
    assert conversation(order).status == "answered"


def test_resolved_until_the_customer_writes_again(cast):
    customer, order, agent, _ = cast
    store_now(order.pk, customer.pk, "Where is my order?")
    store_now(order.pk, agent.pk, "On its way")
    actions.resolve(order.pk)
    assert conversation(order).status == "resolved"
    store_now(order.pk, agent.pk, "Tracking number: 42")  # an employee's note keeps it resolved
    assert conversation(order).status == "resolved"
    later = store_now(order.pk, customer.pk, "It has not arrived")
    c = conversation(order)
    assert (c.status, c.waiting_since) == ("waiting", later.created)


def test_reopen_finds_what_waits(cast):
    customer, order, agent, _ = cast
    unanswered = store_now(order.pk, customer.pk, "Hello?")
    actions.resolve(order.pk)  # closed without a reply
    assert actions.reopen(order.pk)["status"] == "waiting"
    assert conversation(order).waiting_since == unanswered.created
    store_now(order.pk, agent.pk, "Hello!")
    actions.resolve(order.pk)
    assert actions.reopen(order.pk)["status"] == "answered"


def test_messages_of_a_batch_make_one_state_per_order(cast):
    """One batch with the customer, then an employee, then the customer
    again: waiting since the last customer message, not the first."""
    customer, order, agent, _ = cast
    answers = store_messages(
        [(order.pk, customer.pk, "one"), (order.pk, agent.pk, "two"), (order.pk, customer.pk, "three")]
    )
    c = conversation(order)
    assert [a.message.seq for a in answers] == [1, 2, 3]
    assert (c.status, c.last_seq, c.last_employee_seq) == ("waiting", 3, 2)
    assert answers[-1].conversation["status"] == "waiting"


def test_a_message_sent_again_with_its_client_id_is_stored_once(cast):
    customer, order, agent, _ = cast
    [first] = store_messages([(order.pk, customer.pk, "hello", "c-1")])
    [again] = store_messages([(order.pk, customer.pk, "hello (resent)", "c-1")])
    assert first.fresh and not again.fresh
    assert (again.message.pk, again.message.seq, again.message.text) == (first.message.pk, 1, "hello")
    # Twice in one batch, with another message between: one row, the same answer.
    twice = store_messages(
        [(order.pk, customer.pk, "x", "c-2"), (order.pk, customer.pk, "y", None), (order.pk, customer.pk, "x", "c-2")]
    )
    assert [(a.message.seq, a.fresh) for a in twice] == [(2, True), (3, True), (2, False)]
    # Another sender may use the same client id.
    [theirs] = store_messages([(order.pk, agent.pk, "hi", "c-1")])
    assert theirs.fresh and theirs.message.seq == 4
    assert order.chat_messages.count() == 4
    assert conversation(order).last_seq == 4


def test_claim_release_assign(cast):
    customer, order, agent, other = cast
    store_now(order.pk, customer.pk, "Hi")
    assert actions.claim(order.pk, agent)["assigned_to"] == {"id": agent.pk, "name": "Adam Ford"}
    assert actions.claim(order.pk, agent)["assigned_to"]["id"] == agent.pk  # again: still theirs
    with pytest.raises(actions.Held) as held:
        actions.claim(order.pk, other)
    assert held.value.holder == agent
    with pytest.raises(actions.Held):
        actions.release(order.pk, other)
    assert actions.release(order.pk, agent)["assigned_to"] is None
    assert actions.claim(order.pk, other)["assigned_to"]["id"] == other.pk
    assert actions.assign(order.pk, agent.pk)["assigned_to"]["id"] == agent.pk
    with pytest.raises(actions.NotAnEmployee):
        actions.assign(order.pk, customer.pk)


def test_claiming_an_order_nobody_wrote_about_makes_its_conversation(cast):
    _, order, agent, _ = cast
    assert actions.claim(order.pk, agent) == {
        "status": "answered",
        "waiting_since": None,
        "assigned_to": {"id": agent.pk, "name": "Adam Ford"},
    }


def test_releasing_an_order_nobody_wrote_about_answers_its_state(cast):
    _, order, agent, _ = cast
    assert actions.release(order.pk, agent) == {"status": "answered", "waiting_since": None, "assigned_to": None}


def test_unread_counts_follow_each_reader_s_marker(cast):
    customer, order, agent, _ = cast
    for text in ("a", "b", "c"):
        store_now(order.pk, customer.pk, text)
    reply = store_now(order.pk, agent.pk, "d")
    [mine] = state.listing(agent, True)
    [theirs] = state.listing(customer, False)
    assert (mine["unread"], theirs["unread"]) == (3, 1)  # nobody counts their own
    actions.read(order.pk, agent, 2)
    actions.read(order.pk, customer, reply.seq)
    [mine] = state.listing(agent, True)
    [theirs] = state.listing(customer, False)
    assert (mine["unread"], theirs["unread"]) == (1, 0)
    assert mine["last_message"] == {
        "seq": 4,
        "username": "Adam Ford",
        "message": "d",
        "at": mine["last_message"]["at"],
    }
    assert "customer" in mine and "customer" not in theirs


def test_lists_filter_by_status_and_holder_and_put_the_longest_wait_first(cast):
    customer, order, agent, other = cast
    later = factories.OrderFactory(user=customer)
    answered = factories.OrderFactory(user=customer)
    stranger = factories.UserFactory()
    theirs = factories.OrderFactory(user=stranger)
    store_now(order.pk, customer.pk, "first to wait")
    store_now(later.pk, customer.pk, "second to wait")
    store_now(answered.pk, customer.pk, "question")
    store_now(answered.pk, agent.pk, "answer")
    store_now(theirs.pk, stranger.pk, "someone else's")
    actions.claim(later.pk, agent)
    ids = [i["order_id"] for i in state.listing(agent, True)]
    assert ids[:3] == [order.pk, later.pk, theirs.pk] and ids[3] == answered.pk
    assert [i["order_id"] for i in state.listing(agent, True, status="waiting", assigned="me")] == [later.pk]
    assert [i["order_id"] for i in state.listing(agent, True, assigned="none", status="waiting")] == [
        order.pk,
        theirs.pk,
    ]
    assert [i["order_id"] for i in state.listing(other, True, assigned=str(agent.pk))] == [later.pk]
    assert {i["order_id"] for i in state.listing(customer, False)} == {order.pk, later.pk, answered.pk}


def test_the_queue_for_three_waiting_customers_and_one_agent(cast, settings):
    """Positions by how long each has waited; the expected wait is the median
    recent first reply times the rounds of replies ahead."""
    settings.REDIS_URL = ""  # presence in this process: the agent online is ours alone
    presence.MEMORY.clear()
    customer, order, agent, _ = cast
    orders = [order] + factories.OrderFactory.create_batch(2, user=customer)
    # Three earlier conversations, first answered after 60, 120 and 600 s.
    now = timezone.now()
    for wait in (60, 120, 600):
        done = factories.OrderFactory(user=customer)
        store_now(done.pk, customer.pk, "earlier question")
        Conversation.objects.filter(order=done).update(
            status="answered",
            last_wait_started=now - timedelta(seconds=wait + 30),
            last_replied_at=now - timedelta(seconds=30),
        )
    for o in orders:
        store_now(o.pk, customer.pk, "waiting")

    async def places():
        await presence.touch_agent(agent.email)
        line = await queue.current()
        return [line.place(o.pk) for o in orders] + [line.place(999_999)]

    first, second, third, nobody = asyncio.run(places())
    assert nobody is None
    assert [p["position"] for p in (first, second, third)] == [1, 2, 3]
    assert {p["waiting"] for p in (first, second, third)} == {3}
    assert [p["expected_wait_seconds"] for p in (first, second, third)] == [120, 240, 360]
    assert first["agents_online"] == 1
    assert third["message"] == "You are number 3 in the queue. Expected wait: about 6 minutes."

    presence.MEMORY.clear()  # nobody online
    line = asyncio.run(queue.current())
    assert line.place(orders[0].pk)["message"].startswith("Nobody from customer service is online right now.")
    assert line.place(orders[0].pk)["expected_wait_seconds"] is None


def test_no_expected_wait_without_enough_recent_replies(cast):
    customer, order, *_ = cast
    store_now(order.pk, customer.pk, "hi")
    line = queue.Queue(waiting=(order.pk,), median_reply=state.median_first_reply(), agents_online=2)
    place = line.place(order.pk)
    assert place["expected_wait_seconds"] is None
    assert place["message"] == "You are next. We will answer as soon as we can."
