"""Django's ORM from async code, and telling an unreachable PostgreSQL from a failed query.

`db_sync_to_async` is Channels' database_sync_to_async that also tidies the
connection the call opened. asgiref runs the call in a copy of the caller's
context, where Django keeps the connection it opens; Channels' own cleanup
runs outside that copy, does not see it, and would leave it open until
garbage collection (and a test database that cannot be dropped).

It also fails fast while PostgreSQL is unreachable (see `unreachable`).
"""

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
