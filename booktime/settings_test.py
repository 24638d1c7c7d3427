"""Settings for the test suite: the real services on their standard local
ports unless DATABASE_URL / REDIS_URL say otherwise."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/booktime")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")

from .settings import *  # noqa: F403
from .settings import BASE_DIR, DATABASES

# Several checkouts can run their suites side by side on one PostgreSQL.
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DB_NAME", "test_booktime")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, tests only
# Uploads made by the tests go to a folder of their own, emptied per run
# (conftest.py).
MEDIA_ROOT = BASE_DIR / "artifacts" / "media"
# The test client's login() authenticates without a request: let it through
# axes' backend (main/tests/axes_backend.py); every other login is throttled.
AUTHENTICATION_BACKENDS = ["main.tests.axes_backend.AxesBackend", "django.contrib.auth.backends.ModelBackend"]
