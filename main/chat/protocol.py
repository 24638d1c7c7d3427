"""The chat's wire protocol (docs/protocol.md): what a client's frame may
be, how a refusal is told, and how each protocol version shows an event.

v1 is the chapter's protocol byte for byte; v2, asked for with a WebSocket
subprotocol, adds ids, history, resume, typing, read markers and errors."""

import json

from django.utils import timezone

from main.conversations import wire
from main.infra.answers import CLOSE_TOKEN_REVOKED
from main.infra.ids import parse_id

V2_SUBPROTOCOL = "booktime.chat.v2"
MAX_REF_CHARS = 64  # a v2 message frame's optional `ref`, echoed to its sender

# A socket that keeps sending frames the server refuses is closed with 1008
# (policy violation); see limits.Strikes.
CLOSE_POLICY_VIOLATION = 1008
CLOSE_SIGNED_OUT = CLOSE_TOKEN_REVOKED  # the token or session it was opened with ended
CLOSE_ACCESS_WITHDRAWN = 4403  # the user may no longer see this order's chat
CLOSE_ROLE_CHANGED = 1012  # admitted now in another role: reconnecting joins in that one
CLOSE_TOO_MANY_SOCKETS = 4429  # the user has CHAT_MAX_SOCKETS_PER_USER (or _PER_EMPLOYEE) open on this worker


class ChatError(Exception):
    """A refused frame: answered to a v2 client as an `error` event."""

    def __init__(self, code, message, **extra):
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    def event(self):
        return {"type": "error", "code": self.code, "message": self.message, **self.extra}


def parse_client_id(value):
    """A client id as sent (None when absent), else ChatError."""
    if value is None:
        return None
    if not wire.valid_client_id(value):
        raise ChatError("bad_request", "`client_id` must be 1 to 64 letters, digits or the characters . _ : -")
    return value


class V1:
    """The chapter's protocol: names and texts only; refused frames are dropped."""

    version = 1
    subprotocol = None
    frame_types = frozenset({"message", "heartbeat"})
    catches_up = False  # no history, resume or read markers

    def show(self, event, member):
        """A group event as this client sees it, or None if it sees nothing."""
        kind = event["type"]
        if kind == "chat_message":
            return {"type": kind, "username": event["username"], "message": event["message"]}
        if kind in ("chat_join", "chat_leave"):
            return {"type": kind, "username": event["username"]}
        return None

    def refusal(self, error, ref):
        return None  # v1 has no error event

    def ref(self, content):
        return None  # v1 has no `ref`

    def client_id(self, content):
        return None  # nor `client_id`

    def notices(self, codes, event, ref):
        return []  # nor notices

    def conversation(self, state):
        return None  # nor conversations

    def queue(self, place):
        return None  # nor the queue


