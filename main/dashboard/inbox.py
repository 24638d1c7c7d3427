"""customer-service/inbox/: the agents' inbox as Server-Sent Events, for
employees only (docs/presence.md, "The inbox stream").

The stream starts with the whole inbox (`event: inbox`), then sends each
conversation that changed (`event: conversation`), read for this agent (the
unread count is theirs), within a second of the change, on every server
process. A stream that reconnects starts with the whole inbox again. While
it is open, its agent counts as online (the waiting customers' expected
wait)."""

import asyncio
import contextlib
import logging

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from main import presence
from main.conversations import events, state, wire
from main.infra import answers, metrics
from main.infra.db import db_sync_to_async

from .streams import KEEP_ALIVE, SSE_HEADERS, EmployeeStream, sse

logger = logging.getLogger(__name__)

# Changes are gathered this long, then read for the agent in one query.
GATHER_SECONDS = 0.25
AGENT_TOUCH_SECONDS = 5.0  # presence lasts 10 s per touch


@db_sync_to_async
def whole_inbox(user):
    return state.inbox(user)


@db_sync_to_async
def changed(user, order_ids):
    return state.listing(user, True, limit=None, order_ids=order_ids)


class InboxConsumer(EmployeeStream):
    """The inbox stream. It reads its channel-layer messages itself while it
    streams."""

    async def first_read(self, user):
        return await whole_inbox(user)

    async def serve(self, user, inbox):
        layer, channel = get_channel_layer(), None
        try:
            channel = await layer.new_channel()
            await layer.group_add(events.CONVERSATIONS_GROUP, channel)
            agents = await presence.touch_agent(user.email)
        except (RedisError, OSError):
            # Nothing answered yet: a 503 the page retries (with back-off).
            logger.warning("inbox: Redis unavailable", exc_info=True)
            await self.leave(layer, channel)
            return await answers.respond_text(
                self.send, 503, "The inbox is unavailable, try again shortly.\n", answers.retry_after()
            )
        logger.info("inbox: stream opened for user %s", user.pk)
        metrics.INBOX_STREAMS.inc()
        try:
            await self.stream(user, inbox, agents, layer, channel)
        finally:
            metrics.INBOX_STREAMS.dec()
            await self.leave(layer, channel)
            logger.info("inbox: stream closed for user %s", user.pk)

    @staticmethod
    async def leave(layer, channel):
        if channel is None:
            return
        try:
            await layer.group_discard(events.CONVERSATIONS_GROUP, channel)
            delete_channel = getattr(layer, "delete_channel", None)
            if delete_channel is not None:
                await delete_channel(channel)
        except (RedisError, OSError):
            logger.warning("inbox: channel not left (Redis unavailable)", exc_info=True)

    async def stream(self, user, inbox, agents, layer, channel):
        loop = asyncio.get_running_loop()
        end = loop.time() + settings.SSE_MAX_SECONDS
        keepalive = settings.SSE_KEEPALIVE_SECONDS
        pending, wake = set(), asyncio.Event()
        gone, left = asyncio.Event(), []  # the stream ends / the client has left

        async def receive_changes():
            while True:
                message = await layer.receive(channel)
                if message.get("type") == "conversations.changed":
                    reader = message.get("reader_id")
                    if reader is None or reader == user.pk:  # someone else's read changes nothing here
                        pending.update(message["order_ids"])
                        wake.set()
                elif message.get("type") == "channel_layer.lost":
                    gone.set()  # changes were missed: the browser reconnects for the whole inbox
                    wake.set()

        async def watch_disconnect():
            await self.client_gone()
            left.append(True)
            gone.set()
            wake.set()

        await self.send_headers(status=200, headers=SSE_HEADERS)
        await self.send_body(sse(self.whole(inbox, agents), "inbox"), more_body=True)
        tasks = [loop.create_task(receive_changes()), loop.create_task(watch_disconnect())]
        last_sent = touched = loop.time()
        try:
            while not gone.is_set() and loop.time() < end:
                timeout = min(keepalive - (loop.time() - last_sent), AGENT_TOUCH_SECONDS - (loop.time() - touched))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), max(timeout, 0))
                wake.clear()
                if gone.is_set():
                    break
                if pending:
                    await asyncio.sleep(GATHER_SECONDS)
                    order_ids = sorted(pending)
                    pending.clear()
                    for item in await changed(user, order_ids):
                        await self.send_body(sse(item, "conversation"), more_body=True)
                    last_sent = loop.time()
                if loop.time() - touched >= AGENT_TOUCH_SECONDS:
                    await presence.touch_agent(user.email)
                    touched = loop.time()
                if loop.time() - last_sent >= keepalive:
                    await self.send_body(KEEP_ALIVE, more_body=True)
                    last_sent = loop.time()
        except Exception:
            # The database or Redis went away: the stream ends, and the
            # browser reconnects (with back-off) for the whole inbox.
            logger.warning("inbox: stream ended on an error", exc_info=True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if not left:
            await self.send_body(b"")  # the response ends; EventSource reconnects

    @staticmethod
    def whole(inbox, agents_online):
        return {"now": wire.timestamp(timezone.now()), "agents_online": agents_online, "conversations": inbox}
