"""A chat socket opened by hand on a plain TCP socket, for tests and bench
rows that need a client to stop reading or to send what no library would."""

import base64
import os
import socket

V2_SUBPROTOCOL = "booktime.chat.v2"


def raw_websocket(port, order_id, key, rcvbuf=None, timeout=10):
    """A v2 chat socket on 127.0.0.1:`port` opened with token `key`, read up
    to the end of its handshake and no further; `rcvbuf` shrinks the client's
    kernel buffer."""
    conn = socket.socket()
    if rcvbuf:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    conn.settimeout(timeout)
    conn.connect(("127.0.0.1", port))
    nonce = base64.b64encode(os.urandom(16)).decode()
    conn.sendall(
        (
            f"GET /ws/customer-service/{order_id}/?token={key} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Protocol: {V2_SUBPROTOCOL}\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += conn.recv(1)  # byte by byte: nothing after the handshake is read
    if not response.startswith(b"HTTP/1.1 101"):
        conn.close()
        raise ConnectionError(response[:100])
    return conn


def client_frame(payload: bytes, opcode=0x1):
    """A masked client frame (RFC 6455) carrying `payload`."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def oversized_frame_header(length):
    """The header of a text frame announcing `length` bytes, its mask included."""
    return bytes([0x81, 0x80 | 127]) + length.to_bytes(8, "big") + os.urandom(4)


class ServerFrames:
    """Reads the frames a server sends on a raw socket (unmasked, RFC 6455)."""

    def __init__(self, conn):
        self.conn, self.buffer = conn, b""

    def opcodes(self, seconds):
        """The opcodes of the frames that arrive within `seconds`."""
        import time

        found, deadline = [], time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.conn.settimeout(left)
            try:
                chunk = self.conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            self.buffer += chunk
            while (frame := self._next()) is not None:
                found.append(frame)
        return found

    def _next(self):
        if len(self.buffer) < 2:
            return None
        length, start = self.buffer[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(self.buffer[2:4], "big"), 4
        elif length == 127:
            length, start = int.from_bytes(self.buffer[2:10], "big"), 10
        if len(self.buffer) < start + length:
            return None
        opcode, self.buffer = self.buffer[0] & 0x0F, self.buffer[start + length :]
        return opcode
