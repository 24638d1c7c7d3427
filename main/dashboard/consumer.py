"""customer-service/notify/: which order chats have someone present, as
Server-Sent Events, for employees only (docs/presence.md, "The event stream")."""

import asyncio
import contextlib
import functools
import logging

from django.conf import settings
from redis.exceptions import RedisError

from main import presence
from main.infra import answers, metrics, per_loop
from main.infra.auth import query_params
from main.infra.batching import Shared

from . import payloads
from .streams import KEEP_ALIVE, SSE_HEADERS, EmployeeStream

logger = logging.getLogger(__name__)


async def _read(form):
    """The whole list in `form` from presence now (a one-off listing), as an event."""
    view = await payloads.Versions(form).view(await presence.snapshot(live=False))
    return view.full


async def _view(versions):
    """The live listing (people through the grace for their next heartbeat) as
    this process's next dashboard view."""
    return await versions.view(await presence.snapshot(live=True))


def live_view(form):
    """The process's (loop's) one reader of a form of the live dashboard: the
    streams one arrival wakes make one read (one query, one encoding)."""
    return per_loop.get(f"dashboard-v{form}-live", lambda: Shared(functools.partial(_view, payloads.Versions(form))))


class ChatNotifyConsumer(EmployeeStream):
    """One `data: <json>` event whenever the list changes (someone arrives or
    expires), a keep-alive comment when idle. `?nopoll`: one event, then the
    response ends.

    - default (the chapter's form): [{"link", "text": "<id> (<emails>)"}],
      the whole list each time;
    - `?format=v2` (the dashboard page): {"now", "chats": [...]} first (see
      payloads.v2_chat), then only what changed: {"now", "changed": [...],
      "removed": [order ids]}.
    """

    async def serve(self, user, first):
        query = query_params(self.scope)
        self.form = 2 if query.get("format") == ["v2"] else 1
        if "nopoll" in query:
            try:
                event = await _read(self.form)
            except RedisError:
                logger.exception("notify: presence store unavailable")
                return await self.unavailable()
            return await self.send_response(200, event, headers=SSE_HEADERS)
        logger.info("notify: stream opened for user %s", user.pk)
        metrics.DASHBOARD_STREAMS.inc()
        try:
            await self.stream()
        finally:
            metrics.DASHBOARD_STREAMS.dec()
            logger.info("notify: stream closed for user %s", user.pk)

    async def stream(self):
        loop = asyncio.get_running_loop()
        keepalive = settings.SSE_KEEPALIVE_SECONDS
        end = loop.time() + settings.SSE_MAX_SECONDS
        self.gone = False
        started = False
        try:
            async with presence.changes() as wake:
                watcher = loop.create_task(self.watch_disconnect(wake))
                try:
                    seen, last_sent = None, loop.time()  # the version this client has
                    while not self.gone and loop.time() < end:
                        wake.clear()  # before reading: an arrival from here on wakes us again
                        view = await live_view(self.form)()
                        if not started:
                            await self.send_headers(status=200, headers=SSE_HEADERS)
                            started = True
                        if view.version != seen:
                            # What changed, if this client has the version it changes; else all.
                            event = view.changes if seen is not None and view.since == seen else view.full
                            await self.send_body(event, more_body=True)
                            seen, last_sent = view.version, loop.time()
                        elif loop.time() - last_sent >= keepalive:
                            await self.send_body(KEEP_ALIVE, more_body=True)
                            last_sent = loop.time()
                        timeout = min(keepalive - (loop.time() - last_sent), end - loop.time())
                        if view.next_expiry is not None:  # wake when someone expires
                            timeout = min(timeout, view.next_expiry + 0.02)
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), max(timeout, 0))
                finally:
                    watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watcher
        except RedisError:
            logger.exception("notify: presence store unavailable")
            if not started:
                return await self.unavailable()
        if started and not self.gone:
            await self.send_body(b"")  # end the response; EventSource reconnects

    async def watch_disconnect(self, wake):
        await self.client_gone()
        self.gone = True
        wake.set()

    async def unavailable(self):
        await answers.respond_text(
            self.send, 503, "Presence is unavailable, try again shortly.\n", answers.retry_after()
        )
