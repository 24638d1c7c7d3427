"""/metrics: this worker's metrics (main/infra/metrics.py) for Prometheus, a
raw ASGI handler.

Only for a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`: any
other request, and every request while METRICS_TOKEN is unset, gets what any
path the site lacks gets (Django's 404), so the path gives nothing away.

Numbers that live outside the worker (presence, in Redis) are read as the
metrics are scraped, by the readers registered with `on_scrape`, each within
READ_TIMEOUT_SECONDS: a scrape is answered in time whatever Redis does, with
the last numbers read.
"""

import asyncio
import hmac
import logging

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder

from .answers import respond

logger = logging.getLogger(__name__)

READ_TIMEOUT_SECONDS = 1.0

_readers = []  # async callables, awaited before each scrape
_django = None  # Django's handler, for the 404 of a refused request


def on_scrape(read):
    """Await `read()` before each scrape (it sets gauges from what it reads)."""
    if read not in _readers:
        _readers.append(read)


def authorized(scope):
    """Whether the request carries the bearer token (compared in constant time)."""
    token = settings.METRICS_TOKEN
    if not token:
        return False
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())
    return False


async def _read(read):
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            await read()
    except Exception as error:  # a timeout too: the gauges keep their last values
        name = f"{getattr(read, '__module__', '')}.{getattr(read, '__qualname__', read)}"
        logger.warning("metrics: %s failed (%s); its numbers are the last read", name, type(error).__name__)


async def metrics(scope, receive, send):
    if scope.get("method") not in ("GET", "HEAD") or not authorized(scope):
        return await absent(scope, receive, send)
    await asyncio.gather(*(_read(read) for read in _readers))
    accept = next((v.decode("latin-1") for n, v in scope.get("headers", ()) if n == b"accept"), "")
    encoder, content_type = choose_encoder(accept)
    await respond(send, 200, encoder(REGISTRY), content_type)


async def absent(scope, receive, send):
    """Django's answer, as to any path it does not know."""
    global _django
    if _django is None:
        _django = ASGIHandler()
    await _django(scope, receive, send)
