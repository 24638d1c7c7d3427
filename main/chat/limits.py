"""The chat's limits per socket (docs/protocol.md, "Messages and limits"):
sizes, rates and the strike count that closes a socket refusing to listen."""

import functools
import time
from collections import deque
from dataclasses import dataclass, fields

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from main.infra import metrics

from .protocol import ChatError

# A socket that keeps sending frames the server refuses is closed: this many
# refusals in a row, within this many seconds. A person typing never comes
# near it (the page sends one frame per message).
STRIKE_LIMIT = 40
STRIKE_WINDOW_SECONDS = 30.0
TYPING_INTERVAL = 2.0  # seconds: at most one typing event per socket in this time
# Every frame, whatever its type, is held to this many times the message rate.
FRAME_RATE_FACTOR = (6, 10)  # (burst, per second)


@dataclass(frozen=True)
class Limits:
    """The limits the settings give (CHAT_* in docs/configuration.md)."""

    max_message_chars: int
    max_frame_bytes: int
    rate_burst: int
    rate_per_second: float
    history_page: int
    resume_limit: int
    max_sockets_per_user: int
    max_sockets_per_employee: int

    @classmethod
    def from_settings(cls):
        """Each field from the setting CHAT_<FIELD>: read once, and again
        after Django's setting_changed says a CHAT_ setting changed (as
        the tests' settings fixture does). Every handshake asks."""
        return _limits_from_settings()

    def for_client(self):
        """What a v2 client is told in its `ready` event."""
        return {
            "max_message_chars": self.max_message_chars,
            "max_frame_bytes": self.max_frame_bytes,
            "rate_burst": self.rate_burst,
            "rate_per_second": self.rate_per_second,
        }

    def socket_cap(self, employee):
        """Open chat sockets allowed per user on one worker: more for an
        employee, who may follow many chats at once."""
        return self.max_sockets_per_employee if employee else self.max_sockets_per_user

    def message_rate(self):
        return RateLimiter(self.rate_burst, self.rate_per_second, hit=metrics.THROTTLE_HITS["chat_message"].inc)

    def frame_rate(self):
        burst, per_second = FRAME_RATE_FACTOR
        return RateLimiter(
            self.rate_burst * burst, self.rate_per_second * per_second, hit=metrics.THROTTLE_HITS["chat_frame"].inc
        )


@functools.cache
def _limits_from_settings():
    return Limits(**{field.name: getattr(settings, f"CHAT_{field.name.upper()}") for field in fields(Limits)})


@receiver(setting_changed)
def _forget_limits(setting, **kwargs):
    if setting.startswith("CHAT_"):
        _limits_from_settings.cache_clear()


class RateLimiter:
    """A token bucket: `burst` at once, then `per_second`. One per socket.
    `hit()` is called on each refusal (the throttle's metric)."""

    def __init__(self, burst, per_second, clock=time.monotonic, hit=None):
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self.hit = hit
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self):
        """Spend one token; raise ChatError('rate_limited') when there is none."""
        if self.spend():
            return
        if self.hit is not None:
            self.hit()
        retry_after = round((1 - self.tokens) / self.per_second, 2)
        raise ChatError("rate_limited", "Too many messages; slow down.", retry_after=retry_after)

    def spend(self):
        """Spend one token if there is one; True if there was."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_second)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Strikes:
    """Refused frames in a row, counted over the last `window` seconds; a
    frame the server accepts starts the count again. One per socket."""

    def __init__(self, limit=STRIKE_LIMIT, window=STRIKE_WINDOW_SECONDS, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self.clock = clock
        self.times = deque()

    def refused(self):
        """Count a refusal; True when the socket has had too many."""
        now = self.clock()
        self.times.append(now)
        while self.times and self.times[0] <= now - self.window:
            self.times.popleft()
        return len(self.times) >= self.limit

    def accepted(self):
        self.times.clear()


class Throttle:
    """At most one event per `interval` seconds; extra ones are dropped."""

    def __init__(self, interval, clock=time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last = -interval

    def allow(self):
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


class OpenSockets:
    """Chat sockets open per user in this process, held to a cap
    (CHAT_MAX_SOCKETS_PER_USER): a client opening socket after socket holds
    only so much of a worker."""

    def __init__(self):
        self.counts = {}

    def take(self, user_id, cap):
        """Count one more socket for `user_id`; False (not counted) at the cap."""
        count = self.counts.get(user_id, 0)
        if count >= cap:
            return False
        self.counts[user_id] = count + 1
        return True

    def give_back(self, user_id):
        count = self.counts.get(user_id, 0) - 1
        if count > 0:
            self.counts[user_id] = count
        else:
            self.counts.pop(user_id, None)


OPEN_SOCKETS = OpenSockets()
