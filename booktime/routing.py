"""The chapter's path to the ASGI application; it is wired in booktime.asgi."""

from booktime.asgi import application

__all__ = ["application"]
