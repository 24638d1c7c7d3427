"""Token authentication for the async routes (WebSocket and async HTTP).

The mobile app sends its DRF token as `?token=<key>` (a WebSocket client in
a browser cannot set headers); other clients may send `Authorization: Token
<key>`. A request with a token is that token's user, or anonymous if the
token is not valid; without one, the session decides. Neither the token nor
the query string is ever logged here, and the token is taken out of the query
string the consumers see (daphne's access log drops query strings: see
booktime/serve.py and booktime/logsafe.py).
"""

import re
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from main.db import db_sync_to_async

TOKEN_PARAM = b"token"
# DRF keys are 40 hex characters; anything else is not worth a query.
KEY_SHAPE = re.compile(r"[0-9a-fA-F]{1,64}")


def token_key(scope):
    """The token a request carries, from the Authorization header or the
    query string, or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token" and key.strip():
                return key.strip()
    # keep_blank_values: `?token=` is a bad token (anonymous), not no token.
    query = parse_qs(_query_bytes(scope).decode("latin-1"), keep_blank_values=True)
    keys = query.get("token")
    return keys[0] if keys else None


def _query_bytes(scope):
    query = scope.get("query_string", b"")
    return query.encode("latin-1") if isinstance(query, str) else query


def without_token(query):
    """The query string minus its token parameter(s), the rest untouched."""
    return b"&".join(p for p in query.split(b"&") if p.split(b"=", 1)[0] != TOKEN_PARAM)


@db_sync_to_async(thread_sensitive=False)  # an independent read: requests run side by side
def user_for_token(key):
    if not KEY_SHAPE.fullmatch(key):
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    """A request with a token is that token's user (or anonymous); one
    without goes through Channels' session authentication."""

    def __init__(self, inner):
        super().__init__(inner)
        self.with_session_user = AuthMiddlewareStack(inner)
        # With a token the session is still there, but not asked for a user:
        # that lookup goes through a single shared thread, a bottleneck for
        # many concurrent mobile requests.
        self.with_session = CookieMiddleware(SessionMiddleware(inner))

    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        if key is None:
            return await self.with_session_user(scope, receive, send)
        user = await user_for_token(key)
        # auth_token: the key that let the user in (the chat closes its
        # sockets when that token is revoked); never logged.
        auth_token = key if user.is_authenticated else None
        scope = dict(scope, user=user, auth_token=auth_token, query_string=without_token(_query_bytes(scope)))
        return await self.with_session(scope, receive, send)


def TokenAuthMiddlewareStack(inner):
    """Token auth (query string or header), falling back to the session."""
    return TokenAuthMiddleware(inner)
