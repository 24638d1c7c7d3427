"""Presence in Redis, shared by every server process (docs/presence.md has
the keys). Heartbeats go in batches, one script call per round trip; the
listings are one script call each. Nothing ever scans the keyspace."""

import functools
import hashlib
import json
import logging
import math
import time
import weakref

from django.conf import settings
from redis.exceptions import NoScriptError

from main.infra.batching import Batches
from main.infra.redis_client import get_redis

from . import scripts
from .records import PRESENCE_SECONDS, Presence, Snapshot, in_order

logger = logging.getLogger(__name__)

# A heartbeat waits this long for others to share its round trip to Redis.
# Nothing waits on its answer but its socket's leaving; it keeps its user
# present for 10 s, so a tenth of a second later is as good, and ten round
# trips a second cost a worker far less than a hundred.
TOUCH_GATHER_SECONDS = 0.1
TOUCH_SCRIPT_HEARTBEATS = 500  # heartbeats per call of the touch script (each call holds Redis)
LOST_LOG_SECONDS = 10  # heartbeats lost to a Redis outage: a line this often, at most


def keys(prefix=None):
    """The expiry set, info hash, log stream and changes channel, under
    `prefix` (by default PRESENCE_KEY_PREFIX)."""
    prefix = settings.PRESENCE_KEY_PREFIX if prefix is None else prefix
    return f"{prefix}expiry", f"{prefix}info", f"{prefix}log", f"{prefix}changes"


def agents_key(prefix=None):
    """The sorted set of agents online (emails, by when they stop being)."""
    return f"{settings.PRESENCE_KEY_PREFIX if prefix is None else prefix}agents"


def member(order_id, email):
    """A person's member in the expiry set and info hash: JSON, so any
    character in an email is safe."""
    return json.dumps([order_id, email], separators=(",", ":"), ensure_ascii=False)


@functools.cache
def script_sha(source):
    return hashlib.sha1(source.encode()).hexdigest()


async def run_scripts(client, source, calls):
    """Each of `calls` ((keys, args)) as a call of the script `source`, in one
    pipeline; its answers. A script Redis does not hold (after a restart) is
    loaded and the calls sent again (every script can safely run twice)."""
    sha = script_sha(source)
    for attempt in range(2):
        try:
            async with client.pipeline(transaction=False) as pipe:
                for call_keys, args in calls:
                    pipe.evalsha(sha, len(call_keys), *call_keys, *args)
                return await pipe.execute()
        except NoScriptError:
            if attempt:
                raise
            await client.script_load(source)


# --- Heartbeats ----------------------------------------------------------------------


class LostHeartbeats:
    """Heartbeats a Redis outage kept out, logged a line every LOST_LOG_SECONDS
    at most (every socket's heartbeat fails then, and a line each would flood
    the log), and the rest once Redis is back."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.count, self.logged_at, self.error = 0, -math.inf, ""

    def failed(self, error, count):
        self.count += count
        self.error = f"{type(error).__name__}: {error}"
        if time.monotonic() - self.logged_at >= LOST_LOG_SECONDS:
            self.log()

    def recovered(self):
        if self.count:
            self.log()

    def log(self):
        logger.warning("Presence: %d heartbeats not recorded (%s)", self.count, self.error)
        self.count, self.logged_at = 0, time.monotonic()


LOST_HEARTBEATS = LostHeartbeats()

_touches_by_client = weakref.WeakKeyDictionary()


def touches():
    """The running loop's batches of heartbeats (on its Redis client)."""
    client = get_redis()
    batches = _touches_by_client.get(client)
    if batches is None:
        send = functools.partial(_touch_batch, client)
        batches = Batches(send, TOUCH_GATHER_SECONDS, on_error=LOST_HEARTBEATS.failed)
        _touches_by_client[client] = batches
    return batches


@functools.lru_cache(maxsize=2**16)  # a socket's every heartbeat is the same
def touch_item(order_id, email, is_employee):
    return member(order_id, email), int(is_employee), order_id


def touch_calls(batch, seconds=PRESENCE_SECONDS, prefix=None):
    """The touch script's calls ((keys, args) each) for a batch of
    touch_item()s, at most TOUCH_SCRIPT_HEARTBEATS per call; `seconds`: how
    long each stays present."""
    expiry, info, log, channel = keys(prefix)
    args = [arg for heartbeat in batch for arg in heartbeat]
    chunk = 3 * TOUCH_SCRIPT_HEARTBEATS  # three arguments each
    script_keys = [expiry, info, log, agents_key(prefix)]
    return [(script_keys, [seconds, channel, *args[i : i + chunk]]) for i in range(0, len(args), chunk)]


async def _touch_batch(client, batch):
    await run_scripts(client, scripts.TOUCH, touch_calls(batch))
    LOST_HEARTBEATS.recovered()
    return [None] * len(batch)


# --- Listings ------------------------------------------------------------------------


def person(order_id, email, info):
    employee, _, since = info.partition(b":")
    return Presence(order_id, email, employee == b"1", float(since))


def people(members, infos):
    """Presence records from a listing's two strings (see lua/listing.lua)."""
    if not members:
        return []
    member_pairs = json.loads(b"[" + members + b"]")  # [order_id, email] each
    return [person(o, e, info) for (o, e), info in zip(member_pairs, infos.split(), strict=True)]


def epoch(value):
    return float(value) if value else None


async def listing(grace):
    """Everyone present now, and anyone within `grace` seconds past their end."""
    expiry, info, log, _ = keys()
    [(now, members, infos, soonest)] = await run_scripts(get_redis(), scripts.LIST, [([expiry, info, log], [grace])])
    return Snapshot(float(now), in_order(people(members, infos)), epoch(soonest), grace)


async def agents(emails=(), seconds=PRESENCE_SECONDS):
    """Count `emails` as agents online for `seconds`; how many are online now."""
    [count] = await run_scripts(get_redis(), scripts.AGENTS, [([agents_key()], [seconds, *emails])])
    return count


async def read_log(last):
    """The live listing's read (lua/read.lua) after the log entry `last`."""
    expiry, info, log, _ = keys()
    [answer] = await run_scripts(get_redis(), scripts.READ, [([expiry, info, log], last)])
    return answer
