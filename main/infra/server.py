"""uvicorn's HTTP and WebSocket protocols with limits where the bytes arrive:
how long and how large a request's headers may be, and how long a client may
leave what it is sent unread (docs/operations.md, "Limits")."""

import logging
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

logger = logging.getLogger("booktime.server")


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 32768  # a request line and its headers
    header_timeout: float = 10.0  # seconds for them to arrive, from the connection or the request's first byte
    send_timeout: float = 10.0  # seconds a client may keep its connection's send buffer full


LINGER_SECONDS = 2.0  # a refused request's connection stays open this long for its answer to be read
LIMITS = Limits()  # booktime.serve sets the settings' values before serving


def configure(**values):
    global LIMITS
    LIMITS = Limits(**values)


class StallTimer:
    """Aborts a connection whose client has left its send buffer full for
    `send_timeout`: a client that stops reading holds no more of the worker
    than the buffer, and its application sees the disconnect (a chat socket
    leaves its room)."""

    def __init__(self, protocol):
        self.protocol = protocol
        self.handle = None

    def paused(self):
        if self.handle is None:
            self.handle = self.protocol.loop.call_later(LIMITS.send_timeout, self.expired)

    def resumed(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def expired(self):
        self.handle = None
        transport = self.protocol.transport
        logger.info("Connection from %s closed: it stopped reading what it was sent", _client(self.protocol))
        transport.abort()  # close() would wait for the unread buffer to drain


def _client(protocol):
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "?"


class LimitedHttpProtocol(HttpToolsProtocol):
    """httptools' protocol, refusing headers over max_header_bytes (431) or
    slower than header_timeout (408, or closed if nothing came at all)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timer = None
        self.in_headers = True  # bytes now arriving are a request line or headers
        self.header_bytes = 0
        self.headers_done = 0  # requests whose headers have arrived
        self.stall = StallTimer(self)
        self.refused = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc):
        self._disarm_header_timer()
        self.stall.resumed()
        super().connection_lost(exc)

    def data_received(self, data):
        if self.refused:
            return  # read and dropped until the connection closes
        counting, done_before = self.in_headers, self.headers_done
        super().data_received(data)
        if self.transport.is_closing() or self.parser is None:
            return
        # Only a chunk that was all request line and headers counts: one in
        # which headers ended may also hold a body.
        if counting and self.in_headers and self.headers_done == done_before:
            self.header_bytes += len(data)
            if self.header_bytes > LIMITS.max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large", "the request's headers are too large")

    def on_message_begin(self):
        super().on_message_begin()
        self.in_headers = True
        if self.header_timer is None:
            self._arm_header_timer()

    def on_headers_complete(self):
        self.in_headers = False
        self.header_bytes = 0
        self.headers_done += 1
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_message_complete(self):
        super().on_message_complete()
        self.in_headers = True

    def pause_writing(self):
        super().pause_writing()
        self.stall.paused()

    def resume_writing(self):
        super().resume_writing()
        self.stall.resumed()

    def _arm_header_timer(self):
        self.header_timer = self.loop.call_later(LIMITS.header_timeout, self._headers_too_slow)

    def _disarm_header_timer(self):
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_too_slow(self):
        self.header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is under way (its headers came long ago)
        if self.header_bytes or self.url_started():
            self._refuse(408, "Request Timeout", "the request's headers did not arrive in time")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def url_started(self):
        return bool(getattr(self, "url", b""))

    def _refuse(self, status, phrase, why):
        logger.info("Request from %s refused with %d: %s", _client(self), status, why)
        body = why.encode("ascii") + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n" % (status, phrase.encode("ascii"), len(body)) + body
        )
        # The client may still be sending: closing now would reset the
        # connection and lose the answer. Its end is closed, what it sends
        # meanwhile is dropped, and the connection closes shortly after.
        self.refused = True
        self._disarm_header_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


FRAMES = ("websocket.send", "websocket.close")


class LimitedWebSocketProtocol(WebSocketsSansIOProtocol):
    """The `websockets` sans-I/O protocol (frames over ws_max_size closed
    with 1009 as their header arrives), whose client must read: a send
    buffer left full for send_timeout, or a ping unanswered, aborts the
    connection rather than wait for a buffer that never drains."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stall = StallTimer(self)

    def connection_lost(self, exc):
        self.stall.resumed()
        super().connection_lost(exc)

    def pause_writing(self):
        super().pause_writing()
        self.stall.paused()

    def resume_writing(self):
        super().resume_writing()
        self.stall.resumed()

    def keepalive_timeout(self):
        super().keepalive_timeout()
        if not self.disconnected and self.transport.get_write_buffer_size():
            self.transport.abort()

    async def send(self, message):
        # uvicorn raises a RuntimeError for a send after its own close (a ping
        # timeout); to the application the client has gone.
        if self.close_sent and self.initial_response is None and message["type"] in FRAMES:
            raise ClientDisconnected()
        await super().send(message)
