"""Token authentication for the async routes (WebSocket and async HTTP).

The mobile app sends its DRF token as `?token=<key>` (a WebSocket client in
a browser cannot set headers); other clients may send `Authorization: Token
<key>`. A request with a token is that token's user, or anonymous if the
token is not valid; without one, the session decides. Neither the token nor
the query string is ever logged here, and the token is taken out of the
query string the consumers see.

While PostgreSQL is unreachable no user can be looked up: a WebSocket
handshake is accepted and closed at once with 4503 (try again later), an
HTTP request answered 503 (main.infra.answers.unavailable).

A socket or stream watches its user and the token or session that let it
in (`access_keys`), and asks `user_now` when one of them changes.
"""

import logging
import re
from importlib import import_module
from urllib.parse import parse_qs

from channels.auth import AuthMiddleware, get_user
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from rest_framework.authtoken.models import Token

from . import access_changes
from .answers import unavailable
from .db import db_sync_to_async, unreachable

logger = logging.getLogger(__name__)

TOKEN_PARAM = b"token"
# DRF keys are 40 hex characters; anything else is not worth a query.
KEY_SHAPE = re.compile(r"[0-9a-fA-F]{1,64}")


def valid_token_shape(key):
    """Whether `key` could be a token at all (else it is not worth a query)."""
    return KEY_SHAPE.fullmatch(key) is not None


def user_is_authenticated(user):
    return bool(getattr(user, "is_authenticated", False))


def token_key(scope):
    """The token a request carries, from the Authorization header or the
    query string, or None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            if scheme.lower() == "token" and key.strip():
                return key.strip()
    # keep_blank_values: `?token=` is a bad token (anonymous), not no token.
    query = parse_qs(query_bytes(scope).decode("latin-1"), keep_blank_values=True)
    keys = query.get("token")
    return keys[0] if keys else None


def query_bytes(scope):
    """The scope's query string as bytes (the chapter's tests pass a str)."""
    query = scope.get("query_string", b"")
    return query.encode("latin-1") if isinstance(query, str) else query


def query_params(scope):
    """The scope's query string parsed, blank values kept."""
    return parse_qs(query_bytes(scope).decode("latin-1"), keep_blank_values=True)


def without_token(query):
    """The query string minus its token parameter(s), the rest untouched."""
    return b"&".join(p for p in query.split(b"&") if p.split(b"=", 1)[0] != TOKEN_PARAM)


@db_sync_to_async(thread_sensitive=False)  # an independent read: requests run side by side
def user_for_token(key):
    if not valid_token_shape(key):
        return AnonymousUser()
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


def access_keys(scope, user_id=None):
    """What a socket or stream opened with `scope` watches (access_changes):
    its user (`user_id`, else the scope's), and the token or the session
    that let them in."""
    keys = [access_changes.for_user(user_id if user_id is not None else scope["user"].pk)]
    if scope.get("auth_token") is not None:
        keys.append(access_changes.for_token(scope["auth_token"]))
    elif scope.get("session") is not None and scope["session"].session_key:
        keys.append(access_changes.for_session(scope["session"].session_key))
    return keys


async def user_now(scope):
    """Who the request's credentials name now, looked up afresh as the
    handshake did: a revoked token, an ended session (a logout, a password
    change) or a deactivated user is anonymous."""
    key = scope.get("auth_token")
    if key is not None:
        return await user_for_token(key)
    session = scope.get("session")
    if session is None or not session.session_key:
        return AnonymousUser()
    # A fresh store: the scope's has the session as it was loaded.
    fresh = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
    return await session_user({"session": fresh})


# Channels' session lookup, through db_sync_to_async (it fails fast while
# PostgreSQL is unreachable); get_user.func is Channels' synchronous lookup.
session_user = db_sync_to_async(get_user.func)


class SessionUserMiddleware(AuthMiddleware):
    """Channels' AuthMiddleware (the session's user in scope["user"]), with
    the lookup through `session_user`."""

    async def resolve_scope(self, scope):
        scope["user"]._wrapped = await session_user(scope)

    async def __call__(self, scope, receive, send):
        scope = dict(scope)
        self.populate_scope(scope)
        try:
            await self.resolve_scope(scope)
        except Exception as error:
            if not unreachable(error):
                raise
            return await database_unavailable(scope, receive, send)
        return await self.inner(scope, receive, send)


async def database_unavailable(scope, receive, send):
    logger.warning("%s %s: database unavailable", scope["type"], scope.get("path"))
    await unavailable(scope, receive, send)


class TokenAuthMiddleware(BaseMiddleware):
    """A request with a token is that token's user (or anonymous); one
    without goes through Channels' session authentication.

    With `check_token=False` a token is not looked up here: the request's
    scope has `unchecked_token` (the key) and no "user", for a consumer that
    checks the token in the same database trip as its own query (the
    tracker: the token's user owns the order, in one query)."""

    def __init__(self, inner, check_token=True):
        super().__init__(inner)
        self.check_token = check_token
        self.with_session_user = CookieMiddleware(SessionMiddleware(SessionUserMiddleware(inner)))
        # With a token the session is still there, but not asked for a user:
        # that lookup goes through a single shared thread.
        self.with_session = CookieMiddleware(SessionMiddleware(inner))

    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        if key is None:
            return await self.with_session_user(scope, receive, send)
        if not self.check_token:
            scope = dict(scope, unchecked_token=key, query_string=without_token(query_bytes(scope)))
            return await self.with_session(scope, receive, send)
        try:
            user = await user_for_token(key)
        except Exception as error:
            if not unreachable(error):
                raise
            return await database_unavailable(scope, receive, send)
        # auth_token: the key that let the user in (sockets opened with it
        # are closed when it is revoked); never logged.
        auth_token = key if user.is_authenticated else None
        scope = dict(scope, user=user, auth_token=auth_token, query_string=without_token(query_bytes(scope)))
        return await self.with_session(scope, receive, send)


def TokenAuthMiddlewareStack(inner, check_token=True):
    """Token auth (query string or header), falling back to the session."""
    return TokenAuthMiddleware(inner, check_token)
