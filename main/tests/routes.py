"""The app's routes as the tests walk them."""

from django.urls import URLPattern, URLResolver


def walk(patterns, prefix=""):
    """Every route below `patterns` (a URLconf's, or the ASGI router's), as text."""
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, prefix + str(p.pattern))
        else:
            assert isinstance(p, URLPattern)
            yield prefix + str(p.pattern)
