"""Checks that the real services the suite runs against answer, once, with
one clear line if they don't; clears the previous run's uploads; closes
what each test's event loop opened."""

import asyncio
import inspect

import pytest


def pytest_sessionstart(session):
    import shutil

    import psycopg
    import redis
    from django.conf import settings

    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)  # the previous run's uploads

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("postgresql"):
        try:
            psycopg.connect(
                dbname="postgres",
                host=db["HOST"] or None,
                port=db["PORT"] or None,
                user=db["USER"] or None,
                password=db["PASSWORD"] or None,
                connect_timeout=3,
            ).close()
        except psycopg.Error as exc:
            pytest.exit(
                f"PostgreSQL is not reachable at {db['HOST']}:{db['PORT']} "
                f"({str(exc).strip().splitlines()[0]}): start it or set DATABASE_URL.",
                returncode=3,
            )
    if settings.REDIS_URL:
        try:
            redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            pytest.exit(
                f"Redis is not reachable at {settings.REDIS_URL} ({exc}): start it or set REDIS_URL.", returncode=3
            )


def pytest_collection_modifyitems(items):
    for item in items:  # async tests only: the browser tests' sync API runs a loop of its own
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.fixturenames.append("close_loop_resources")


@pytest.fixture
async def close_loop_resources():
    """What the test's event loop opened (main.infra.per_loop: the chat writer's
    database connection, the Redis pools) is closed as the test ends, as a
    server's ASGI lifespan closes them; a database connection left open would
    keep the test database from being dropped."""
    yield
    from main.infra import per_loop

    await per_loop.close_all()


@pytest.fixture(autouse=True)
def close_idle_loops_resources():
    """The same for a sync test that ran coroutines on a loop it keeps (the
    chapter's tests run theirs on the thread's default loop)."""
    yield
    from main.infra import per_loop

    try:
        asyncio.get_running_loop()
        return  # a browser test: Playwright's loop runs in this thread
    except RuntimeError:
        pass
    for loop in per_loop.loops():
        if not loop.is_running() and not loop.is_closed():
            loop.run_until_complete(per_loop.close_all())
