"""Row 4: what one dashboard refresh costs Redis, main.presence's live
listing against the chapter's `KEYS customer-service_*` and parse, with N
people present and U unrelated keys in the same database. A worker's live
listing reads everyone once, then only the changes: its first read and a
refresh after one arrival (what wakes a dashboard) are measured apart. Run
by bench.presence_rows in a child process (Django set up on the bench's
settings, REDIS_URL pointing at a database of the bench's own Redis that
nothing else uses); prints one JSON object per case.

    python -m bench.presence_cost --present 1000 --unrelated 0,10000
"""

import argparse
import asyncio
import json
import statistics
import time

import django

django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402

from main import presence  # noqa: E402
from main.infra.redis_client import close_redis, get_redis  # noqa: E402
from main.presence import redis_store  # noqa: E402

CHUNK = 5000


def populate(client, present, unrelated):
    client.flushdb()
    expiry, info, _, _ = redis_store.keys()
    now = time.time()
    for start in range(0, unrelated, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(unrelated, start + CHUNK)):
            pipe.set(f"bench:unrelated:{i}", "x")
        pipe.execute()
    for start in range(0, present, CHUNK):
        pipe = client.pipeline(transaction=False)
        members = {}
        for i in range(start, min(present, start + CHUNK)):
            order_id, email = i // 2, f"user{i}@example.com"
            member = redis_store.member(order_id, email)
            members[member] = now + 600  # present for the whole measurement
            pipe.hset(info, member, f"{i % 2}:{now:.6f}")
            pipe.set(f"customer-service_{order_id}_{email}", "1", ex=600)  # the chapter's key per person
        pipe.zadd(expiry, members)
        pipe.execute()


def redis_usec(client, commands):
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in commands)


def chapter_refresh(client):
    """The chapter's dashboard: every presence key in the keyspace, parsed."""
    by_order = {}
    for key in client.keys("customer-service_*"):
        _, order_id, email = key.decode().split("_", 2)
        by_order.setdefault(order_id, []).append(email)
    return by_order


async def script_usec(redis):
    stats = await redis.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("usec", 0) for c in ("evalsha", "eval"))


async def timed_read(redis):
    """One read of the live listing: (Redis microseconds, wall seconds)."""
    await redis.config_resetstat()
    start = time.perf_counter()
    await presence.snapshot(live=True)
    wall = time.perf_counter() - start
    return await script_usec(redis), wall


async def ours(present, refreshes):
    redis = get_redis()
    await presence.touch(-1, "first@example.com", False)  # begins the log, loads the scripts
    first = await timed_read(redis)
    refreshed = []
    for n in range(refreshes):
        await presence.touch(-1, f"arrival{n}@example.com", False)
        refreshed.append(await timed_read(redis))
    people = len((await presence.snapshot(live=True)).people)
    if people != present + 1 + refreshes:
        raise SystemExit(f"FAIL live listing: {people} people, expected {present + 1 + refreshes}")
    await close_redis()
    return first, refreshed


def measure(client, present, unrelated, refreshes):
    populate(client, present, unrelated)
    first, refreshed = asyncio.run(ours(present, refreshes))
    chapter_refresh(client)
    client.config_resetstat()
    chapter_walls = []
    for _ in range(refreshes):
        start = time.perf_counter()
        chapter_refresh(client)
        chapter_walls.append(time.perf_counter() - start)
    chapter_usec = redis_usec(client, ("keys",)) / refreshes
    client.flushdb()
    return {
        "present": present,
        "unrelated": unrelated,
        "ours_redis_us": statistics.median(usec for usec, _ in refreshed),
        "ours_wall_ms": 1000 * statistics.median(wall for _, wall in refreshed),
        "first_redis_us": first[0],
        "first_wall_ms": 1000 * first[1],
        "keys_redis_us": chapter_usec,
        "keys_wall_ms": 1000 * statistics.median(chapter_walls),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--present", default="1000")
    parser.add_argument("--unrelated", default="0,10000")
    parser.add_argument("--refreshes", type=int, default=10)
    args = parser.parse_args()
    client = redis.Redis.from_url(settings.REDIS_URL)
    for present in map(int, args.present.split(",")):
        for unrelated in map(int, args.unrelated.split(",")):
            print(json.dumps(measure(client, present, unrelated, args.refreshes)), flush=True)
    client.close()


if __name__ == "__main__":
    main()
