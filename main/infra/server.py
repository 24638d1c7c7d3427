"""uvicorn's HTTP and WebSocket protocols with limits where the bytes arrive:
how long and how large a request's headers may be, and how long a client may
leave what it is sent unread (docs/operations.md, "Limits")."""

import collections
import logging
import math
import weakref
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import State

logger = logging.getLogger("booktime.server")


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 32768  # a request line and its headers
    header_timeout: float = 10.0  # seconds for them to arrive, from the connection or the request's first byte
    send_timeout: float = 10.0  # seconds a client may keep its connection's send buffer full


LINGER_SECONDS = 2.0  # a refused request's connection stays open this long for its answer to be read
LIMITS = Limits()  # booktime.serve sets the settings' values before serving
ON_CLOSE = None  # called as each connection closes (booktime.serve's collector counts them)


def configure(on_close=None, **values):
    global LIMITS, ON_CLOSE
    LIMITS = Limits(**values)
    ON_CLOSE = on_close


class Deadline:
    """`expired()` runs `seconds()` after arm() unless disarm() comes first;
    close() disarms it for good."""

    def __init__(self, protocol, seconds, expired):
        self.protocol, self.seconds, self.expired = protocol, seconds, expired
        self.handle = None

    def arm(self):
        if self.handle is None and self.protocol is not None:
            self.handle = self.protocol.loop.call_later(self.seconds(), self._fire)

    def disarm(self):
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def close(self):
        # The protocol holds its deadline and the deadline its protocol: let
        # go, so a closed connection is freed as it closes, not by the
        # garbage collector's next full collection.
        self.disarm()
        self.protocol = self.expired = None

    def _fire(self):
        self.handle = None
        self.expired()


def stall_deadline(protocol):
    """Aborts a connection whose client has left its send buffer full for
    `send_timeout`: a client that stops reading holds no more of the worker
    than the buffer, and its application sees the disconnect (a chat socket
    leaves its room)."""

    def stopped_reading():
        logger.info("Connection from %s closed: it stopped reading what it was sent", _client(protocol))
        protocol.transport.abort()  # close() would wait for the unread buffer to drain

    return Deadline(protocol, lambda: LIMITS.send_timeout, stopped_reading)


class AbortsStalledClients:
    """Mixed in before a uvicorn protocol: its connection is aborted once its
    send buffer has stayed full for send_timeout (stall_deadline)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stall = stall_deadline(self)

    def connection_lost(self, exc):
        self.stall.close()
        super().connection_lost(exc)
        if ON_CLOSE is not None:
            ON_CLOSE()

    def pause_writing(self):
        super().pause_writing()
        self.stall.arm()

    def resume_writing(self):
        super().resume_writing()
        self.stall.disarm()


def _client(protocol):
    client = getattr(protocol, "client", None)
    return f"{client[0]}:{client[1]}" if client else "?"


class LimitedHttpProtocol(AbortsStalledClients, HttpToolsProtocol):
    """httptools' protocol, refusing headers over max_header_bytes (431) or
    slower than header_timeout (408, or closed if nothing came at all)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_deadline = Deadline(self, lambda: LIMITS.header_timeout, self._headers_too_slow)
        self.in_headers = True  # bytes now arriving are a request line or headers
        self.header_bytes = 0
        self.headers_done = 0  # requests whose headers have arrived
        self.refused = False

    def connection_made(self, transport):
        super().connection_made(transport)
        self.header_deadline.arm()

    def connection_lost(self, exc):
        self.header_deadline.close()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self):
        paused = self.stall.handle is not None  # the client left an earlier response unread
        super().handle_websocket_upgrade()
        # The connection is the WebSocket protocol's now: this one is done,
        # and a send buffer still full is the new protocol's to time.
        self.header_deadline.close()
        self.stall.close()
        if paused:
            self.transport.get_protocol().pause_writing()

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
        self.header_deadline.arm()

    def on_headers_complete(self):
        self.in_headers = False
        self.header_bytes = 0
        self.headers_done += 1
        self.header_deadline.disarm()
        super().on_headers_complete()

    def on_message_complete(self):
        super().on_message_complete()
        self.in_headers = True

    def _headers_too_slow(self):
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
        self.header_deadline.disarm()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


