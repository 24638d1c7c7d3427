"""Presence rules, on real Redis and on the in-process store."""

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from main import presence
from main.dashboard import payloads
from main.infra import redis_client
from main.presence import redis_store
from main.presence.live import LiveListing
from main.presence.memory import STORE as MEMORY

from ..clients import wait_for_async


@pytest.fixture(params=["redis", "memory"])
def store(request, settings, prefix):
    if request.param == "memory":
        settings.REDIS_URL = ""
        MEMORY.clear()
    elif not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    return request.param


def present(snap):
    return {(p.order_id, p.email) for p in snap.people}


async def test_a_client_heartbeating_every_10_s_never_drops_off_the_live_dashboard(store, close_pool):
    """The chapter's page and app heartbeat every 10 s: their next heartbeat
    lands a little after the last one's 10 s. The live listing still has them
    then; a one-off listing says they are not present; the heartbeat, when it
    lands, continues their presence rather than starting a new one."""
    await presence.touch(3, "steady@site.com", False)
    since = (await presence.snapshot()).people[0].since
    await asyncio.sleep(presence.PRESENCE_SECONDS + 0.5)  # the next heartbeat, in transit
    assert present(await presence.snapshot(live=True)) == {(3, "steady@site.com")}
    assert present(await presence.snapshot()) == set()
    await presence.touch(3, "steady@site.com", False)
    snap = await presence.snapshot()
    assert present(snap) == {(3, "steady@site.com")}
    assert snap.people[0].since == since


async def test_arrive_stay_with_heartbeats_expire_without(store, close_pool):
    await presence.touch(1, "stays@site.com", False)
    await presence.touch(1, "leaves@site.com", False)
    first = await presence.snapshot()
    assert present(first) == {(1, "stays@site.com"), (1, "leaves@site.com")}
    since = {p.email: p.since for p in first.people}
    start = time.monotonic()

    await asyncio.sleep(6)  # the heartbeat's own rhythm, not a wait for a result
    await presence.touch(1, "stays@site.com", False)

    async def leaves_gone():
        return (1, "leaves@site.com") not in present(await presence.snapshot())

    await wait_for_async(leaves_gone, 8)
    gone_after = time.monotonic() - start
    assert 9.5 <= gone_after <= 11, gone_after
    snap = await presence.snapshot()
    assert present(snap) == {(1, "stays@site.com")}, "a heartbeat keeps a user present past the first 10 s"
    assert snap.people[0].since == since["stays@site.com"], "heartbeats do not restart the wait"

    async def all_gone():
        return not (await presence.snapshot()).people

    await wait_for_async(all_gone, 8)
    assert 15.5 <= time.monotonic() - start <= 17


async def test_a_sockets_bound_heartbeat_makes_its_user_present_at_each_call(store, close_pool):
    """presence.heartbeat(): a socket's heartbeat, bound once at admission,
    then called at every beat; the same presence as touch() gives."""
    beat = presence.heartbeat(4, "bound@site.com", True)
    assert present(await presence.snapshot()) == set()
    sent = beat()
    if sent is not None:  # Redis: on its way with the next batch
        await asyncio.wait_for(sent, 10)
    snap = await presence.snapshot()
    assert present(snap) == {(4, "bound@site.com")} and snap.people[0].is_employee
    since = snap.people[0].since
    sent = beat()
    if sent is not None:
        await asyncio.wait_for(sent, 10)
    assert (await presence.snapshot()).people[0].since == since  # continued, not a new arrival


async def test_several_sockets_of_one_user_are_one_presence(store, close_pool):
    for _ in range(3):  # three tabs heartbeating
        await presence.touch(7, "mary@site.com", False)
    snap = await presence.snapshot()
    assert present(snap) == {(7, "mary@site.com")}
    assert snap.seconds_to_next_expiry == pytest.approx(10, abs=0.5)


async def test_one_user_in_two_orders(store, close_pool):
    await presence.touch(3, "agent@booktime.domain", True)
    await presence.touch(4, "agent@booktime.domain", True)
    await presence.touch(4, "john@site.com", False)
    snap = await presence.snapshot()
    assert [(p.order_id, p.email, p.is_employee) for p in snap.people] == [
        (3, "agent@booktime.domain", True),
        (4, "agent@booktime.domain", True),
        (4, "john@site.com", False),
    ]
    assert payloads.v1(snap) == [
        {"link": "/customer-service/3/", "text": "3 (agent@booktime.domain)"},
        {"link": "/customer-service/4/", "text": "4 (agent@booktime.domain, john@site.com)"},
    ]


