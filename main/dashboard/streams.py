"""The base of the employees' event streams (Server-Sent Events)."""

import asyncio
import contextlib
import json
import logging

from channels.generic.http import AsyncHttpConsumer
from redis.exceptions import RedisError

from main import access
from main.infra import access_changes, answers, auth
from main.infra.consumer import BaseConsumer
from main.infra.db import db_sync_to_async, unreachable

SSE_HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),  # nginx: pass events through unbuffered
]
KEEP_ALIVE = b": keep-alive\n\n"

logger = logging.getLogger(__name__)


def sse(payload, kind=None):
    """One event: `data: <json>`, named `kind` if given."""
    name = b"event: %s\n" % kind.encode() if kind else b""
    return name + b"data: %s\n\n" % json.dumps(payload).encode()


is_employee = db_sync_to_async(access.is_employee)


class EmployeeStream(BaseConsumer, AsyncHttpConsumer):
    """GET only, for employees only (anyone else: 403), and `serve(user,
    first)` answers. A stream's handle() runs as long as the response does, and
    meanwhile the consumer reads nothing more from the client: the stream
    watches for the client's disconnect itself (`client_gone`)."""

    # What the stream hears from the channel layer, it reads itself.
    channel_layer_alias = None

    async def __call__(self, scope, receive=None, send=None):
        self._client_receive = scope if send is None else receive
        return await super().__call__(scope, receive, send)

    async def handle(self, body):
        if self.scope.get("method", "GET") != "GET":
            return await answers.respond_text(self.send, 405, "GET only.\n", (b"Allow", b"GET"))
        user = self.scope.get("user")
        try:
            if not await is_employee(user):
                return await answers.respond_text(self.send, 403, "Employees only.\n")
            first = await self.first_read(user)
        except Exception as error:
            if not unreachable(error):
                raise
            return await answers.unavailable(self.scope, None, self.send)
        await self.serve_while_allowed(user, first)

    async def serve_while_allowed(self, user, first):
        """serve(), ended as soon as the user may no longer have it: logged
        out, deactivated, or no longer an employee (access_changes)."""
        listener = access_changes.listener()
        if listener is None:
            return await self.serve(user, first)
        changed = asyncio.Event()
        ended = []  # the token or session that let the user in ended: no need to look

        def heard(key):
            if key[0] != "user":
                ended.append(key)
            changed.set()

        try:
            watch = await listener.watch(auth.access_keys(self.scope), heard)
        except (RedisError, OSError):
            logger.warning("%s: Redis unavailable", self.scope.get("path"), exc_info=True)
            return await answers.unavailable(self.scope, None, self.send)
        serving = asyncio.ensure_future(self.serve(user, first))
        try:
            while True:
                waiting = asyncio.ensure_future(changed.wait())
                await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                if serving.done():
                    return serving.result()
                changed.clear()
                if not ended and await self.still_allowed(user):
                    continue
                logger.info("%s: stream ended, access withdrawn for user %s", self.scope.get("path"), user.pk)
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
                return await self.end_response()
        finally:
            watch.close()
            serving.cancel()

    async def still_allowed(self, user):
        try:
            now = await auth.user_now(self.scope)
            return now.is_authenticated and now.pk == user.pk and await is_employee(now)
        except Exception as error:
            if not unreachable(error):
                raise
            # Not known now: the stream goes on, and is checked again when it reconnects.
            logger.warning("%s: access not checked, database unavailable", self.scope.get("path"))
            return True

    async def send(self, message):
        if message["type"] == "http.response.start":
            self.response_started = True
        await super().send(message)

    async def end_response(self):
        """The response ends: an event stream, so the browser comes back and is refused."""
        if getattr(self, "response_started", False):
            await self.send_body(b"")
        else:
            await answers.respond_text(self.send, 403, "Employees only.\n")

    async def first_read(self, user):
        """What the stream reads from the database before it answers (a 503
        while the database is out of reach)."""
        return None

    async def serve(self, user, first):
        raise NotImplementedError

    async def client_gone(self):
        """Returns once the client has gone."""
        while (await self._client_receive())["type"] != "http.disconnect":
            pass
