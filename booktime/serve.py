"""Run the production ASGI server: daphne, with an access log that never
shows query strings (the mobile app sends its token as `?token=`).

    python -m booktime.serve -b 127.0.0.1 -p 8101 booktime.asgi:application

takes daphne's own command-line options.
"""

import gc

from daphne.cli import CommandLineInterface
from daphne.server import Server

from booktime.logsafe import strip_query


def without_query_string(action_logger):
    def log(protocol, action, details):
        action_logger(protocol, action, dict(details, path=strip_query(details.get("path"))))

    return log


class BookTimeServer(Server):
    def __init__(self, *args, action_logger=None, **kwargs):
        if action_logger is not None:
            action_logger = without_query_string(action_logger)
        super().__init__(*args, action_logger=action_logger, **kwargs)

    def run(self):
        tune_garbage_collection()  # the application and Django are loaded by now
        super().run()


class BookTimeCommandLine(CommandLineInterface):
    server_class = BookTimeServer


# Python's cyclic garbage collector scans every object it tracks in a full
# collection, and a worker holding thousands of sockets tracks millions: at
# 5,000 sockets each full collection stopped the event loop for about 0.6 s,
# and a connect storm ran a dozen of them (a sixth of the storm's time).
# Objects made while the server starts are frozen out of the scans, the
# youngest generation is collected ~70x less often and the others rarely.
# Garbage without cycles is freed at once as ever; cyclic garbage waits a
# little longer.
GC_THRESHOLDS = (50_000, 20, 100)  # Python's defaults: (700, 10, 10)


def tune_garbage_collection():
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


if __name__ == "__main__":
    BookTimeCommandLine.entrypoint()
