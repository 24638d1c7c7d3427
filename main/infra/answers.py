"""Answers sent on a raw ASGI connection (consumers and middleware, where
Django's responses are not available): JSON and text bodies, 503 with
Retry-After, and the WebSocket close code that means the same."""

import json

# A client told the server is briefly unavailable may try again after this
# long (Retry-After on HTTP answers, the chat's `unavailable` error).
RETRY_AFTER_SECONDS = 5

# A handshake or socket the server cannot serve now: reconnect with back-off.
# As 4401 mirrors HTTP 401, 4503 mirrors 503; daphne (under runserver) lets
# an application close only with 1000 or 3000-4999, so not 1013.
CLOSE_TRY_AGAIN_LATER = 4503
# A socket whose token was revoked or session ended: sign in again (as HTTP 401).
CLOSE_TOKEN_REVOKED = 4401

UNAVAILABLE = {"detail": "Temporarily unavailable, try again shortly.", "code": "unavailable"}


def headers(content_type, body, *extra):
    """Response headers for `body`: its type and length, never cached or sniffed."""
    return [
        (b"Content-Type", content_type.encode()),
        (b"Content-Length", str(len(body)).encode()),
        (b"Cache-Control", b"no-store"),
        (b"X-Content-Type-Options", b"nosniff"),
        *extra,
    ]


async def respond(send, status, body, content_type, *extra_headers):
    await send(
        {"type": "http.response.start", "status": status, "headers": headers(content_type, body, *extra_headers)}
    )
    await send({"type": "http.response.body", "body": body})


async def respond_json(send, status, data, *extra_headers):
    await respond(send, status, json.dumps(data).encode(), "application/json", *extra_headers)


async def respond_text(send, status, text, *extra_headers):
    await respond(send, status, text.encode(), "text/plain; charset=utf-8", *extra_headers)


def retry_after(seconds=RETRY_AFTER_SECONDS):
    return (b"Retry-After", str(seconds).encode())


async def unavailable(scope, receive, send, data=UNAVAILABLE):
    """The answer while a service the request needs is out of reach: a
    WebSocket is accepted and closed with 4503, which a browser's client can
    see and act on (a refused handshake is only a 1006 to it); an HTTP
    request gets 503 with a JSON body and Retry-After."""
    if scope["type"] == "websocket":
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": "Try again later"})
        return
    await respond_json(send, 503, data, retry_after())
