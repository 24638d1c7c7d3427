"""Keep query strings out of logs: the mobile app sends its token as
`?token=`, and a URL with its query is the usual way one leaks."""

import logging


def strip_query(path):
    return path.split("?", 1)[0] if isinstance(path, str) else path


class StripQueryStrings(logging.Filter):
    """For records logged with a details dict holding a "path" (daphne's
    runserver and access logs), log the path without its query string."""

    def filter(self, record):
        if isinstance(record.args, dict) and "path" in record.args:
            record.args = dict(record.args, path=strip_query(record.args["path"]))
        return True
