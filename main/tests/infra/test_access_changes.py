"""main.infra.access_changes: a watch registered after its socket's reads
still hears a change announced while they ran (`since`)."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from main.infra import access_changes

TIMEOUT = 5


async def announce(key):
    await get_channel_layer().group_send(access_changes.ACCESS_GROUP, {"type": "access.changed", "keys": [list(key)]})


async def announced(listener, key):
    """Announce `key` and wait until the process's listener has heard it (a
    witness watching from before)."""
    heard = asyncio.Event()
    witness = await listener.watch([key], lambda k: heard.set())
    await announce(key)
    await asyncio.wait_for(heard.wait(), TIMEOUT)
    witness.close()


async def test_a_change_between_the_mark_and_the_watch_is_told_at_once():
    listener = access_changes.listener()
    mark = await listener.mark()
    key = access_changes.for_token("a" * 40)
    await announced(listener, key)  # while the socket's reads would run
    told = asyncio.Event()
    watch = await listener.watch([key, access_changes.for_user(1)], lambda k: told.set(), since=mark)
    await asyncio.wait_for(told.wait(), TIMEOUT)
    watch.close()


async def test_a_change_before_the_mark_is_not_told_and_later_ones_are():
    listener = access_changes.listener()
    await listener.mark()  # listening
    key = access_changes.for_user(2)
    await announced(listener, key)
    mark = await listener.mark()
    told = []
    watch = await listener.watch([key], told.append, since=mark)
    for _ in range(3):  # a call_soon would have run by now
        await asyncio.sleep(0)
    assert told == []
    heard_again = asyncio.Event()
    watch.callback = lambda k: (told.append(k), heard_again.set())
    await announce(key)
    await asyncio.wait_for(heard_again.wait(), TIMEOUT)
    assert told == [key]
    watch.close()


async def test_a_mark_older_than_what_is_kept_is_told_of_each_key(monkeypatch):
    monkeypatch.setattr(access_changes, "RECENT_KEYS", 2)
    listener = access_changes.listener()
    mark = await listener.mark()
    for user_id in (10, 11, 12):  # the first is forgotten
        listener.tell([access_changes.for_user(user_id)])
    told = asyncio.Event()
    watch = await listener.watch([access_changes.for_user(99)], lambda k: told.set(), since=mark)
    await asyncio.wait_for(told.wait(), TIMEOUT)
    watch.close()


@pytest.fixture(autouse=True)
async def fresh_listener():
    from main.infra import per_loop

    yield
    await per_loop.close("access-changes")
