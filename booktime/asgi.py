"""ASGI entry point for production workers (`python -m booktime.serve` runs it)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "booktime.settings")
get_asgi_application()  # sets Django up before the routing imports models

from booktime.routing import application  # noqa: E402, F401
