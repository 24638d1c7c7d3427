"""What presence is made of, whichever store keeps it."""

from dataclasses import dataclass

PRESENCE_SECONDS = 10  # a heartbeat keeps its user present this long
PRESENCE_GRACE_SECONDS = 2  # a heartbeat sent 10 s after the last may take this long to land


@dataclass(frozen=True)
class Presence:
    order_id: int
    email: str
    is_employee: bool
    since: float  # epoch seconds: when this presence began


@dataclass(frozen=True)
class Snapshot:
    now: float  # the store's clock (Redis TIME), epoch seconds
    people: tuple  # of Presence, by order id, then arrival
    next_expiry: float | None = None  # epoch seconds: the soonest anyone's presence ends
    grace: float = 0.0  # how long past its end a presence stays in this listing

    @property
    def seconds_to_next_expiry(self):
        """How long until the next person leaves this listing, or None if nobody is here."""
        if not self.people or self.next_expiry is None:
            return None
        return max(0.0, self.next_expiry + self.grace - self.now)


def in_order(people):
    """People by order id, then arrival, as every listing gives them."""
    return tuple(sorted(people, key=lambda p: (p.order_id, p.since, p.email)))
