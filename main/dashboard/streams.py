"""The base of the employees' event streams (Server-Sent Events)."""

import json

from channels.generic.http import AsyncHttpConsumer

from main import access
from main.infra import answers
from main.infra.consumer import BaseConsumer
from main.infra.db import db_sync_to_async, unreachable

SSE_HEADERS = [
    (b"Content-Type", b"text/event-stream; charset=utf-8"),
    (b"Cache-Control", b"no-cache"),
    (b"X-Accel-Buffering", b"no"),  # nginx: pass events through unbuffered
]
KEEP_ALIVE = b": keep-alive\n\n"


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
        await self.serve(user, first)

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
