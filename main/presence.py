"""Who is present in which order chat (user-centric, 10 s per heartbeat).

A heartbeat on an order's chat socket makes that user present in that chat
for PRESENCE_SECONDS; without another heartbeat they are gone, whatever their
sockets do. Several sockets of one user are one presence.

The live dashboard (`snapshot(live=True)`) keeps someone listed for
PRESENCE_GRACE_SECONDS more, while their next heartbeat may be on its way:
the chapter's page and app heartbeat every 10 s exactly, so each of their
heartbeats lands just after the last one's 10 s, and without the grace they
would drop off the dashboard for a moment before every one. A heartbeat
within the grace continues the presence (same "since", no arrival).

In Redis (settings.REDIS_URL set; every server process sees the same), under
settings.PRESENCE_KEY_PREFIX:

- `<prefix>expiry`: a sorted set whose members are `[order_id, email]` as
  JSON (so any character in an email is safe) scored by expiry time;
- `<prefix>info`: a hash, same members, to `<employee 0|1>:<since>`, when
  this presence began (a customer's "waiting since");
- `<prefix>log`: a stream of who arrived (`a`: "<employee>:<since> <member>")
  and who left (`d`: members, comma-joined), the last LOG_ENTRIES or so;
- `<prefix>changes`: a pub/sub channel; a message there means someone
  arrived. Expiry publishes nothing: listeners wait for the next expiry time,
  which every listing returns.

The scripts run atomically on Redis's clock and prune expired members in
passing; nothing ever scans the keyspace. A full listing costs in proportion
to the people present; the live listing (the dashboard's) is kept by each
process from the log and reads only what changed since its last read, so
its cost follows arrivals and departures, not how many are present. The
keys expire a little after the last heartbeat.

Without REDIS_URL an in-process store does the same for one process.

Each process keeps one pub/sub connection, opened while at least one stream
listens and closed when the last one leaves (see `changes()`).
"""

import asyncio
import functools
import json
import logging
import math
import time
import weakref
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

from django.conf import settings
from redis.exceptions import ConnectionError, NoScriptError

from booktime.batching import Batches

from . import per_loop
from .redis_pool import get_redis

logger = logging.getLogger(__name__)

PRESENCE_SECONDS = 10
PRESENCE_GRACE_SECONDS = 2  # a heartbeat sent 10 s after the last may take this long to land
PRUNE_BATCH = 500  # expired members removed per call, at most
# A listing reads people's details this many at a time: Lua's unpack() takes
# at most about 8,000 values, and a listing of more failed outright.
HMGET_CHUNK = 1000
# A heartbeat waits this long for others to share its round trip to Redis
# (only its own socket's next frame waits on its answer): it halved a
# worker's CPU per heartbeat at 2,000 a second.
TOUCH_GATHER_SECONDS = 0.01
TOUCH_FAILURE_LOG_SECONDS = 10  # heartbeats lost to a Redis outage: a line this often, at most
TOUCH_SCRIPT_HEARTBEATS = 500  # heartbeats per call of the touch script (each call holds Redis)
LOG_ENTRIES = 10_000  # arrivals and departures kept for the live listings, about


@dataclass(frozen=True)
class Presence:
    order_id: int
    email: str
    is_employee: bool
    since: float  # epoch seconds: when this presence began


@dataclass(frozen=True)
class Snapshot:
    now: float  # the store's clock (Redis TIME), epoch seconds
    people: tuple  # of Presence, by order id, then arrival
    next_expiry: float | None = None  # epoch seconds: the soonest anyone's presence ends
    grace: float = 0.0  # how long past its end a presence stays in this listing

    @property
    def seconds_to_next_expiry(self):
        """How long until the next person leaves this listing, or None if nobody is here."""
        if not self.people or self.next_expiry is None:
            return None
        return max(0.0, self.next_expiry + self.grace - self.now)


