"""The chapter's path to the token middleware; it lives in main.infra.auth."""

from main.infra.auth import TokenAuthMiddleware, TokenAuthMiddlewareStack

__all__ = ["TokenAuthMiddleware", "TokenAuthMiddlewareStack"]
