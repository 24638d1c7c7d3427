"""The ASGI application: Django's views for HTTP, plus our consumers."""

import logging

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.urls import re_path

django_asgi_app = get_asgi_application()

import main.per_loop  # noqa: E402
import main.routing  # noqa: E402  (imports models: after Django is set up)
from booktime.auth import TokenAuthMiddlewareStack  # noqa: E402
from booktime.origin import AllowedHostsOrNoOriginValidator  # noqa: E402

if not settings.REDIS_URL:
    logging.getLogger("booktime").warning(
        "REDIS_URL is not set: the channel layer and presence live in this process only "
        "(fine for one process; set REDIS_URL to run several)."
    )

application = ProtocolTypeRouter(
    {
        "http": URLRouter(main.routing.http_urlpatterns + [re_path(r"", django_asgi_app)]),
        # A page from a foreign origin cannot ride a user's session cookie;
        # native apps send no Origin header and are let through.
        # Any other WebSocket path (a non-numeric order id too) is refused
        # with a 403 rather than an exception in the server.
        "websocket": AllowedHostsOrNoOriginValidator(
            TokenAuthMiddlewareStack(
                URLRouter(main.routing.websocket_urlpatterns + [re_path(r"", WebsocketDenier.as_asgi())])
            )
        ),
        # Under uvicorn: the shared connections are closed as the worker stops.
        "lifespan": main.per_loop.lifespan,
    }
)