async def touch(order_id: int, email: str, is_employee: bool) -> None:
    """A heartbeat: `email` is present in order `order_id`'s chat for 10 s."""
    if settings.REDIS_URL:
        await _touches()(_touch_item(int(order_id), email, bool(is_employee)))
    else:
        _memory.touch(int(order_id), email, bool(is_employee))


def touch_soon(order_id: int, email: str, is_employee: bool) -> asyncio.Future | None:
    """touch() without waiting for it, as a socket's heartbeat needs no
    answer: it goes to Redis with the next batch, and the socket's next
    frame is handled meanwhile. Answers a future done once it has gone
    (None: done already). A failed batch is logged (see _touches_failed),
    at most once per TOUCH_FAILURE_LOG_SECONDS."""
    if settings.REDIS_URL:
        return _touches().put(_touch_item(int(order_id), email, bool(is_employee)))
    _memory.touch(int(order_id), email, bool(is_employee))
    return None


async def snapshot(live=False) -> Snapshot:
    """Everyone present now; `live`: and anyone whose next heartbeat may still
    be on its way (the grace), as the live dashboard shows them."""
    grace = PRESENCE_GRACE_SECONDS if live else 0.0
    if not settings.REDIS_URL:
        return _memory.snapshot(grace)
    if live:
        return await _live_listing().read()
    return await _redis_snapshot(grace)


@asynccontextmanager
async def changes():
    """An asyncio.Event set whenever someone arrives (in any process). The
    subscription is in place when this yields: take the snapshot after."""
    event = asyncio.Event()
    hub = _hub() if settings.REDIS_URL else _memory
    await hub.add(event)
    try:
        yield event
    finally:
        await hub.remove(event)


class Shared:
    """`await shared()` runs `read()` once for every caller of the moment:
    the callers that ask before a read begins all get its result, and a read
    always begins after its callers asked, so nobody gets a result older than
    their question. Every dashboard stream of a process is woken by the same
    arrival at once; with this they make one read (and one SQL query and one
    JSON encoding) between them, not one each."""

    def __init__(self, read, gather_seconds=0.01):
        self.read = read
        self.gather_seconds = gather_seconds
        self.next = None  # the read that has not begun yet, if any

    async def __call__(self):
        if self.next is None:
            self.next = asyncio.ensure_future(self._run())
        # shield: one caller going away does not cancel the others' read.
        return await asyncio.shield(self.next)

    async def _run(self):
        # The streams one arrival wakes resume over a few turns of the loop:
        # wait that long for them to ask, then read for all; from here on,
        # new callers wait for the read after this one.
        await asyncio.sleep(self.gather_seconds)
        self.next = None
        return await self.read()


def _sort(people):
    return tuple(sorted(people, key=lambda p: (p.order_id, p.since, p.email)))


# --- Redis -------------------------------------------------------------------

# Every script begins here: Redis's clock, and prune(limit), which forgets
# members whose grace has passed too (scores are expiry times) and logs them
# as gone. The log never outlives the expiry set (see _LiveListing).
_HEAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now_str = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
local forgotten = string.format('%.6f', now - GRACE)
local function prune(limit)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', forgotten, 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('ZREM', KEYS[1], unpack(gone))
    redis.call('HDEL', KEYS[2], unpack(gone))
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', LOG_ENTRIES, '*', 'd', table.concat(gone, ','))
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) elseif ttl == -2 then redis.call('EXPIRE', KEYS[3], KEEP) end
  end
  return #gone
end
"""

# KEYS: expiry, info, log; ARGV: seconds, channel, then for each heartbeat of
# the batch: member, employee (0|1), order id. A heartbeat within the grace
# continues the presence; a later one is an arrival. Answers the arrivals.
_TOUCH = (
    _HEAD
    + """
