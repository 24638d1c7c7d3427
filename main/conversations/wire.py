"""What a message looks like to clients, and what text may be one: no
database here, so that anything (the bench's clients too) can use it."""

import re
from datetime import UTC

DELETED_USER = "(deleted user)"
# A message's optional client id: the sender's own name for it, so that
# sending it again (after a lost acknowledgement) stores it once.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def timestamp(dt):
    """A time as clients get it: ISO 8601 in UTC, with milliseconds."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Keys of a message's event that its reader never gets as they are: the
# sender's references are for the sender's eyes only.
PRIVATE_KEYS = ("user_id", "ref", "client_id", "conversation")


def as_seen_by(event, user_id):
    """An event about a message (or a join, leave or read) as `user_id`
    sees it: `mine` when it is their own, with their references."""
    out = {key: value for key, value in event.items() if key not in PRIVATE_KEYS}
    out["mine"] = mine = event.get("user_id") == user_id
    if mine:
        out.update((key, event[key]) for key in ("ref", "client_id") if event.get(key) is not None)
    return out


def text_problem(text, max_chars):
    """Why `text` cannot be a message, as (code, explanation), or None: the
    same rules for the socket and the REST API (docs/protocol.md)."""
    if not isinstance(text, str):
        return "bad_message", "`message` must be a string."
    if not text.strip():
        return "empty_message", "Empty or blank messages are not sent."
    if len(text) > max_chars:
        return "too_long", f"A message may not exceed {max_chars} characters."
    # PostgreSQL text cannot hold NUL, and lone surrogates are not Unicode text.
    if "\x00" in text:
        return "bad_message", "`message` may not contain NUL characters."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "bad_message", "`message` must be valid Unicode text."
    return None
