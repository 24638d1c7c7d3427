"""Django's ORM from async code, and telling an unreachable PostgreSQL from a failed query.

`db_sync_to_async` is Channels' database_sync_to_async that also tidies the
connection the call opened. asgiref runs the call in a copy of the caller's
context, where Django keeps the connection it opens; Channels' own cleanup
runs outside that copy, does not see it, and would leave it open until
garbage collection (and a test database that cannot be dropped).

It also fails fast while PostgreSQL is unreachable (see `unreachable`).
"""

import asyncio
import functools
import time

import psycopg
from channels.db import database_sync_to_async
from django.db import InterfaceError, OperationalError, close_old_connections, connections

# After a call found PostgreSQL unreachable, calls in the next this-many
# seconds fail at once instead of each waiting the pool's timeout: chat calls
# share one thread per process, so those waits would add up in a queue. The
# first call after it tries again (and so notices when PostgreSQL is back).
FAIL_FAST_SECONDS = 1.0
_unreachable_until = 0.0

# SQLSTATEs that mean the connection, not the query, failed: class 08
# (connection exception) and the server shutting down or starting up.
_CONNECTION_STATES = ("57P01", "57P02", "57P03")


class DatabaseUnavailable(OperationalError):
    """PostgreSQL was found unreachable a moment ago: not tried again yet."""


def unreachable(error):
    """True when `error` means PostgreSQL cannot be reached (no connection
    from the pool in time, a refused or broken connection, the server going
    down), as opposed to a query that failed (a constraint, a deadlock)."""
    if isinstance(error, DatabaseUnavailable):
        return True
    if not isinstance(error, (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError)):
        return False
    cause = error if isinstance(error, psycopg.Error) else error.__cause__
    if not isinstance(cause, psycopg.Error):
        return False
    if isinstance(cause, psycopg.InterfaceError):  # the connection is closed
        return True
    state = cause.sqlstate  # None: no answer from a server (refused, timed out, broken)
    return state is None or state.startswith("08") or state in _CONNECTION_STATES


def db_sync_to_async(func=None, *, thread_sensitive=True):
    """Decorator: run `func` in a worker thread and close its connection per
    CONN_MAX_AGE. thread_sensitive=False lets independent reads (token and
    ownership lookups) run side by side in the thread pool."""
    if func is None:
        return functools.partial(db_sync_to_async, thread_sensitive=thread_sensitive)

    @functools.wraps(func)
    def run(*args, **kwargs):
        fail_fast()
        try:
            return func(*args, **kwargs)
        except Exception as error:
            noticed(error)
            raise
        finally:
            close_old_connections()

    return database_sync_to_async(run, thread_sensitive=thread_sensitive)


def fail_fast():
    """Raise DatabaseUnavailable while PostgreSQL was found unreachable a
    moment ago (FAIL_FAST_SECONDS)."""
    if time.monotonic() < _unreachable_until:
        raise DatabaseUnavailable("PostgreSQL was unreachable a moment ago")


def noticed(error):
    """A call failed with `error`: if PostgreSQL is unreachable, the next
    calls fail fast for a moment."""
    global _unreachable_until
    if unreachable(error):
        _unreachable_until = time.monotonic() + FAIL_FAST_SECONDS


def psycopg_params(alias="default"):
    """Django's parameters for its PostgreSQL connection `alias` (the test
    database under tests), for a psycopg connection of our own; None if that
    database is not PostgreSQL."""
    connection = connections.create_connection(alias)  # not the context's own: nothing is opened
    if connection.vendor != "postgresql":
        return None
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)  # Django's cursor classes are sync ones
    return params


# --- Reads on the event loop ------------------------------------------------------
# A chat handshake's reads run on the event loop, through a small pool of
# psycopg connections of our own: no thread hop, no ORM, and the
# statements of one handshake in one round trip (a pipeline). PostgreSQL
# only; elsewhere (SQLite under runserver) callers take the ORM path.

READ_TIMEOUT_SECONDS = 5.0


class Reads:
    """The running loop's pool for reads from the event loop (`reads()`)."""

    def __init__(self, params):
        from django.conf import settings
        from psycopg_pool import AsyncConnectionPool

        pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool") or {}
        # No JIT: the planner's estimate for a batch of handshakes' pages
        # passes jit_above_cost, and compiling costs far more than running.
        options = f"{params.get('options', '')} -c jit=off".strip()
        self.pool = AsyncConnectionPool(
            kwargs={**params, "autocommit": True, "options": options},
            min_size=1,
            max_size=settings.DATABASE_READ_POOL_MAX,
            timeout=pool.get("timeout", READ_TIMEOUT_SECONDS),
            open=False,
            name="reads",
        )
        self.opening = None
        # psycopg's errors raised as the ORM raises them (django.db.utils).
        self.errors = connections.create_connection("default").wrap_database_errors

    async def run(self, statements):
        """[(sql, params)] in one round trip: each one's rows. A connection
        found broken (PostgreSQL restarted since it was opened) is replaced
        and the statements run once more."""
        fail_fast()
        if self.opening is None:
            self.opening = asyncio.ensure_future(self.pool.open(wait=False))
        try:
            with self.errors:
                async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                    await asyncio.shield(self.opening)
                    for attempt in (1, 2):
                        async with self.pool.connection() as connection:
                            try:
                                return await _execute_all(connection, statements)
                            except psycopg.OperationalError:
                                if attempt == 2 or not connection.broken:
                                    raise
        except BaseException as error:
            noticed(error)
            raise

    async def close(self):
        await self.pool.close()


async def _execute_all(connection, statements):
    if len(statements) == 1:  # a pipeline costs more than one plain statement
        sql, params = statements[0]
        return [await (await connection.execute(sql, params, prepare=True)).fetchall()]
    async with connection.pipeline():
        cursors = [await connection.execute(sql, params, prepare=True) for sql, params in statements]
    return [await cursor.fetchall() for cursor in cursors]


def reads():
    """The running loop's Reads, or None when the database is not PostgreSQL."""
    from . import per_loop

    return per_loop.get("db-reads", _new_reads, _close_reads)


def _new_reads():
    params = psycopg_params()
    return Reads(params) if params is not None else None


async def _close_reads(reads):
    if reads is not None:
        await reads.close()