class V2:
    """Ids, sequence numbers and timestamps, history, resume, typing, read
    markers, and errors as events; `mine` marks the client's own events."""

    version = 2
    subprotocol = V2_SUBPROTOCOL
    frame_types = V1.frame_types | {"typing", "history", "resume", "read"}
    catches_up = True

    def show(self, event, member):
        kind = event["type"]
        if kind == "chat_typing":
            mine = event["user_id"] == member.user_id
            return None if mine else {"type": "typing", "username": event["username"]}
        out = wire.as_seen_by(event, member.user_id)
        if kind == "chat_read":
            out["type"] = "read"
        return out

    def ready(self, member, reads, limits, conversation):
        """The first event on an accepted socket: who you are, everyone's
        read markers, the limits you are held to, the conversation's state."""
        return {
            "type": "ready",
            "protocol": self.version,
            "order_id": member.order_id,
            "you": {"username": member.name, "employee": member.employee},
            "reads": reads,
            "limits": limits,
            "conversation": conversation,
            "now": wire.timestamp(timezone.now()),  # the server's clock, for waiting times
        }

    def conversation(self, state):
        """The conversation's status, since when the customer waits, who holds it."""
        return {"type": "conversation", **state}

    def queue(self, place):
        """Where a waiting customer stands in the queue, and the expected wait."""
        return {"type": "queue", **place}

    def refusal(self, error, ref):
        event = error.event()
        if ref is not None:
            event["ref"] = ref
        return event

    def ref(self, content):
        """A message frame's optional `ref` (any short string the client
        picks), echoed in the sender's own chat_message or error."""
        ref = content.get("ref")
        if ref is None:
            return None
        if not isinstance(ref, str) or not 0 < len(ref) <= MAX_REF_CHARS:
            raise ChatError("bad_request", f"`ref` must be a string of 1 to {MAX_REF_CHARS} characters.")
        problem = wire.not_text(ref)
        if problem is not None:  # it travels in the message's event: refused before anything is stored
            raise ChatError("bad_request", f"`ref` may not contain {problem}.")
        return ref

    def client_id(self, content):
        """A message frame's optional `client_id`."""
        return parse_client_id(content.get("client_id"))

    def notices(self, codes, event, ref):
        """What the sender of the stored message `event` is told about how
        its text was changed (wire.NOTICES), with the frame's `ref`."""
        notices = []
        for code in codes:
            notice = {"type": "notice", "code": code, "message": wire.NOTICES[code]}
            notice.update(id=event["id"], seq=event["seq"])
            if ref is not None:
                notice["ref"] = ref
            notices.append(notice)
        return notices


def negotiate(subprotocols):
    """The protocol a handshake asks for: v2 if it offers its subprotocol."""
    return V2() if V2_SUBPROTOCOL in (subprotocols or ()) else V1()


# --- Incoming frames ---------------------------------------------------------


# The heartbeat as clients write it (JSON.stringify, json.dumps): known
# without parsing, every socket sending one every 10 s.
HEARTBEAT = {"type": "heartbeat"}
HEARTBEAT_FRAMES = frozenset({'{"type":"heartbeat"}', '{"type": "heartbeat"}'})


def parse_frame(text_data, bytes_data, allowed_types, max_bytes):
    """The JSON object a frame carries, or ChatError."""
    if text_data in HEARTBEAT_FRAMES:
        return HEARTBEAT
    if text_data is None:
        raise ChatError("bad_frame", "Frames must be text frames carrying a JSON object.")
    if len(text_data) > max_bytes or len(text_data.encode("utf-8", "surrogatepass")) > max_bytes:
        raise ChatError("too_large", f"A frame may not exceed {max_bytes} bytes.")
    try:
        content = json.loads(text_data)
    except ValueError:
        raise ChatError("bad_json", "The frame is not valid JSON.") from None
    except RecursionError:  # arrays or objects nested deeper than the parser goes
        raise ChatError("bad_json", "The frame's JSON is nested too deeply.") from None
    if not isinstance(content, dict):
        raise ChatError("bad_frame", "The frame must be a JSON object.")
    kind = content.get("type")
    if not isinstance(kind, str) or kind not in allowed_types:
        raise ChatError("unknown_type", f"Unknown type; expected one of: {', '.join(sorted(allowed_types))}.")
    return content


def clean_message(content, max_chars):
    """The text of a `message` frame as it is stored and sent (as sent, but
    for a card number's digits), and the codes of the notices its sender
    is told (wire.message_text), or ChatError."""
    try:
        return wire.message_text(content.get("message"), max_chars)
    except wire.Refused as refused:
        raise ChatError(refused.code, refused.detail) from None


def optional_id(content, key):
    """content[key] as a non-negative integer id, None when absent, else ChatError."""
    value = content.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or parse_id(value, minimum=0) is None:
        raise ChatError("bad_request", f"`{key}` must be a non-negative integer message id.")
    return value


def page_size(content, maximum):
    value = content.get("limit", maximum)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ChatError("bad_request", "`limit` must be a positive integer.")
    return min(value, maximum)
