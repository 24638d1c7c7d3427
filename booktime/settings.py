"""BookTime settings, read from the environment (12-factor).

Every variable is optional; unset, the project runs on the embedded defaults
(a SQLite file and an in-process channel layer). See docs/configuration.md.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-dev-only-key"  # DEBUG only: never reaches production

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if "*" in ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured("ALLOWED_HOSTS='*' is refused outside DEBUG: list the host names.")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# HTTPS=1 in production: the site is served over TLS (terminated by the
# reverse proxy, which says so in X-Forwarded-Proto): secure cookies, HSTS,
# and plain-HTTP requests redirected.
HTTPS = env.bool("HTTPS", default=False)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

INSTALLED_APPS = [
    "daphne",  # first: gives `manage.py runserver` its ASGI server
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files served by the app, no CDN
    "axes",  # the login throttle
    "main.apps.MainConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The reader's language: the language switcher's cookie, else the browser's Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # a login form's answer once the login throttle refuses
    "main.infra.known_devices.RememberDevice",
    "main.infra.middleware.OneThreadBelow",
]

ROOT_URLCONF = "booktime.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "main" / "web" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "main.web.context.site",
            ],
            # {% load money %}: amounts in the reader's locale and the shop's CURRENCY.
            "libraries": {"money": "main.web.money"},
        },
    },
]

WSGI_APPLICATION = "booktime.wsgi.application"
ASGI_APPLICATION = "booktime.asgi.application"

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not DATABASES["default"].get("CONN_MAX_AGE"):
    # One psycopg pool per process: an ORM call borrows a connection and gives
    # it back when Django closes it (CONN_MAX_AGE stays 0), so a chat message
    # or a tracker request no longer opens a PostgreSQL connection of its own.
    # `timeout` bounds the wait for a connection, so with PostgreSQL down a
    # request fails within it rather than hanging. (`?conn_max_age=` in
    # DATABASE_URL turns the pool off for Django's persistent connections.)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=10),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=5.0),
    }
    # After PostgreSQL restarts, the pool's idle connections are dead: with
    # health checks the pool tests each one (an empty query) before lending
    # it, and replaces a dead one rather than hand it to a request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # An unreachable host (packets dropped) fails a connection attempt in
    # seconds rather than after the operating system's TCP timeout.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3))
# PostgreSQL: the event loop's own pool, for a chat handshake's reads (main.infra.db.Reads).
DATABASE_READ_POOL_MAX = env.int("DATABASE_READ_POOL_MAX", default=4)

AUTH_USER_MODEL = "main.User"
AUTHENTICATION_BACKENDS = [
    # First: it refuses a locked-out login before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

# Languages (docs/translations.md): British English by default, and
# Simplified Chinese; the catalogs are in main/locale/.
LANGUAGE_CODE = "en-gb"
LANGUAGES = [("en-gb", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "main" / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# The currency of prices (ISO 4217), shown in the reader's locale's format.
CURRENCY = env.str("CURRENCY", default="GBP").upper()
if len(CURRENCY) != 3 or not CURRENCY.isalpha():
    raise ImproperlyConfigured("CURRENCY must be a three-letter ISO 4217 code, such as GBP or EUR.")

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
# Static files are served by the app itself (WhiteNoise) from the apps'
# folders, so no collectstatic step is needed; a reverse proxy may serve
# STATIC_ROOT instead after `manage.py collectstatic`.
WHITENOISE_USE_FINDERS = True
STATICFILES_DIRS = [BASE_DIR / "main" / "web" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "media")
# Uploaded media (product images) are served by the app in DEBUG or when
# SERVE_MEDIA is on; otherwise by the reverse proxy.
SERVE_MEDIA = env.bool("SERVE_MEDIA", default=DEBUG)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis: the channel layer (fan-out between server processes) and presence.
# Unset, both live in this process: fine for one process, wrong for several.
REDIS_URL = env.str("REDIS_URL", default="")
CHANNEL_LAYER = env.str("CHANNEL_LAYER", default="pubsub")
# Redis's pub/sub channels ignore the database number: deployments (or test
# runs) sharing one Redis keep apart by this prefix.
CHANNEL_LAYER_PREFIX = env.str("CHANNEL_LAYER_PREFIX", default="asgi")
# The channel layer's Redis servers: REDIS_URL alone by default, or several,
# over which channels_redis spreads channels and groups by a consistent hash
# (every worker must list the same, in the same order). Presence and the
# cache stay on REDIS_URL.
CHANNEL_LAYER_URLS = env.list("CHANNEL_LAYER_URLS", default=[REDIS_URL] if REDIS_URL else [])
if REDIS_URL:
    CHANNEL_LAYER_CONFIGS = {
        # The default, chosen by measurement (docs/benchmarks.md): messages
        # are pushed to one subscription per process rather than popped from
        # a list per socket. A group lives as long as its subscription (no
        # group expiry, no capacity); a broken subscription closes the chat
        # sockets, which resume.
        "pubsub": {
            "BACKEND": "main.infra.channel_layer.PubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": url, "socket_connect_timeout": 2} for url in CHANNEL_LAYER_URLS],
                "prefix": CHANNEL_LAYER_PREFIX,
            },
        },
        # channels_redis's list-based layer, with a pool that waits rather
        # than fails when busy.
        "redis": {
            "BACKEND": "main.infra.channel_layer.WaitingRedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, which races the
                # layer's 5 s blocking pop: no socket timeout on the layer's
                # own connections, and a pool size we chose. (The layer's pool
                # also retries a command once on a fresh connection, as every
                # Redis pool of ours does: main/infra/redis_client.py.)
                "hosts": [
                    {"address": url, "socket_timeout": None, "socket_connect_timeout": 2, "max_connections": 50}
                    for url in CHANNEL_LAYER_URLS
                ],
                "prefix": CHANNEL_LAYER_PREFIX,
                "capacity": env.int("CHANNEL_CAPACITY", default=1000),
                # Must outlive any socket's idle life; sockets renew it on heartbeats.
                "group_expiry": env.int("CHANNEL_GROUP_EXPIRY", default=86400),
            },
        },
    }
    if CHANNEL_LAYER not in CHANNEL_LAYER_CONFIGS:
        raise ImproperlyConfigured("CHANNEL_LAYER must be 'pubsub' or 'redis'.")
    CHANNEL_LAYERS = {"default": CHANNEL_LAYER_CONFIGS[CHANNEL_LAYER]}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Mobile API ------------------------------------------------------------------

# The courier's shipment-tracking API, proxied by the order tracker
# (main/tracker/courier.py): GET <COURIER_API_URL>track/<order_id>. `make demo`
# runs a local stand-in on port 8001 (main/tracker/standin.py).
COURIER_API_URL = env.str("COURIER_API_URL", default="http://127.0.0.1:8001/")
COURIER_API_TIMEOUT = env.float("COURIER_API_TIMEOUT", default=5.0)
COURIER_API_KEY = env.str("COURIER_API_KEY", default="")  # sent as a Bearer token when set

# Django's cache: the per-user throttle of messages sent through the API
# counts there, so it must be shared by every server process: Redis when there
# is one. Nothing on the way to logging in uses it.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "main.infra.cache.SharedPoolRedisCache",  # one connection pool per process
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "booktime",
            "OPTIONS": {"socket_timeout": 2, "socket_connect_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes a request without
    # credentials a 401 (with session first, DRF answers 403).
    "DEFAULT_AUTHENTICATION_CLASSES": (
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
        "main.infra.throttles.ThrottledBasicAuthentication",
    ),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON whatever the client accepts: no browsable API (the docs page is Swagger UI's).
    "DEFAULT_RENDERER_CLASSES": ("rest_framework.renderers.JSONRenderer",),
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "main.api.negotiation.FirstRendererIfNoneAccepted",
    "EXCEPTION_HANDLER": "main.api.errors.exception_handler",
    "DEFAULT_THROTTLE_RATES": {
        # Messages sent through the conversations API, per user.
        "chat-send": env.str("CHAT_API_SEND_RATE", default="60/min"),
    },
    # X-Forwarded-For is never read again: the server has already put a
    # trusted proxy's client in REMOTE_ADDR (FORWARDED_ALLOW_IPS).
    "NUM_PROXIES": 0,
}

# The login throttle (docs/operations.md, "Login throttle"): django-axes, for
# every way of logging in. Failures count per client address and per account
# in PostgreSQL (axes' database handler), so logins work, throttled, while
# Redis is away. The hooks are in main/infra/throttles.py.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_COOLOFF_SECONDS = env.int("LOGIN_COOLOFF_SECONDS", default=300)
LOGIN_KNOWN_DEVICE_DAYS = env.int("LOGIN_KNOWN_DEVICE_DAYS", default=90)
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_COOLOFF_SECONDS)
AXES_LOCKOUT_PARAMETERS = "main.infra.throttles.lockout_parameters"
AXES_USERNAME_CALLABLE = "main.infra.throttles.account"
AXES_CLIENT_IP_CALLABLE = "main.infra.throttles.client_address"
AXES_LOCKOUT_CALLABLE = "main.infra.throttles.lockout_response"
# Attempts while locked are refused unchecked and not counted, so a lock
# lifts on time however long the guessing goes on.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success clears nothing: axes would clear its address's count, so an
# attacker with an account of his own could guess on without end.
AXES_RESET_ON_SUCCESS = False
# Only failures within the cool-off are kept (axes deletes older ones as it
# counts): no log of logins or failures, whose tables would only grow.
AXES_DISABLE_ACCESS_LOG = True
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "token"]  # masked in axes' logs and rows
SPECTACULAR_SETTINGS = {
    "TITLE": "BookTime mobile API",
    "DESCRIPTION": (
        "Token-authenticated API for the BookTime mobile app. Log in at /mobile-api/auth/ for a token, "
        "then send it as `Authorization: Token <key>` (or `?token=<key>` on the tracker and the chat socket)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No deep links: Swagger UI puts them inside the operations' buttons, out of reach of keyboards and screen readers.
    "SWAGGER_UI_SETTINGS": {"deepLinking": False},
    "PREPROCESSING_HOOKS": ["main.api.schema.only_mobile_api"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "main.api.schema.add_tracker_to_schema",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {
        "no_query_strings": {"()": "main.infra.logsafe.StripQueryStrings"},
        "quiet_probes": {"()": "main.infra.health.QuietProbes"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["no_query_strings"]},
        "null": {"class": "logging.NullHandler"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # One handler for Django's own loggers too (its defaults would print
        # every line a second time in DEBUG).
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        # A request for a host we do not serve (scanners, mostly) is answered
        # 400; Django would log each as an ERROR with a traceback.
        "django.security.DisallowedHost": {"handlers": ["null"], "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # failures and lockouts, not a line per login
        # Health probes and metrics scrapes answered 2xx write no access line.
        "uvicorn.access": {"filters": ["quiet_probes"]},
    },
}

# Operations (docs/operations.md, "Health and metrics"): /metrics answers only
# `Authorization: Bearer <METRICS_TOKEN>`; unset, it is a 404 like any unknown path.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# Presence
# Who is in which order chat (main/presence/): in Redis under this prefix
# when REDIS_URL is set, in this process otherwise.
PRESENCE_KEY_PREFIX = env.str("PRESENCE_KEY_PREFIX", default="booktime:presence:")
# The dashboard's event stream (main/dashboard/consumer.py): a comment
# line this often keeps proxies from closing an idle stream; a stream ends
# after SSE_MAX_SECONDS (the browser reconnects, and authorisation is checked
# again).
SSE_KEEPALIVE_SECONDS = env.float("SSE_KEEPALIVE_SECONDS", default=15.0)
SSE_MAX_SECONDS = env.float("SSE_MAX_SECONDS", default=1800.0)

# Chat: limits of the customer-service chat socket (docs/protocol.md).
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=2000)  # one message's text
CHAT_MAX_FRAME_BYTES = env.int("CHAT_MAX_FRAME_BYTES", default=16384)  # one incoming frame, before parsing
CHAT_RATE_BURST = env.int("CHAT_RATE_BURST", default=5)  # messages a socket may send at once...
CHAT_RATE_PER_SECOND = env.float("CHAT_RATE_PER_SECOND", default=1.0)  # ...then this many per second
CHAT_HISTORY_PAGE = env.int("CHAT_HISTORY_PAGE", default=50)  # messages per history page (max)
CHAT_RESUME_LIMIT = env.int("CHAT_RESUME_LIMIT", default=500)  # missed messages replayed per resume
CHAT_MAX_SOCKETS_PER_USER = env.int("CHAT_MAX_SOCKETS_PER_USER", default=20)  # open chat sockets, per worker
CHAT_MAX_SOCKETS_PER_EMPLOYEE = env.int("CHAT_MAX_SOCKETS_PER_EMPLOYEE", default=200)  # an employee's, likewise

# The production worker's limits where the bytes arrive (booktime/serve.py,
# main/infra/server.py; docs/operations.md, "Limits"). A WebSocket frame over
# CHAT_MAX_FRAME_BYTES is refused by the server itself, with 1009.
SERVER_MAX_HEADER_BYTES = env.int("SERVER_MAX_HEADER_BYTES", default=32768)
SERVER_HEADER_TIMEOUT = env.float("SERVER_HEADER_TIMEOUT", default=10.0)
SERVER_KEEPALIVE_TIMEOUT = env.int("SERVER_KEEPALIVE_TIMEOUT", default=5)
SERVER_SEND_TIMEOUT = env.float("SERVER_SEND_TIMEOUT", default=10.0)
# Connections the kernel holds for the worker until it accepts them: a
# successor taking over thousands of sockets sees them all at once, and
# one that finds the queue full waits a second or more to try again. Linux
# caps a listening socket's at net.core.somaxconn (4096 by default), so a
# worker started with --reuse-port listens on as many sockets as hold it.
SERVER_LISTEN_BACKLOG = env.int("SERVER_LISTEN_BACKLOG", default=16384)
WS_PING_INTERVAL = env.float("WS_PING_INTERVAL", default=20.0)
WS_PING_TIMEOUT = env.float("WS_PING_TIMEOUT", default=20.0)
