"""Real servers and a real HTTP client for the mobile API's end-to-end tests:
our app in a production worker and the courier stand-in, both on loopback."""

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
import pytest

from harness import servers

COURIER_TIMEOUT = 1.5  # the test app's COURIER_API_TIMEOUT
LOGIN_LIMIT = 5  # the test app's LOGIN_FAILURE_LIMIT


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes
    elapsed: float

    def json(self):
        return json.loads(self.body)


async def afetch(session, method, url, **kwargs):
    started = time.monotonic()
    async with session.request(method, url, allow_redirects=False, **kwargs) as response:
        body = await response.read()
        return Answer(response.status, dict(response.headers), body, time.monotonic() - started)


def fetch(method, url, timeout=15, **kwargs):
    """One request with a fresh aiohttp client, from a plain (sync) test."""

    async def go():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            return await afetch(session, method, url, **kwargs)

    return asyncio.run(go())


def configure(standin, **changes):
    """Change the stand-in's behaviour (see main/courier_standin.py)."""
    answer = fetch("POST", f"{standin.url}/control", json=changes)
    assert answer.status == 200, answer.body
    return answer.json()


def hits(standin, order_id):
    return fetch("GET", f"{standin.url}/control").json()["hits"].get(str(order_id), 0)


def token_header(token):
    return {"Authorization": f"Token {token}"}


@pytest.fixture(scope="module")
def standin():
    server = servers.courier_standin()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def app(django_db_setup, django_db_blocker, standin):
    """Our app in a production worker, once per module, on the test database, calling
    the stand-in courier with a short timeout."""
    with django_db_blocker.unblock():
        server = servers.worker(
            {
                "COURIER_API_URL": f"{standin.url}/",
                "COURIER_API_TIMEOUT": str(COURIER_TIMEOUT),
                "LOGIN_FAILURE_LIMIT": str(LOGIN_LIMIT),
            }
        )
    yield server
    server.stop()


@pytest.fixture
def clean(transactional_db, standin):
    """Committed data the server process can see, and a fresh courier. (The
    login throttle's counts are in the database, emptied after each test.)"""
    configure(standin, reset=True)
