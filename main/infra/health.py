"""/healthz and /readyz, raw ASGI handlers for the orchestrator's probes
(docs/operations.md, "Health and metrics"): no session, no auth, no throttle,
nothing run in a thread.

- /healthz (liveness): the worker's event loop answers. It checks nothing
  else, so a PostgreSQL or Redis outage never gets a worker restarted.
- /readyz (readiness): PostgreSQL and Redis are each reachable, checked side
  by side, each within CHECK_TIMEOUT_SECONDS, so the answer comes in about
  that long even when one of them hangs. 503 names the failing check.
"""

import asyncio
import logging

import psycopg
from django.conf import settings

from .answers import respond_json, respond_text, retry_after
from .db import psycopg_params
from .redis_client import get_redis

logger = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 1.0
# Paths polled every few seconds: their successful answers write no access line.
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")

_was_ready = True  # a change of readiness is logged, not every probe


async def healthz(scope, receive, send):
    if not await _get_or_head(scope, send):
        return
    await respond_json(send, 200, {"status": "ok"})


async def readyz(scope, receive, send):
    if not await _get_or_head(scope, send):
        return
    names, checks = zip(*CHECKS.items(), strict=True)
    results = dict(zip(names, await asyncio.gather(*(_within_timeout(check) for check in checks)), strict=True))
    ready = all(result in ("ok", "not used") for result in results.values())
    _log_change(ready, results)
    if ready:
        await respond_json(send, 200, {"status": "ready", "checks": results})
    else:
        await respond_json(send, 503, {"status": "unavailable", "checks": results}, retry_after())


async def _get_or_head(scope, send):
    if scope.get("method") in ("GET", "HEAD"):
        return True
    await respond_text(send, 405, "GET only.\n", (b"Allow", b"GET, HEAD"))
    return False


async def _within_timeout(check):
    """The check's result: "ok", "not used", "timeout" or "unreachable"."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await check()
    except TimeoutError:
        return "timeout"
    except Exception as error:
        logger.debug("readyz: %s failed: %r", check.__name__, error)
        return "unreachable"


async def postgresql():
    # A connection of its own, not the pool's: the pool's borrowing happens in
    # threads, and what readiness asks is whether a new connection can be made.
    params = psycopg_params()
    if params is None:
        return "not used"
    # libpq waits at least 2 s; the check's own timeout is shorter.
    params["connect_timeout"] = 2
    async with await psycopg.AsyncConnection.connect(autocommit=True, **params) as connection:
        await connection.execute("SELECT 1")
    return "ok"


async def redis():
    # The process's own client: the pool the worker's work uses.
    if not settings.REDIS_URL:
        return "not used"
    await get_redis().ping()
    return "ok"


CHECKS = {"postgresql": postgresql, "redis": redis}


def _log_change(ready, results):
    global _was_ready
    if ready != _was_ready:
        _was_ready = ready
        if ready:
            logger.info("readyz: ready again")
        else:
            logger.warning("readyz: not ready: %s", ", ".join(f"{k} {v}" for k, v in results.items()))


class QuietProbes:
    """A logging filter for uvicorn's access log: a probe or scrape answered
    2xx writes no line; a failing or refused one still does."""

    def filter(self, record):
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            path, status = args[2], args[4]
            if isinstance(path, str) and path.split("?", 1)[0] in QUIET_PATHS and 200 <= int(status) < 300:
                return False
        return True