async def test_any_character_in_emails(store, close_pool):
    emails = ["mary_jones@example.com", "a_b_c_@x_y.com", 'odd:"[1,2]"@site.com', "zoë@exämple.com", "sp ace@site.com"]
    for email in emails:
        await presence.touch(12, email, False)
    snap = await presence.snapshot()
    assert present(snap) == {(12, e) for e in emails}
    (chat,) = payloads.v1(snap)
    assert chat["text"] == f"12 ({', '.join(p.email for p in snap.people)})"


async def test_arrival_wakes_listeners_and_heartbeats_do_not(store, close_pool):
    await presence.touch(5, "already@site.com", False)
    async with presence.changes() as changed:
        assert presence.listening() == 1
        await presence.touch(5, "already@site.com", False)  # a heartbeat, not an arrival
        await presence.touch(5, "new@site.com", False)
        await asyncio.wait_for(changed.wait(), 1)
        changed.clear()
        await presence.touch(5, "new@site.com", False)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(changed.wait(), 0.5)
    assert presence.listening() == 0


async def test_one_subscription_per_process_closed_with_the_last_listener(settings, prefix, close_pool):
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    channel = f"{prefix}changes"
    probe = aioredis.Redis.from_url(settings.REDIS_URL)
    try:

        async def subscribers():
            return dict(await probe.pubsub_numsub(channel))[channel.encode()]

        async with presence.changes(), presence.changes(), presence.changes():
            assert await subscribers() == 1
        assert await subscribers() == 0
    finally:
        await probe.aclose()


async def test_thousands_of_unrelated_keys_are_never_read(settings, prefix, close_pool):
    """Listing costs in proportion to the people present: with thousands of
    other keys in the database (some shaped like the chapter's presence
    keys), no command that presence runs names or scans them."""
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    other = f"test:unrelated:{uuid.uuid4().hex}:"
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    db = client.connection_pool.connection_kwargs.get("db", 0)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for i in range(5000):
                pipe.set(f"{other}customer-service_{i}_user_{i}@site.com", "1", ex=120)
            await pipe.execute()
        await presence.touch(9, "me_too@site.com", False)

        marker = uuid.uuid4().hex
        seen = []
        async with client.monitor() as monitor:
            await presence.snapshot()
            await presence.touch(9, "me_too@site.com", False)
            await client.echo(marker)
            async with asyncio.timeout(5):
                while True:
                    info = await monitor.next_command()
                    if marker in info["command"]:
                        break
                    if info["db"] == db:  # the monitor sees every database
                        seen.append(info["command"])
        assert [c for c in seen if prefix in c], "the monitor saw presence's commands"
        assert not [c for c in seen if c.split()[0].upper() in ("KEYS", "SCAN")]
        assert not [c for c in seen if other in c]
        assert present(await presence.snapshot()) == {(9, "me_too@site.com")}
    finally:
        # Delete exactly the keys this test made.
        async with client.pipeline(transaction=False) as pipe:
            for i in range(5000):
                pipe.delete(f"{other}customer-service_{i}_user_{i}@site.com")
            await pipe.execute()
        await client.aclose()


async def test_the_subscription_comes_back_after_its_connection_is_killed(settings, prefix, close_pool):
    if not settings.REDIS_URL:
        pytest.skip("REDIS_URL is not set")
    admin = aioredis.Redis.from_url(settings.REDIS_URL)
    db = admin.connection_pool.connection_kwargs.get("db", 0)

    async def pubsub_ids():
        return {c["id"] for c in await admin.client_list(_type="pubsub") if int(c["db"]) == db}

    try:
        before = await pubsub_ids()
        async with presence.changes() as changed:
            (ours,) = await pubsub_ids() - before
            await admin.client_kill_filter(_id=ours)
            await asyncio.wait_for(changed.wait(), 2)  # listeners are told to re-read
            changed.clear()

            async def arrival_wakes():
                await presence.touch(21, f"{uuid.uuid4().hex}@site.com", False)
                try:
                    await asyncio.wait_for(changed.wait(), 0.5)
                except TimeoutError:
                    return False
                return True

            await wait_for_async(arrival_wakes, 5)
            assert ours not in await pubsub_ids()
    finally:
        await admin.aclose()


async def test_a_burst_of_heartbeats_waits_for_a_pool_connection(prefix, close_pool):
    """Many sockets heartbeating at the same moment share the process's few
    Redis connections: callers past the pool's size wait, none fail."""
    burst = redis_client.MAX_CONNECTIONS * 10
    await asyncio.gather(*(presence.touch(7, f"user{n}@site.com", False) for n in range(burst)))
    assert len((await presence.snapshot()).people) == burst


