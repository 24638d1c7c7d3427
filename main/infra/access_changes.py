"""Telling the open sockets and streams of every process that someone's access
changed: a user deactivated or moved out of a group, a session ended, a token
revoked (docs/chat.md, "Access that follows the user").

Each process listens once, on one channel in the group ACCESS_GROUP, and
hands an announcement to the sockets and streams of this process that watch
its key; a socket registers in memory, without a round trip to Redis.

Keys: ("user", user_id), ("session", session_key_hash), ("token", token_hash).
"""

import asyncio
import collections
import contextlib
import hashlib
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import per_loop

logger = logging.getLogger(__name__)

ACCESS_GROUP = "access-changes"
# On a layer whose groups expire (the list-based one), the listener renews
# its membership this often.
RENEW_SECONDS = 3600.0
# The latest keys announced, for a watch registered after its socket's
# reads (`watch(..., since=mark())`): a key announced in between is told
# at once. Past this many, a watch that started before the oldest kept is
# told of each of its keys (a needless look again, never a missed one).
RECENT_KEYS = 4096


def secret_hash(value):
    """A session key or token as it may travel and be kept: a hash."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def for_user(user_id):
    return ("user", int(user_id))


def for_session(key):
    return ("session", secret_hash(key))


def for_token(key):
    return ("token", secret_hash(key))


def announce(*keys):
    """From sync code (signals, views): every process's watchers of these keys
    are told. Best effort: a channel-layer failure is logged; the sockets are
    checked again at their next handshake anyway."""
    layer = get_channel_layer()
    if layer is None or not keys:
        return
    try:
        async_to_sync(layer.group_send)(ACCESS_GROUP, {"type": "access.changed", "keys": [list(k) for k in keys]})
    except Exception:
        logger.exception("Could not announce an access change")


class Watch:
    """A registration: `close()` it when the socket or stream ends."""

    def __init__(self, listener, keys, callback):
        self.listener, self.keys, self.callback = listener, keys, callback

    def close(self):
        # The callback (a consumer's method) is let go: a consumer holds its
        # watch, and without the cycle it is freed as it ends.
        self.callback = None
        for key in self.keys:
            watchers = self.listener.watchers.get(key)
            if watchers is not None:
                watchers.discard(self)
                if not watchers:
                    del self.listener.watchers[key]


class Listener:
    """This process's (event loop's) one listener."""

    def __init__(self, layer):
        self.layer = layer
        self.watchers = {}  # key -> set of Watch
        self.channel = None
        self.task = None
        self.started = None
        self.told = 0  # announcements heard so far
        self.recent = collections.OrderedDict()  # key -> `told` when it was last announced
        self.forgotten = 0  # the latest `told` dropped from `recent`

    async def mark(self):
        """Once the process hears every announcement: a mark for `watch`'s `since`."""
        await self.start()
        return self.told

    async def watch(self, keys, callback, since=None):
        """Call `callback(key)` whenever one of `keys` changes: from now on
        (once this returns, the process hears every announcement), or from
        `since` (a `mark()`), a key announced meanwhile being told at once."""
        await self.start()
        watch = Watch(self, [tuple(k) for k in keys], callback)
        for key in watch.keys:
            self.watchers.setdefault(key, set()).add(watch)
            if since is not None and max(self.recent.get(key, 0), self.forgotten) > since:
                asyncio.get_running_loop().call_soon(callback, key)
        return watch

    async def start(self):
        if self.started is None or (self.started.done() and self.started.exception() is not None):
            self.started = asyncio.ensure_future(self._subscribe())
        await asyncio.shield(self.started)

    async def _subscribe(self):
        channel = await self.layer.new_channel()
        try:
            await self.layer.group_add(ACCESS_GROUP, channel)
        except BaseException:
            await _forget_channel(self.layer, channel)
            raise
        self.channel = channel
        self.task = asyncio.ensure_future(self._listen())

    async def _listen(self):
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            try:
                message = await asyncio.wait_for(self.layer.receive(self.channel), RENEW_SECONDS)
            except TimeoutError:
                message = None
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("Access changes: the channel layer failed; listening again", exc_info=True)
                await asyncio.sleep(1)
                continue
            if getattr(self.layer, "groups_expire", True) and loop.time() - renewed > RENEW_SECONDS:
                renewed = loop.time()
                try:
                    await self.layer.group_add(ACCESS_GROUP, self.channel)
                except Exception:
                    logger.warning("Access changes: group renewal failed", exc_info=True)
            if message is not None and message.get("type") == "access.changed":
                self.tell(message["keys"])

    def tell(self, keys):
        self.told += 1
        for key in keys:
            key = tuple(key)
            self.recent[key] = self.told
            self.recent.move_to_end(key)
            if len(self.recent) > RECENT_KEYS:
                self.forgotten = self.recent.popitem(last=False)[1]
            for watch in list(self.watchers.get(key, ())):
                if watch.callback is None:
                    continue  # closed by a callback before it
                try:
                    watch.callback(key)
                except Exception:
                    logger.exception("Access changes: a watcher failed")

    async def close(self):
        if self.task is not None:
            self.task.cancel()
        if self.channel is not None:
            # The process is stopping; Redis drops its subscription with the connection anyway.
            with contextlib.suppress(Exception):
                await self.layer.group_discard(ACCESS_GROUP, self.channel)
            await _forget_channel(self.layer, self.channel)


async def _forget_channel(layer, channel):
    delete_channel = getattr(layer, "delete_channel", None)
    if delete_channel is not None:
        try:
            await delete_channel(channel)
        except Exception:
            logger.warning("Access changes: could not let go of a channel", exc_info=True)


def listener():
    """The running loop's listener, or None without a channel layer."""
    layer = get_channel_layer()
    if layer is None:
        return None
    return per_loop.get("access-changes", lambda: Listener(layer), lambda listener: listener.close())
