"""Whether this process has begun to stop (the production worker says so,
booktime.serve): a socket closed by the stop is one of thousands closed
together, and the worker reports them once rather than each."""

_stopping = False


def begin_stop():
    global _stopping
    _stopping = True


def stopping():
    return _stopping
