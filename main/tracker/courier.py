"""Client for the courier's shipment-tracking HTTP API.

`GET <COURIER_API_URL>track/<order_id>` answers the shipment status of an
order. One aiohttp ClientSession (and its connection pool) is shared by the
whole process, kept per event loop (main/infra/per_loop.py), since a session
belongs to the loop that opened it.

Every failure surfaces as a CourierError within COURIER_API_TIMEOUT: the
caller (the order tracker) turns it into a 502 or 504.
"""

import asyncio
import json
import time
from urllib.parse import urljoin, urlsplit

import aiohttp
from django.conf import settings

from main.infra import metrics, per_loop

MAX_BYTES = 64 * 1024  # a shipment status is a few hundred bytes
MAX_REDIRECTS = 3
MAX_CONNECTIONS = 100  # per process; callers past it wait (within their timeout)
REDIRECTS = {301, 302, 303, 307, 308}
TEXT = "text/plain; charset=utf-8"


class CourierError(Exception):
    """The courier could not be reached or gave an unusable answer (502);
    `outcome` says which, for the metrics (metrics.COURIER_OUTCOMES)."""

    status = 502
    code = "courier_unavailable"

    def __init__(self, message, outcome="bad_answer"):
        super().__init__(message)
        self.outcome = outcome


class CourierTimeout(CourierError):
    """The courier did not answer within COURIER_API_TIMEOUT (504)."""

    status = 504
    code = "courier_timeout"

    def __init__(self, message):
        super().__init__(message, "timeout")


class CourierAnswer(bytes):
    """The courier's body, with the content type we will pass on."""

    content_type = TEXT


def _session():
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
        headers={"User-Agent": "BookTime-tracker/1.0"},
    )


def get_session():
    """The shared session for the running event loop."""
    return per_loop.get("courier", _session, aiohttp.ClientSession.close)


async def close_session():
    """Close the running loop's session (at shutdown, and between tests)."""
    await per_loop.close("courier")


def status_url(order_id):
    base = settings.COURIER_API_URL
    return urljoin(base if base.endswith("/") else base + "/", f"track/{int(order_id)}")


def _origin(url):
    parts = urlsplit(url)
    return (parts.scheme, parts.hostname, parts.port)


def _safe_content_type(response, body):
    """JSON stays JSON (if it parses); anything else is labelled plain text,
    so a courier can never make us serve HTML or script under our origin."""
    if response.content_type == "application/json":
        try:
            json.loads(body)
        except ValueError as exc:
            raise CourierError("the courier sent malformed JSON") from exc
        return "application/json"
    return TEXT


async def _read_capped(response):
    if response.content_length is not None and response.content_length > MAX_BYTES:
        raise CourierError("the courier's answer is too large")
    body = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_BYTES:
            raise CourierError("the courier's answer is too large")
    return bytes(body)


async def _fetch(url):
    headers = {}
    if settings.COURIER_API_KEY:
        headers["Authorization"] = f"Bearer {settings.COURIER_API_KEY}"
    home = _origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        async with get_session().get(url, headers=headers, allow_redirects=False) as response:
            if response.status in REDIRECTS:
                # Redirects are followed only on the courier's own host: its
                # API key must never be sent anywhere else.
                url = urljoin(url, response.headers.get("Location", ""))
                if _origin(url) != home:
                    raise CourierError("the courier redirected off its host")
                continue
            if response.status != 200:
                outcome = "not_found" if response.status == 404 else "http_error"
                raise CourierError(f"the courier answered HTTP {response.status}", outcome)
            body = await _read_capped(response)
            answer = CourierAnswer(body)
            answer.content_type = _safe_content_type(response, body)
            return answer
    raise CourierError("the courier redirected too many times")


async def fetch_status(order_id):
    """The courier's answer for an order, as CourierAnswer (bytes); raises
    CourierTimeout or CourierError, always within COURIER_API_TIMEOUT. Each
    call is counted by its outcome and timed (main.infra.metrics)."""
    started = time.perf_counter()
    try:
        answer = await _fetch_in_time(order_id)
    except CourierError as exc:
        metrics.courier_called(exc.outcome, time.perf_counter() - started)
        raise
    metrics.courier_called("ok", time.perf_counter() - started)
    return answer


async def _fetch_in_time(order_id):
    try:
        async with asyncio.timeout(settings.COURIER_API_TIMEOUT):
            return await _fetch(status_url(order_id))
    except TimeoutError as exc:
        raise CourierTimeout("the courier did not answer in time") from exc
    except (aiohttp.ClientError, ValueError) as exc:  # refused, reset, bad HTTP, bad URL
        raise CourierError(f"the courier could not be reached ({type(exc).__name__})", "unreachable") from exc
