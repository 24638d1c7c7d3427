"""Token authentication for the async routes (WebSocket and async HTTP).

The mobile app sends its DRF token as `?token=<key>` (a WebSocket client in
a browser cannot set headers); other clients may send `Authorization: Token
<key>`. A request with a token is that token's user, or anonymous if the
token is not valid; without one, the session decides. Neither the token nor
the query string is ever logged here.
"""

from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token


def token_key(scope):
    """The token a request carries, from the Authorization header or the
    query string, or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token" and key.strip():
                return key.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    keys = query.get("token")
    return keys[0] if keys else None


@database_sync_to_async
def user_for_token(key):
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        if key is not None:
            scope = dict(scope, user=await user_for_token(key))
        return await super().__call__(scope, receive, send)


def TokenAuthMiddlewareStack(inner):
    """Session and cookie auth, then a token (if any) overrides the user."""
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))
