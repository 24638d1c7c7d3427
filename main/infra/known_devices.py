"""Known devices: a browser or phone that has logged in to an account carries
a signed note saying so, which spares it that account's lock in the login
throttle (main/infra/throttles.py; docs/operations.md, "Login throttle").

Browsers get the note as a cookie when they log in on a page (the site's or
the admin's); the mobile app gets it in the Known-Device header of its token
login's answer and sends it back in the same header."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.core import signing
from django.dispatch import receiver
from django.utils.crypto import salted_hmac

COOKIE = "known_device"
HEADER = "Known-Device"
SALT = "main.infra.known_devices"
MAX_ACCOUNTS = 5  # accounts one note names; the one least recently logged in to goes first
ACCOUNT_CHARS = 255  # axes' column for the account


def account_key(name):
    """An account as the throttle counts it: its email, case-folded, so that
    changing the case of a letter is not a fresh account to guess at (and
    without NUL, which PostgreSQL's text refuses)."""
    return name.replace("\x00", "").strip().casefold()[:ACCOUNT_CHARS]


def _digest(name):
    # Only what the server can make: the note names no email, and cannot be
    # written for another account without SECRET_KEY.
    return salted_hmac(SALT, account_key(name)).hexdigest()[:32]


def _max_age():
    return timedelta(days=settings.LOGIN_KNOWN_DEVICE_DAYS)


def _accounts(request):
    """The accounts (digests) this request's device is known for, most recent first."""
    found = []
    for note in (request.COOKIES.get(COOKIE), request.META.get("HTTP_KNOWN_DEVICE")):
        if not note:
            continue
        try:
            accounts = signing.loads(note, salt=SALT, max_age=_max_age())
        except signing.BadSignature:  # forged, damaged or expired
            continue
        if isinstance(accounts, list):
            found += [a for a in accounts if isinstance(a, str) and a not in found]
    return found


def is_known(request, name):
    """Whether this request comes from a device that logged in to account `name`."""
    return _digest(name) in _accounts(request)


def note_for(request, name):
    """The note for a device that has just logged in to `name`: the accounts
    it knew, this one first."""
    digest = _digest(name)
    accounts = [digest] + [a for a in _accounts(request) if a != digest]
    return signing.dumps(accounts[:MAX_ACCOUNTS], salt=SALT)


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    # A login with a session (the site's page, the admin's): RememberDevice
    # gives the browser its cookie.
    if request is not None:
        request.known_device_note = note_for(request, user.get_username())


class RememberDevice:
    """Sets the known-device cookie on the answer to a page login (MIDDLEWARE,
    which also connects the receiver above when Django loads it)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        note = getattr(request, "known_device_note", None)
        if note:
            response.set_cookie(
                COOKIE,
                note,
                max_age=_max_age(),
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
