"""The ASGI application: Django's views for HTTP, plus our consumers.
Production workers (`python -m booktime.serve`) and runserver both serve it."""

import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the routing imports models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.urls import re_path  # noqa: E402

from main import routing  # noqa: E402
from main.infra import per_loop  # noqa: E402
from main.infra.auth import TokenAuthMiddlewareStack  # noqa: E402
from main.infra.origin import AllowedHostsOrNoOriginValidator  # noqa: E402

if not settings.REDIS_URL:
    logging.getLogger("booktime").warning(
        "REDIS_URL is not set: the channel layer and presence live in this process only "
        "(fine for one process; set REDIS_URL to run several)."
    )

application = ProtocolTypeRouter(
    {
        "http": URLRouter(routing.http_urlpatterns + [re_path(r"", django_asgi_app)]),
        # A page from a foreign origin cannot ride a user's session cookie;
        # native apps send no Origin header and are let through.
        # Any other WebSocket path (a non-numeric order id too) is refused
        # with a 403 rather than an exception in the server.
        # A token is checked by the chat's consumer, in its handshake's one
        # round trip; a session's user is looked up here.
        "websocket": AllowedHostsOrNoOriginValidator(
            TokenAuthMiddlewareStack(
                URLRouter(routing.websocket_urlpatterns + [re_path(r"", WebsocketDenier.as_asgi())]),
                check_token=False,
            )
        ),
        # Under uvicorn: the shared connections are closed as the worker stops.
        "lifespan": per_loop.lifespan,
    }
)
