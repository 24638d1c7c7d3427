"""Middleware of our own."""


class OneThreadBelow:
    """Last in MIDDLEWARE, so that Django runs the stack above it in one
    worker thread. Under ASGI, Django's own middleware is async-capable but
    hands each process_request and process_response to the sync thread
    (sync_to_async) one by one, and a sync-only one (WhiteNoise) in between
    hops back to the event loop for those below it: about a dozen thread
    switches per request. Below a sync-only middleware, Django runs every
    sync-capable one above it synchronously: one switch into the thread for
    the whole stack, one back to the loop to route the request, and the
    (sync) view in the same thread."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