prune(PRUNE_BATCH)
local ttl = tonumber(ARGV[1])
local arrivals = 0
for i = 3, #ARGV, 3 do
  local member = ARGV[i]
  local old = redis.call('ZSCORE', KEYS[1], member)
  redis.call('ZADD', KEYS[1], now + ttl, member)
  if not old or tonumber(old) <= now - GRACE then
    local info = ARGV[i + 1] .. ':' .. now_str
    redis.call('HSET', KEYS[2], member, info)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', LOG_ENTRIES, '*', 'a', info .. ' ' .. member)
    redis.call('PUBLISH', ARGV[2], ARGV[i + 2])
    arrivals = arrivals + 1
  end
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ttl + GRACE + 2) end
return arrivals
"""
)

# listing(cutoff): everyone whose presence ends after `cutoff`, as two
# strings: members (JSON arrays) joined by commas, infos ("employee:since")
# by spaces; and the soonest end among them ('' if none). A reply per person
# took the worker longer to parse than its Redis socket timeout (2 s) at
# 100,000 present.
_LISTING = """
local function listing(cutoff)
  local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cutoff, '+inf')
  local infos = {}
  for first = 1, #members, HMGET_CHUNK do
    local chunk = redis.call('HMGET', KEYS[2], unpack(members, first, math.min(first + HMGET_CHUNK - 1, #members)))
    for i = 1, #chunk do infos[#infos + 1] = chunk[i] or '0:0' end
  end
  local soonest = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return table.concat(members, ','), table.concat(infos, ' '), soonest[2] or ''
end
"""

# KEYS: expiry, info, log; ARGV: grace (0 or GRACE). {now, members, infos, soonest end}.
_LIST = (
    _HEAD
    + _LISTING
    + """
prune(PRUNE_BATCH)
local cutoff = now_str
if tonumber(ARGV[1]) > 0 then cutoff = string.format('%.6f', now - tonumber(ARGV[1])) end
local members, infos, soonest = listing(cutoff)
return {now_str, members, infos, soonest}
"""
)

# The live listing's read. KEYS: expiry, info, log; ARGV: the id and value of
# the last log entry the caller has seen ('' for none). With everyone past
# their grace pruned, the live listing is exactly the expiry set. If that
# entry is still in the log, everything after it is too (a stream is trimmed
# from its head): {now, soonest end, newest id, newest value, 'changes',
# {'a'|'d', value, ...}, how many are present}; otherwise everyone: {now,
# soonest end, newest id, newest value, 'all', members, infos}. The value is
# compared too: a log deleted and begun again within the same millisecond
# reuses its ids.
_READ = (
    _HEAD
    + _LISTING
    + """
while prune(PRUNE_BATCH) == PRUNE_BATCH do end
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)[1]
local newest_id, newest_value = '', ''
if newest then newest_id, newest_value = newest[1], newest[2][2] end
local seen = ARGV[1] ~= '' and redis.call('XRANGE', KEYS[3], ARGV[1], ARGV[1])[1]
if seen and seen[2][2] == ARGV[2] then
  local soonest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local changes = {}
  for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '(' .. ARGV[1], '+')) do
    changes[#changes + 1] = entry[2][1]
    changes[#changes + 1] = entry[2][2]
  end
  return {now_str, soonest[2] or '', newest_id, newest_value, 'changes', changes, redis.call('ZCARD', KEYS[1])}
end
local members, infos, soonest = listing('-inf')
return {now_str, soonest, newest_id, newest_value, 'all', members, infos}
"""
)


def _fill(source):
    for name, value in {
        "PRUNE_BATCH": PRUNE_BATCH,
        "HMGET_CHUNK": HMGET_CHUNK,
        "LOG_ENTRIES": LOG_ENTRIES,
        "KEEP": PRESENCE_SECONDS + PRESENCE_GRACE_SECONDS + 2,
        "GRACE": PRESENCE_GRACE_SECONDS,
    }.items():
        source = source.replace(name, str(value))
    return source


_TOUCH, _LIST, _READ = map(_fill, (_TOUCH, _LIST, _READ))


def _keys():
    prefix = settings.PRESENCE_KEY_PREFIX
    return f"{prefix}expiry", f"{prefix}info", f"{prefix}log", f"{prefix}changes"


def _member(order_id, email):
    return json.dumps([order_id, email], separators=(",", ":"), ensure_ascii=False)


_scripts = weakref.WeakKeyDictionary()  # per client: AsyncScript objects


def _script(name, source):
    client = get_redis()
    scripts = _scripts.setdefault(client, {})
    if name not in scripts:
        scripts[name] = client.register_script(source)
    return scripts[name]


async def _run(name, source, keys, args=()):
    """Run a script; once more if the connection fails. After a Redis restart
    every pooled connection is dead and the client retries nothing, so the
    first command on one fails: without this a heartbeat was lost and
    presence came back only on the next one. (Every script can safely run
    twice.)"""
    try:
        return await _script(name, source)(keys=keys, args=args)
    except ConnectionError:
        return await _script(name, source)(keys=keys, args=args)


_batches = weakref.WeakKeyDictionary()  # per client: its Batches of touches


def _touches():
    # Heartbeats go out in batches (booktime.batching), each batch one call of
    # the touch script: at thousands a second a command each kept every pooled
    # connection busy, and a heartbeat waiting for one in a storm of
    # handshakes timed out. Each batch gathers for TOUCH_GATHER_SECONDS.
    client = get_redis()
    touches = _batches.get(client)
    if touches is None:
        send = functools.partial(_touch_batch, client)
        touches = _batches[client] = Batches(send, TOUCH_GATHER_SECONDS, on_error=_touches_failed)
    return touches


def _touch_item(order_id, email, is_employee):
    return _member(order_id, email), int(is_employee), order_id


async def _touch_batch(client, batch):
    """The touches of `batch`, in calls of the touch script of at most
    TOUCH_SCRIPT_HEARTBEATS each, in one pipeline; again if the connection
    failed (see _run) or the script must be loaded (after a Redis restart:
    both)."""
    expiry, info, log, channel = _keys()
    args = [arg for heartbeat in batch for arg in heartbeat]
    chunk = 3 * TOUCH_SCRIPT_HEARTBEATS  # three arguments each
    calls = [
        ([expiry, info, log], [PRESENCE_SECONDS, channel, *args[i : i + chunk]]) for i in range(0, len(args), chunk)
    ]
    sha = _script("touch", _TOUCH).sha
    for attempt in range(3):
        try:
            await _evalsha_pipeline(client, sha, calls)
            if _unlogged_failures["heartbeats"]:
                _log_lost_heartbeats()  # Redis is back: the rest since the last line
            return [None] * len(batch)
        except NoScriptError:
            if attempt == 2:
                raise
            await client.script_load(_TOUCH)
        except ConnectionError:
            if attempt == 2:
                raise


_unlogged_failures = {"heartbeats": 0, "logged_at": -math.inf, "error": ""}


def _touches_failed(error, count):
    # Redis is down: every socket's heartbeat fails, and a line each would
    # flood the log. The client can do nothing about it; the chat goes on.
    _unlogged_failures["heartbeats"] += count
    _unlogged_failures["error"] = f"{type(error).__name__}: {error}"
    if time.monotonic() - _unlogged_failures["logged_at"] >= TOUCH_FAILURE_LOG_SECONDS:
        _log_lost_heartbeats()


def _log_lost_heartbeats():
    failures = _unlogged_failures
    logger.warning("Presence: %d heartbeats not recorded (%s)", failures["heartbeats"], failures["error"])
    failures.update(heartbeats=0, logged_at=time.monotonic())


async def _evalsha_pipeline(client, sha, calls):
    async with client.pipeline(transaction=False) as pipe:
        for keys, args in calls:
            pipe.evalsha(sha, len(keys), *keys, *args)
        return await pipe.execute()


def _person(order_id, email, info):
    employee, _, since = info.partition(b":")
    return Presence(order_id, email, employee == b"1", float(since))


def _people(members, infos):
    if not members:
        return []
    member_pairs = json.loads(b"[" + members + b"]")  # [order_id, email] each
    return [_person(o, e, info) for (o, e), info in zip(member_pairs, infos.split(), strict=True)]


def _time(value):
    return float(value) if value else None


async def _redis_snapshot(grace):
    expiry, info, log, _ = _keys()
    now, members, infos, soonest = await _run("list", _LIST, [expiry, info, log], [grace])
    return Snapshot(float(now), _sort(_people(members, infos)), _time(soonest), grace)


class _LiveListing:
    """One process's live listing, kept from the log: its first read lists
    everyone, each later read fetches only the log's entries since the last
    one it saw, and lists everyone again when they are no longer all there
    (trimmed, or the keys expired or were lost with Redis), or when it has
    not as many people as the expiry set. The log expires no later than the
    expiry set, so a member can't vanish unlogged while the log lives. One
    read at a time: entries apply in order."""

    def __init__(self):
        self.people = {}  # (order_id, email) -> Presence
        self.listing = ()  # self.people, sorted
        self.last = [b"", b""]  # the newest log entry applied: its id and value
        self.present = 0  # how many the expiry set held at the last read
        self.lock = asyncio.Lock()

    async def read(self):
        async with self.lock:
            snapshot = await self._read()
            if len(self.people) != self.present:
                # Someone came or went unlogged (a worker of an earlier
                # version during a rolling restart, the expiry set changed by
                # hand): list everyone.
                self.last = [b"", b""]
                snapshot = await self._read()
            return snapshot

    async def _read(self):
        expiry, info, log, _ = _keys()
        now, soonest, newest_id, newest_value, kind, *body = await _run("read", _READ, [expiry, info, log], self.last)
        if kind == b"all":
            self.last = [b"", b""]  # until everyone is in hand
            self.people = {(p.order_id, p.email): p for p in _people(*body)}
            self.listing = _sort(self.people.values())
            self.present = len(self.people)
        else:
            changes, self.present = body
            if changes:
                self.last = [b"", b""]
                for op, value in zip(changes[::2], changes[1::2], strict=True):
                    if op == b"a":
                        info, _, member = value.partition(b" ")
                        order_id, email = json.loads(member)
                        self.people[(order_id, email)] = _person(order_id, email, info)
                    else:
                        for order_id, email in json.loads(b"[" + value + b"]"):
                            self.people.pop((order_id, email), None)
                self.listing = _sort(self.people.values())
        self.last = [newest_id, newest_value]
        return Snapshot(float(now), self.listing, _time(soonest), PRESENCE_GRACE_SECONDS)


async def _forget(_):
    pass


def _live_listing():
    return per_loop.get(f"presence-live:{settings.PRESENCE_KEY_PREFIX}", _LiveListing, _forget)


class _Hub:
    """One pub/sub subscription per process (per event loop), shared by every
    stream listening in it; open while anyone listens."""

    def __init__(self):
        self.events = set()
        self.lock = asyncio.Lock()
        self.pubsub = None
        self.reader = None

    async def add(self, event):
        async with self.lock:
            if self.reader is None or self.reader.done():
                await self._open()
            self.events.add(event)

    async def remove(self, event):
        async with self.lock:
            self.events.discard(event)
            if not self.events:
                await self._close()

    async def _open(self):
        await self._close()
        pubsub = get_redis().pubsub()
        try:
            await pubsub.subscribe(_keys()[3])
            # Wait for the confirmation: from here on no arrival is missed.
            async with asyncio.timeout(5):
                while await pubsub.get_message(timeout=1.0) is None:
                    pass
        except BaseException:
            await pubsub.aclose()
            raise
        self.pubsub = pubsub
        self.reader = asyncio.get_running_loop().create_task(self._read(pubsub))

    async def _close(self):
        reader, pubsub, self.reader, self.pubsub = self.reader, self.pubsub, None, None
        if reader is not None:
            reader.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await reader
        if pubsub is not None:
            await pubsub.aclose()

    async def _read(self, pubsub):
        lost = False
        while True:
            try:
                # A bounded wait, so the connection's health check runs.
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=15.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Listeners re-read the store now (and fail there if Redis is
                # down); the next read reconnects and subscribes again.
                if not lost:
                    logger.warning("presence: lost the change subscription", exc_info=True)
                lost = True
                self._wake()
                await asyncio.sleep(1)
                continue
            if message is not None or lost:
                if lost:
                    logger.info("presence: change subscription back")
                lost = False  # arrivals while it was down: listeners re-read
                self._wake()

    def _wake(self):
        for event in self.events:
            event.set()


def _hub():
    """The running loop's hub (main/per_loop.py); closed at server shutdown."""
    return per_loop.get("presence-changes", _Hub, _Hub._close)


def listening():
    """How many streams in this process wait on changes (for tests and checks)."""
    if not settings.REDIS_URL:
        return len(_memory.events)
    return len(_hub().events)


# --- In-process (embedded default, one process) ------------------------------


class _MemoryStore:
    def __init__(self):
        self.people = {}  # (order_id, email) -> (Presence, when it ends)
        self.events = {}  # asyncio.Event -> its loop

    def _prune(self, now):
        for key in [k for k, (_, ends) in self.people.items() if ends <= now - PRESENCE_GRACE_SECONDS]:
            del self.people[key]

    def touch(self, order_id, email, is_employee):
        now = time.time()
        self._prune(now)
        old = self.people.get((order_id, email))
        since = old[0].since if old else now
        self.people[(order_id, email)] = (Presence(order_id, email, is_employee, since), now + PRESENCE_SECONDS)
        if old is None:
            for event, loop in list(self.events.items()):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(event.set)

    def snapshot(self, grace):
        now = time.time()
        self._prune(now)
        listed = [(p, ends) for p, ends in self.people.values() if ends > now - grace]
        soonest = min((ends for _, ends in listed), default=None)
        return Snapshot(now, _sort(p for p, _ in listed), soonest, grace)

    async def add(self, event):
        self.events[event] = asyncio.get_running_loop()

    async def remove(self, event):
        self.events.pop(event, None)


_memory = _MemoryStore()


# --- What the dashboard shows --------------------------------------------------


def _by_order(snap):
    orders = {}
    for p in snap.people:
        orders.setdefault(p.order_id, []).append(p)
    return orders


def dashboard_v1(snap, link):
    """The chapter's event: [{"link", "text": "<order id> (<emails>)"}], by order id."""
    return [
        {"link": link(order_id), "text": f"{order_id} ({', '.join(p.email for p in people)})"}
        for order_id, people in _by_order(snap).items()
    ]


def dashboard_v2(snap, link, last_spoken_to):
    """Per chat: who is present with their role, whether an employee is, since
    when its customers have waited (None once an employee is present), and who
    last spoke to them (`last_spoken_to`: order id -> dict or None). Waiting
    chats come first, longest wait first."""
    chats = []
    for order_id, people in _by_order(snap).items():
        employee_present = any(p.is_employee for p in people)
        customers = [p.since for p in people if not p.is_employee]
        chats.append(
            {
                "order_id": order_id,
                "link": link(order_id),
                "present": [
                    {"email": p.email, "role": "employee" if p.is_employee else "customer", "since": p.since}
                    for p in people
                ],
                "employee_present": employee_present,
                "waiting_since": None if employee_present or not customers else min(customers),
                "last_spoken_to": last_spoken_to.get(order_id),
            }
        )
    chats.sort(key=lambda c: (c["waiting_since"] is None, c["waiting_since"] or 0, c["order_id"]))
    return chats
