"""Run the production ASGI server: daphne, with an access log that never
shows query strings (the mobile app sends its token as `?token=`).

    python -m booktime.serve -b 127.0.0.1 -p 8101 booktime.asgi:application

takes daphne's own command-line options.
"""

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


class BookTimeCommandLine(CommandLineInterface):
    server_class = BookTimeServer


if __name__ == "__main__":
    BookTimeCommandLine.entrypoint()