FRAMES = ("websocket.send", "websocket.close")
# Reading from a WebSocket pauses once this many of its messages wait for
# the application to take them, and resumes once it has taken them all.
# Pausing at the first, as uvicorn does, changes the event loop's watch of
# the socket twice for every frame, a heartbeat's too. A client sending
# faster than it is served is held back all the same (with what one read
# brought in besides).
RECEIVED_AHEAD = 4
# A small text frame from a client: 0x81 (final, text), the mask bit with a
# 7-bit payload length, the 4-byte mask, then the payload.
SMALL_TEXT_FRAME, MASKED, SMALL_HEADER, SMALL_PAYLOAD_MAX = 0x81, 0x80, 6, 125
# A WebSocket's scope extension: the application may set its "text" to a
# callable `take(text)`, which the protocol calls with the text of a small
# text frame read alone (see took_small_text_frame) while the application
# waits in receive(), so every message before it has been handled; if it
# answers True, the message was handled there and is not queued. A frame
# that needs no await (a chat heartbeat) is then handled without waking the
# application's task.
RECEIVE_NOW = "booktime.receive_now"
TIMER_SLACK = 0.01  # the event loop may run a timer this much early (its clock's rounding)


class Recheck:
    """One socket's place in its worker's Rechecks; cancel() as a timer's."""

    __slots__ = ("protocol",)

    def __init__(self, protocol):
        self.protocol = protocol

    def cancel(self):
        self.protocol = None  # a closed socket is not held until its second comes


class Rechecks:
    """When each WebSocket's keep-alive is looked at (ping it, or wait as it
    was heard from lately), to the second: one timer per worker wakes once a
    second for the lot. With a timer each, 10,000 chat sockets heartbeating
    woke the worker hundreds of times a second to find nothing to do."""

    def __init__(self, loop):
        self.loop = loop
        self.due = collections.defaultdict(list)  # a whole second of the loop's clock: its Rechecks
        self.ticking = False

    def add(self, protocol, when):
        """protocol.send_keepalive_ping() runs at `when` (on the loop's clock)
        or within a second after; the answer's cancel() calls it off."""
        recheck = Recheck(protocol)
        self.due[math.ceil(when)].append(recheck)
        if not self.ticking:
            self.ticking = True
            self.loop.call_at(math.ceil(self.loop.time()) + 1, self.tick)
        return recheck

    def tick(self):
        now = self.loop.time()
        for second in sorted(s for s in self.due if s <= now + TIMER_SLACK):
            for recheck in self.due.pop(second):
                if recheck.protocol is not None:
                    try:
                        recheck.protocol.send_keepalive_ping()
                    except Exception:  # the others are still checked
                        logger.exception("Keep-alive check of %s failed", _client(recheck.protocol))
        self.ticking = bool(self.due)
        if self.ticking:
            self.loop.call_at(math.floor(now + TIMER_SLACK) + 1, self.tick)


_rechecks = weakref.WeakKeyDictionary()  # the event loop's Rechecks


def rechecks(loop):
    found = _rechecks.get(loop)
    if found is None:
        found = _rechecks[loop] = Rechecks(loop)
    return found


class Received:
    """The messages a WebSocket's protocol holds for the application's
    receive(), in place of uvicorn's asyncio.Queue (one reader, the same
    calls). It keeps the protocol's loop: asyncio.Queue asks for the running
    loop at every wait, a getpid system call on Python 3.11, once per frame."""

    def __init__(self, loop):
        self.loop = loop
        self.messages = collections.deque()
        self.waiting = None  # the reader's future while it waits

    def put_nowait(self, message):
        self.messages.append(message)
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)

    async def get(self):
        while not self.messages:
            self.waiting = self.loop.create_future()
            try:
                await self.waiting
            finally:
                self.waiting = None
        return self.messages.popleft()

    def empty(self):
        return not self.messages

    def idle(self):
        """The reader waits and there is nothing for it: every message so
        far has been taken, and handled (it reads the next once done)."""
        return self.waiting is not None and not self.messages

    def qsize(self):
        return len(self.messages)


