"""WebSocket Origin check that lets native apps in.

Channels' AllowedHostsOriginValidator refuses a handshake without an Origin
header, but native clients (the mobile app, scripts) send none, and no
browser page can leave it out: a missing Origin is not a cross-site request.
A present Origin must name one of ALLOWED_HOSTS, so a foreign page cannot
ride a user's session cookie (cross-site WebSocket hijacking).
"""

from channels.security.websocket import OriginValidator
from django.conf import settings

from . import metrics


class MissingOrAllowedOriginValidator(OriginValidator):
    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not any(name == b"origin" for name, _ in scope.get("headers", ())):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)

    def valid_origin(self, parsed_origin):
        valid = super().valid_origin(parsed_origin)
        if not valid:
            metrics.handshake_refused("origin")
        return valid


def AllowedHostsOrNoOriginValidator(application):
    """Like channels' AllowedHostsOriginValidator, but a missing Origin passes."""
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = ["localhost", "127.0.0.1", "[::1]"]
    return MissingOrAllowedOriginValidator(application, allowed_hosts)
