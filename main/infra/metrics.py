"""The worker's Prometheus metrics, all defined here (docs/operations.md,
"Health and metrics"), and the one-line helpers the features call.

Each worker is a process of its own with its own registry (prometheus_client's
default one, which also carries the process_* and python_* metrics), served on
its own `/metrics` (main/infra/scrape.py): Prometheus scrapes every worker and
sums across them. The labelled children the hot paths use are bound once, here,
so a call site costs one `.inc()`.
"""

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No `_created` series beside each counter: they double the series and say
# only when the worker started (process_start_time_seconds says that).
disable_created_metrics()

# --- Open connections -------------------------------------------------------------

CHAT_SOCKETS_OPEN = Gauge(
    "booktime_chat_sockets_open", "Chat sockets open (accepted) in this worker, by protocol.", ["protocol"]
)
CHAT_SOCKETS = {1: CHAT_SOCKETS_OPEN.labels("v1"), 2: CHAT_SOCKETS_OPEN.labels("v2")}  # by protocol version

STREAMS_OPEN = Gauge("booktime_streams_open", "Employees' event streams open in this worker.", ["stream"])
DASHBOARD_STREAMS = STREAMS_OPEN.labels("dashboard")
INBOX_STREAMS = STREAMS_OPEN.labels("inbox")

# --- The chat ----------------------------------------------------------------------

MESSAGES_STORED = Counter(
    "booktime_chat_messages_stored", "Chat messages stored (not counting one sent again under its client_id).", ["via"]
)
SOCKET_MESSAGES_STORED = MESSAGES_STORED.labels("socket")
API_MESSAGES_STORED = MESSAGES_STORED.labels("api")
MESSAGES_FANNED_OUT = Counter(
    "booktime_chat_messages_fanned_out", "Chat messages a socket stored and sent to its chat's group."
)
FANOUT_FAILURES = Counter(
    "booktime_chat_fanout_failures", "Chat messages stored whose fan-out failed (the others get them on resume)."
)
HEARTBEATS = Counter("booktime_chat_heartbeats", "Heartbeats received on chat sockets.")

# Why a chat handshake was refused. A closed set, so a typo fails where it is
# made rather than start a new series.
REFUSAL_REASONS = (
    "unauthenticated",  # no user (no or a bad token, no session)
    "forbidden",  # an order the user may not see, or none
    "origin",  # a browser page from a foreign origin
    "database_unavailable",  # PostgreSQL out of reach: closed with 4503
    "redis_unavailable",  # Redis (the channel layer, presence) out of reach
    "too_many_sockets",  # a user past their cap of open sockets
)
HANDSHAKES_REFUSED = Counter("booktime_chat_handshakes_refused", "Chat handshakes refused, by reason.", ["reason"])
REFUSED = {reason: HANDSHAKES_REFUSED.labels(reason) for reason in REFUSAL_REASONS}

# --- Throttles ---------------------------------------------------------------------

THROTTLE_SCOPES = (
    "login",  # password attempts (token login, HTTP Basic, the login page)
    "chat_send",  # messages sent through the REST API
    "chat_message",  # messages on one chat socket
    "chat_frame",  # frames of any kind on one chat socket
)
THROTTLED = Counter("booktime_throttled", "Requests or frames refused by a throttle, by scope.", ["scope"])
THROTTLE_HITS = {scope: THROTTLED.labels(scope) for scope in THROTTLE_SCOPES}
LOGIN_THROTTLED = THROTTLE_HITS["login"]

# --- Presence (read as the metrics are scraped) ------------------------------------------

PRESENCE_PEOPLE = Gauge("booktime_presence_people", "People present in a chat (the live listing), by role.", ["role"])
PRESENT_CUSTOMERS = PRESENCE_PEOPLE.labels("customer")
PRESENT_EMPLOYEES = PRESENCE_PEOPLE.labels("employee")
PRESENCE_CHATS = Gauge("booktime_presence_chats", "Order chats with someone present.")
AGENTS_ONLINE = Gauge("booktime_agents_online", "Employees heartbeating in a chat or with the inbox open.")

# --- The channel layer (read as the metrics are scraped) ----------------------------------

CHANNEL_LAYER_CHANNELS = Gauge(
    "booktime_channel_layer_channels",
    "Channels this worker's channel layer holds: one per open consumer, and the worker's own listener.",
)

# --- The courier -------------------------------------------------------------------

COURIER_OUTCOMES = (
    "ok",  # a usable answer
    "not_found",  # the courier answered 404
    "http_error",  # any other status but 200
    "bad_answer",  # too large, malformed JSON, a redirect off its host or too many
    "unreachable",  # refused, reset, not HTTP
    "timeout",  # no answer within COURIER_API_TIMEOUT
)
COURIER_CALLS = Counter("booktime_courier_calls", "Calls of the courier's tracking API, by outcome.", ["outcome"])
COURIER_BY_OUTCOME = {outcome: COURIER_CALLS.labels(outcome) for outcome in COURIER_OUTCOMES}
COURIER_SECONDS = Histogram(
    "booktime_courier_call_seconds",
    "How long a call of the courier's API took, whatever its outcome.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


# --- Helpers: one line at each call site -----------------------------------------------


def handshake_refused(reason):
    """Count a chat handshake refused for `reason` (one of REFUSAL_REASONS)."""
    REFUSED[reason].inc()


def throttled(scope):
    """Count a hit of the throttle `scope` (one of THROTTLE_SCOPES)."""
    THROTTLE_HITS[scope].inc()


def courier_called(outcome, seconds):
    """Count a call of the courier that ended with `outcome` after `seconds`."""
    COURIER_BY_OUTCOME[outcome].inc()
    COURIER_SECONDS.observe(seconds)


def login_throttled(sender=None, **kwargs):
    """Receiver of django-axes' user_locked_out signal (connected in main/apps.py):
    sent as the throttle locks an address out and for each attempt refused while it is."""
    LOGIN_THROTTLED.inc()


def presence_counts(customers, employees, chats, agents):
    PRESENT_CUSTOMERS.set(customers)
    PRESENT_EMPLOYEES.set(employees)
    PRESENCE_CHATS.set(chats)
    AGENTS_ONLINE.set(agents)
