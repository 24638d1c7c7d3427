"""Settings for the bench's baseline REST server only: the shipped settings
with bench/urls.py as the URLconf (the product's URLs plus the plain view)."""

from booktime.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