class LimitedWebSocketProtocol(AbortsStalledClients, WebSocketsSansIOProtocol):
    """The `websockets` sans-I/O protocol (frames over ws_max_size closed
    with 1009 as their header arrives), whose client must read: a send
    buffer left full for send_timeout, or a ping unanswered, aborts the
    connection rather than wait for a buffer that never drains. A client
    heard from within the ping interval is not pinged: it is there (a chat
    client's heartbeat every 10 s spares the server a ping every 20). The
    pings go out to the second (Rechecks), not to the millisecond."""

    heard_at = 0.0  # the loop's time of the client's last bytes

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queue = Received(self.loop)
        self.receive_now = {}  # the RECEIVE_NOW extension, as the application set it
        self.rechecks = rechecks(self.loop)

    def handle_connect(self, event):
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none if the handshake was refused
        if scope is not None:  # and the application's task has not started yet
            scope["extensions"][RECEIVE_NOW] = self.receive_now

    def connection_lost(self, exc):
        self.receive_now.clear()  # nothing more is read; the application is let go
        super().connection_lost(exc)

    def data_received(self, data):
        self.heard_at = self.loop.time()
        if not self.took_small_text_frame(data):
            super().data_received(data)

    def took_small_text_frame(self, data):
        """Hands the application a chunk that is one small text frame (a
        heartbeat, most chat frames), as uvicorn would, without `websockets`'
        frame parser, whose generators cost a frame this small more than
        the rest of its way to the application; True if it did. While the
        application waits, its RECEIVE_NOW hook may take it there and then.
        Anything else (other frames, several in a chunk, a frame split over
        chunks or inside a fragmented message, before the handshake's end)
        goes to the parser, which also refuses what breaks the protocol."""
        conn, size = self.conn, len(data) - SMALL_HEADER
        if not 0 < size <= SMALL_PAYLOAD_MAX or data[0] != SMALL_TEXT_FRAME or data[1] != MASKED | size:
            return False
        if conn.state is not State.OPEN or conn.current_size is not None or conn.reader.buffer or conn.extensions:
            return False
        if size > min(conn.max_message_size or size, conn.max_fragment_size or size):
            return False
        payload = apply_mask(data[SMALL_HEADER:], data[2:SMALL_HEADER])
        take = self.receive_now.get("text")
        if take is None or not self.queue.idle() or not self.taken_now(take, payload):
            self.handle_text(Frame(Opcode.TEXT, payload))
        return True

    def schedule_ping(self):
        # uvicorn's sets a timer per socket: the worker's Rechecks wake once
        # a second for them all. An interval after the client was last heard
        # from, or after the last ping if that came later (no ping timeout).
        self.ping_timer = self.rechecks.add(self, max(self.heard_at, self.ping_sent_at) + self.ping_interval)

    def send_keepalive_ping(self):
        if self.loop.time() - self.heard_at < self.ping_interval:
            self.schedule_ping()  # heard from meanwhile: looked at again an interval after
            return
        super().send_keepalive_ping()

    def send_receive_event_to_app(self):
        # uvicorn 0.54's, but a text frame that is not UTF-8 is the client's fault
        # (closed with 1007, logged as such), not an error with a traceback;
        # and reading pauses only once RECEIVED_AHEAD messages wait for the
        # application, not at the first.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return  # as uvicorn's: reads stay on until the client's close comes
        if self.curr_msg_data_type == "text":
            try:
                message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                logger.info("WebSocket from %s closed with 1007: a text frame was not UTF-8", _client(self))
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.queue.put_nowait(message)
        if not self.read_paused and self.queue.qsize() >= RECEIVED_AHEAD:
            self.read_paused = True
            self.transport.pause_reading()

    def taken_now(self, take, payload):
        try:
            return take(payload.decode())
        except UnicodeDecodeError:
            return False  # refused the usual way
        except Exception:
            # The application's fault, not the client's: the message takes
            # the usual way, where the application answers it.
            logger.exception("WebSocket from %s: the application's receive-now hook failed", _client(self))
            return False

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
