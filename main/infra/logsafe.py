"""Keep query strings out of logs: the mobile app sends its token as
`?token=`, and a URL with its query is the usual way one leaks."""

import logging


def strip_query(path):
    return path.split("?", 1)[0] if isinstance(path, str) else path


def _strip_path(arg):
    return strip_query(arg) if isinstance(arg, str) and arg.startswith("/") else arg


class StripQueryStrings(logging.Filter):
    """Log every path without its query string: in records whose arguments
    are a details dict holding a "path" (daphne's, under runserver) and in
    those with positional arguments (uvicorn's access and WebSocket lines
    give the path with its query as one argument starting with "/")."""

    def filter(self, record):
        if isinstance(record.args, dict) and "path" in record.args:
            record.args = dict(record.args, path=strip_query(record.args["path"]))
        elif isinstance(record.args, tuple):
            record.args = tuple(_strip_path(arg) for arg in record.args)
        return True
