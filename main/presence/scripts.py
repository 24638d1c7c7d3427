"""presence's Lua scripts (main/presence/lua/), with their constants filled in.

Every script starts with head.lua (Redis's clock and pruning); the listing
scripts also with listing.lua. They run atomically on Redis's clock."""

from pathlib import Path

from .records import PRESENCE_GRACE_SECONDS, PRESENCE_SECONDS

PRUNE_BATCH = 500  # expired members removed per call, at most
HMGET_CHUNK = 1000  # people's details read this many at a time
LOG_ENTRIES = 10_000  # arrivals and departures kept for the live listings, about

CONSTANTS = {
    "PRUNE_BATCH": PRUNE_BATCH,
    "HMGET_CHUNK": HMGET_CHUNK,
    "LOG_ENTRIES": LOG_ENTRIES,
    "KEEP": PRESENCE_SECONDS + PRESENCE_GRACE_SECONDS + 2,
    "GRACE": PRESENCE_GRACE_SECONDS,
}


def load(*names):
    """The scripts `names` (files in lua/) as one source, constants filled in."""
    source = "\n".join((Path(__file__).parent / "lua" / f"{name}.lua").read_text() for name in names)
    for name, value in CONSTANTS.items():
        source = source.replace(name, str(value))
    return source


TOUCH = load("head", "touch")  # KEYS: expiry, info, log, agents
AGENTS = load("agents")
LIST = load("head", "listing", "list")
READ = load("head", "listing", "read")
