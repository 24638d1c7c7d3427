"""chat.service.open_chat: the handshakes of the moment read in one round
trip (SQL on the event loop) give what the ORM's reads give, one by one."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import async_to_sync
from django.utils import timezone
from rest_framework.authtoken.models import Token

from main import access, factories, models
from main.chat import service
from main.conversations.wire import DELETED_USER
from main.infra import db, per_loop

pytestmark = pytest.mark.django_db(transaction=True)


# Microseconds to truncate (not round), none at all, and a time zone other than UTC.
EDGE_TIMES = [
    datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2027, 3, 1, 0, 0, 0, 0, tzinfo=UTC),
    datetime(2027, 6, 1, 12, 0, 0, 1500, tzinfo=ZoneInfo("Europe/Berlin")),
]


@pytest.fixture
def chats(settings):
    """Two orders: one with 7 messages (one by a deleted user, one with a
    client_id, the last three sent at times whose text is easy to get
    wrong), read markers and an assigned, waiting conversation; one empty."""
    settings.CHAT_HISTORY_PAGE = 4
    settings.CHAT_RESUME_LIMIT = 3
    customer = factories.UserFactory(first_name="Jane", last_name="Doe")
    order = factories.OrderFactory(user=customer)
    agent = factories.EmployeeFactory(first_name="Adam", last_name="Ford")
    gone = factories.UserFactory()
    writers = [customer, agent, gone, customer, agent, customer, customer]
    messages = [
        models.ChatMessage.objects.create(
            order=order, seq=seq, user=user, text=f"m{seq}", client_id="c-1" if seq == 2 else None
        )
        for seq, user in enumerate(writers, start=1)
    ]
    gone.delete()
    for message, created in zip(messages[4:], EDGE_TIMES, strict=True):
        models.ChatMessage.objects.filter(pk=message.pk).update(created=created)
    models.ChatReadMarker.objects.create(order=order, user=customer, last_read_id=messages[4].pk)
    models.ChatReadMarker.objects.create(order=order, user=agent, last_read_id=messages[6].pk)
    models.Conversation.objects.create(
        order=order,
        status=models.Conversation.WAITING,
        waiting_since=timezone.now(),
        assigned_to=agent,
        updated=timezone.now(),
    )
    empty = factories.OrderFactory(user=customer)
    return customer, agent, order, empty, messages


def by_sql(asked):
    async def run():
        try:
            return await service._open_many(db.reads(), asked)
        finally:
            await per_loop.close_all()

    return async_to_sync(run)()


def by_orm(user, order_id, token, catch_up, after, after_seq):
    try:
        return async_to_sync(service._open_chat_orm)(order_id, user, token, catch_up, after, after_seq)
    except access.Refused as refused:
        return refused


def same(answer):
    return ("refused", answer.reason) if isinstance(answer, access.Refused) else answer


def test_each_way_of_opening_reads_what_the_orm_reads(chats):
    """v1 and v2; the latest page, resuming by seq and by id (within the
    limit, past it, at the end); the owner by token, the agent by user, a
    stranger; the full order and the empty one. All asked together, in one
    round trip, as a storm of handshakes would be."""
    customer, agent, order, empty, messages = chats
    stranger = factories.UserFactory()
    token = Token.objects.get(user=customer).key
    places = [(None, None), (None, 0), (None, 2), (None, 5), (None, 7), (messages[1].pk, None), (messages[5].pk, None)]
    asked = []
    for order_id in (order.pk, empty.pk):
        for user, key in ((None, token), (agent, None), (stranger, None)):
            asked.append(service.Question(user, order_id, key, False, None, None))
            asked += [service.Question(user, order_id, key, True, after, after_seq) for after, after_seq in places]
    answers = by_sql(asked)
    for question, answer in zip(asked, answers, strict=True):
        assert same(answer) == same(by_orm(*question)), question
    # And what the rules say, so that both cannot be wrong together.
    first = answers[1]  # the owner's latest page
    assert [m["seq"] for m in first.history[0]] == [4, 5, 6, 7] and first.history[1] is True
    assert [m["username"] for m in first.history[0]] == ["Jane Doe", "Adam Ford", "Jane Doe", "Jane Doe"]
    assert [m["created"] for m in first.history[0][1:]] == [
        "2026-12-31T23:59:59.999Z",
        "2027-03-01T00:00:00.000Z",
        "2027-06-01T10:00:00.001Z",
    ]
    assert first.conversation["assigned_to"] == {"id": agent.pk, "name": "Adam Ford"}
    assert [(r["username"], r["mine"]) for r in first.reads] == [("Jane Doe", True), ("Adam Ford", False)]
    resumed = answers[2]  # after_seq=0: the first three, more to come
    assert [m["seq"] for m in resumed.missed[0]] == [1, 2, 3] and resumed.missed[1] is True
    assert resumed.missed[0][2]["username"] == DELETED_USER and resumed.missed[0][2]["user_id"] is None
    assert resumed.missed[0][1]["client_id"] == "c-1"
    assert same(answers[17]) == ("refused", "forbidden")  # the stranger