async def test_heartbeats_land_after_redis_forgot_the_script(prefix, close_pool):
    """As after a Redis restart: the batched touches load their script again."""
    await presence.touch(7, "first@site.com", False)
    await redis_client.get_redis().script_flush()
    await asyncio.gather(*(presence.touch(7, f"user{n}@site.com", False) for n in range(50)))
    assert len((await presence.snapshot()).people) == 51


async def test_a_listing_of_more_people_than_lua_can_unpack_at_once(prefix, close_pool):
    """Lua's unpack() takes at most about 8,000 values: the listing reads
    the people's details in chunks, so 9,000 present are all listed."""
    await asyncio.gather(*(presence.touch(n // 2, f"user{n}@site.com", n % 2 == 1) for n in range(9000)))
    people = (await presence.snapshot()).people
    assert len(people) == 9000
    assert sum(p.is_employee for p in people) == 4500


async def _full_live_listing():
    """What a process with no listing yet would read: everyone, within the grace."""
    return await LiveListing().read()


def listed(snap):
    return [(p.order_id, p.email, p.is_employee, p.since) for p in snap.people]


async def test_each_process_keeps_the_live_listing_from_arrivals_and_departures(prefix, close_pool):
    """Two workers' live listings follow arrivals, heartbeats, a departure
    and a comeback, and always equal a full read."""
    client = redis_client.get_redis()
    worker_a, worker_b = LiveListing(), LiveListing()
    await asyncio.gather(*(presence.touch(n // 3, f"user{n}@site.com", n % 3 == 0) for n in range(30)))
    assert len((await worker_a.read()).people) == 30

    await presence.touch(100, "late@site.com", False)  # an arrival
    await presence.touch(1, "user3@site.com", True)  # a heartbeat
    # user4 stopped heartbeating 13 s ago: past their 10 s and the grace.
    await client.zadd(f"{prefix}expiry", {redis_store.member(1, "user4@site.com"): time.time() - 3})
    for worker in (worker_a, worker_b):
        snap = await worker.read()
        assert listed(snap) == listed(await _full_live_listing())
        assert (100, "late@site.com") in present(snap) and (1, "user4@site.com") not in present(snap)
        assert len(snap.people) == 30

    await presence.touch(1, "user4@site.com", False)  # back: a new presence
    snap = await worker_a.read()
    assert listed(snap) == listed(await _full_live_listing())
    assert (1, "user4@site.com") in present(snap)
    assert snap.seconds_to_next_expiry == pytest.approx(
        presence.PRESENCE_SECONDS + presence.PRESENCE_GRACE_SECONDS, abs=1
    )


async def test_a_live_read_after_the_first_reads_only_the_changes(settings, prefix, close_pool):
    """With a thousand present, a later read of the live listing fetches the
    log's new entries, not the people present (no full listing in Redis)."""
    await asyncio.gather(*(presence.touch(n, f"user{n}@site.com", False) for n in range(1000)))
    await presence.snapshot(live=True)
    await presence.touch(5000, "new@site.com", False)
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    marker = uuid.uuid4().hex
    seen = []
    try:
        async with client.monitor() as monitor:
            snap = await presence.snapshot(live=True)
            await client.echo(marker)
            async with asyncio.timeout(5):
                while marker not in (command := (await monitor.next_command())["command"]):
                    seen.append(command)
    finally:
        await client.aclose()
    assert len(snap.people) == 1001 and (5000, "new@site.com") in present(snap)
    assert [c for c in seen if c.startswith("XRANGE")], "the monitor saw the read's commands"
    assert not [c for c in seen if c.startswith("HMGET") or (c.startswith("ZRANGEBYSCORE") and "+inf" in c)]


async def test_the_live_listing_lists_everyone_again_when_the_log_lost_entries(prefix, close_pool):
    client = redis_client.get_redis()
    await presence.touch(1, "before@site.com", False)
    assert present(await presence.snapshot(live=True)) == {(1, "before@site.com")}
    # The log trimmed past what this process saw (many changes since its last read).
    await presence.touch(2, "during@site.com", False)
    await client.xtrim(f"{prefix}log", maxlen=0)
    await presence.touch(3, "after@site.com", False)
    assert present(await presence.snapshot(live=True)) == {
        (1, "before@site.com"),
        (2, "during@site.com"),
        (3, "after@site.com"),
    }
    # The keys deleted, and a new log begun within the same millisecond: its
    # first entry has the id of the last one this process saw.
    ((newest_id, _),) = await client.xrevrange(f"{prefix}log", count=1)
    await client.delete(f"{prefix}expiry", f"{prefix}info", f"{prefix}log")
    await client.xadd(f"{prefix}log", {"d": redis_store.member(9, "someone@site.com")}, id=newest_id)
    await presence.touch(4, "new@site.com", False)
    assert present(await presence.snapshot(live=True)) == {(4, "new@site.com")}
    await client.delete(f"{prefix}expiry", f"{prefix}info", f"{prefix}log")
    assert present(await presence.snapshot(live=True)) == set()


async def test_the_live_listing_catches_people_who_came_or_went_unlogged(prefix, close_pool):
    """As a worker of an earlier version would, during a rolling restart:
    someone added to or removed from the expiry set with nothing logged."""
    client = redis_client.get_redis()
    await presence.touch(1, "stays@site.com", False)
    await presence.touch(1, "goes@site.com", False)
    assert len((await presence.snapshot(live=True)).people) == 2
    await client.zrem(f"{prefix}expiry", redis_store.member(1, "goes@site.com"))
    assert present(await presence.snapshot(live=True)) == {(1, "stays@site.com")}
    unlogged = redis_store.member(2, "unlogged@site.com")
    await client.zadd(f"{prefix}expiry", {unlogged: time.time() + 10})
    await client.hset(f"{prefix}info", unlogged, f"0:{time.time():.6f}")
    assert present(await presence.snapshot(live=True)) == {(1, "stays@site.com"), (2, "unlogged@site.com")}


async def test_heartbeats_lost_to_a_redis_outage_are_logged_in_one_line(close_pool, settings, caplog):
    """heartbeat(), a socket's: nobody waits for it, so a failed
    batch is logged for all its heartbeats at once, not a line for each; at
    most a line every 10 s, and the rest once Redis is back."""
    from harness.servers import free_port

    redis_url, settings.PRESENCE_KEY_PREFIX = settings.REDIS_URL, f"test:presence:{uuid.uuid4().hex}:"
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    redis_store.LOST_HEARTBEATS.reset()

    def lines():
        return [r.getMessage() for r in caplog.records if "heartbeats not recorded" in r.getMessage()]

    sent = {presence.heartbeat(7, f"user{n}@site.com", False)() for n in range(20)}
    assert len(sent) == 1  # one batch
    await asyncio.wait_for(asyncio.gather(*sent), 10)
    assert lines() == [lines()[0]] and lines()[0].startswith("Presence: 20 heartbeats not recorded (ConnectionError")
    await asyncio.wait_for(presence.heartbeat(7, "later@site.com", False)(), 10)
    assert len(lines()) == 1  # within 10 s of the last line

    await redis_client.close_redis()
    settings.REDIS_URL = redis_url  # Redis is back
    try:
        await asyncio.wait_for(presence.heartbeat(7, "back@site.com", False)(), 10)
        assert lines()[1:] == ["Presence: 1 heartbeats not recorded (ConnectionError: " + lines()[1].split(": ", 2)[2]]
        assert present(await presence.snapshot()) == {(7, "back@site.com")}
    finally:
        await redis_client.get_redis().delete(
            *(f"{settings.PRESENCE_KEY_PREFIX}{k}" for k in ("expiry", "info", "log"))
        )


async def test_a_large_batch_of_heartbeats_is_split_into_several_script_calls(prefix, close_pool, monkeypatch):
    """Each call of the touch script holds Redis while it runs: a storm's
    batch goes as several (in one round trip)."""
    monkeypatch.setattr(redis_store, "TOUCH_SCRIPT_HEARTBEATS", 3)
    client = redis_client.get_redis()
    await presence.touch(7, "first@site.com", False)  # the script is loaded

    async def script_calls():
        return (await client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)

    before = await script_calls()
    await asyncio.gather(*(presence.touch(7, f"user{n}@site.com", False) for n in range(10)))
    assert await script_calls() - before == 4  # 3 + 3 + 3 + 1 heartbeats
    assert len((await presence.snapshot()).people) == 11


async def test_agents_online_are_employees_in_a_chat_or_with_the_inbox_open(store, close_pool):
    """Counted once each, however many chats they are in; customers never."""
    assert await presence.agents_online() == 0
    await presence.touch(1, "agent@booktime.domain", True)
    await presence.touch(2, "agent@booktime.domain", True)
    await presence.touch(2, "customer@site.com", False)
    assert await presence.agents_online() == 1
    assert await presence.touch_agent("inbox@booktime.domain") == 2
    assert await presence.touch_agent("inbox@booktime.domain") == 2
    assert await presence.agents_online() == 2
