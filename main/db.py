"""Django's ORM from async code.

`db_sync_to_async` is Channels' database_sync_to_async that also tidies the
connection the call opened. asgiref runs the call in a copy of the caller's
context, where Django keeps the connection it opens; Channels' own cleanup
runs outside that copy, does not see it, and would leave it open until
garbage collection (and a test database that cannot be dropped).
"""

import functools

from channels.db import database_sync_to_async
from django.db import close_old_connections


def db_sync_to_async(func=None, *, thread_sensitive=True):
    """Decorator: run `func` in a worker thread and close its connection per
    CONN_MAX_AGE. thread_sensitive=False lets independent reads (token and
    ownership lookups) run side by side in the thread pool."""
    if func is None:
        return functools.partial(db_sync_to_async, thread_sensitive=thread_sensitive)

    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()

    return database_sync_to_async(run, thread_sensitive=thread_sensitive)
