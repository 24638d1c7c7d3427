"""Checks that the real services the suite runs against answer, once, with
one clear line if they don't; clears the previous run's uploads."""

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
