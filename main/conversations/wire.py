"""What a message looks like to clients, and what text may be one: no
database here, so that anything (the bench's clients too) can use it."""

import re
from datetime import UTC

from django.utils.translation import gettext

from . import redact


def gettext_noop(message):
    """Marks `message` for makemessages, as Django's does, but without
    asking for settings: the bench's clients import this before any."""
    return message


DELETED_USER = "(deleted user)"
# A message's optional client id: the sender's own name for it, so that
# sending it again (after a lost acknowledgement) stores it once.
CLIENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def valid_client_id(value):
    """Whether `value` may be a client id: the same rule for the socket and the REST API."""
    return isinstance(value, str) and CLIENT_ID.fullmatch(value) is not None


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


class Refused(ValueError):
    """Text that cannot be a message: its code (docs/protocol.md, "Bad
    input") and a sentence for people."""

    def __init__(self, code, detail):
        super().__init__(detail)
        self.code = code
        self.detail = detail


# What a sender is told when their text was changed before it was stored.
NOTICES = {
    # English on the chat socket (clients translate by code); the REST API
    # says it in the caller's language.
    "card_number_masked": gettext_noop(
        "A payment card number was masked: only its last four digits were kept. Never send card numbers in the chat."
    ),
}
# Lone surrogates: not Unicode characters, and no encoding (UTF-8 for
# PostgreSQL, msgpack for the channel layer) takes them.
SURROGATE = re.compile("[\ud800-\udfff]")


def not_text(value):
    """Why the string `value` cannot be stored or sent on as it is, or None:
    a NUL character (PostgreSQL's text cannot hold one) or a lone surrogate."""
    if "\x00" in value:
        return gettext_noop("NUL characters")
    if SURROGATE.search(value):
        return gettext_noop("lone surrogates (not Unicode text)")
    return None


def text_problem(text, max_chars):
    """Why `text` cannot be a message, as (code, explanation), or None: the
    same rules for the socket and the REST API (docs/protocol.md). The
    explanation is in the active language: the REST API's caller's, English
    on the chat socket."""
    if not isinstance(text, str):
        return "bad_message", gettext("`message` must be a string.")
    if not text.strip():
        return "empty_message", gettext("Empty or blank messages are not sent.")
    if len(text) > max_chars:
        return "too_long", gettext("A message may not exceed %(max)s characters.") % {"max": max_chars}
    problem = not_text(text)
    if problem is not None:
        return "bad_message", gettext("`message` may not contain %(problem)s.") % {"problem": gettext(problem)}
    return None


def message_text(text, max_chars):
    """`text` as a message is stored and sent, and the codes of the NOTICES
    its sender is told; Refused when it cannot be one. Refused, not mended:
    a client that sends NUL or half a character is told so, and nobody's
    words are changed behind their back but a card number's."""
    problem = text_problem(text, max_chars)
    if problem is not None:
        raise Refused(*problem)
    text, cards = redact.mask_card_numbers(text)
    return text, ["card_number_masked"] if cards else []
