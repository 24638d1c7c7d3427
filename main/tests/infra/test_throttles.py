"""The login throttle's hooks into django-axes (main/infra/throttles.py) and
known devices (main/infra/known_devices.py), in this process with the real
limits: one count per client address and per account, whatever the form of
login and whatever X-Forwarded-For says; when to retry; the tables kept
small. End to end (real workers, nginx, Redis away):
system/test_login_throttle.py."""

import base64
import datetime

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from axes.signals import user_locked_out
from django.conf import settings
from django.test import RequestFactory
from django.urls import reverse
from rest_framework.test import APIClient

from main import factories
from main.infra import known_devices, throttles

LIMIT = settings.LOGIN_FAILURE_LIMIT
COOLOFF = settings.LOGIN_COOLOFF_SECONDS
PASSWORD = "abcabcabc"  # UserFactory's


def basic(email, password):
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


def token_login(api, email, password, **headers):
    return api.post(reverse("mobile_token"), {"username": email, "password": password}, **headers)


@pytest.fixture
def victim(db):
    return factories.UserFactory(email="victim@site.com")


def test_the_real_limits_are_in_force():
    assert (LIMIT, COOLOFF) == (10, 300)
    assert settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"


# --- Per address, per account --------------------------------------------------------


def test_http_basic_guesses_are_throttled_with_the_token_login(victim):
    api = APIClient(REMOTE_ADDR="203.0.113.10")
    statuses = [
        api.get(reverse("mobile_my_orders"), HTTP_AUTHORIZATION=basic(victim.email, f"guess{n}")).status_code
        for n in range(LIMIT + 1)
    ]
    assert statuses == [401] * (LIMIT - 1) + [429, 429]
    throttled = token_login(api, victim.email, PASSWORD)
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"
    assert 0 < int(throttled["Retry-After"]) <= COOLOFF


def test_a_forged_forwarded_for_header_is_not_read(db):
    api = APIClient(REMOTE_ADDR="203.0.113.11")
    statuses = [
        token_login(api, f"user{n}@site.com", "x", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
        for n in range(LIMIT + 1)
    ]
    assert statuses == [400] * (LIMIT - 1) + [429, 429]


@pytest.mark.parametrize(
    "remote_addr, counted",
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::"),  # the subscriber's /64
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::"),
        ("not-an-address", None),
    ],
)
def test_the_address_counted_is_the_connecting_one(remote_addr, counted):
    request = RequestFactory().post("/login/", REMOTE_ADDR=remote_addr, HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert throttles.client_address(request) == counted


def test_one_account_counts_across_addresses_and_letter_cases(victim):
    spellings = ["victim@site.com", "Victim@Site.com", " VICTIM@SITE.COM"]
    for n in range(LIMIT):
        token_login(APIClient(REMOTE_ADDR=f"203.0.113.{100 + n}"), spellings[n % 3], "guess")
    assert token_login(APIClient(REMOTE_ADDR="203.0.113.99"), victim.email, PASSWORD).status_code == 429
    assert AccessAttempt.objects.filter(username="victim@site.com").count() == LIMIT


def test_basic_with_the_right_password_still_works(victim):
    api = APIClient(REMOTE_ADDR="203.0.113.12")
    response = api.get(reverse("mobile_my_orders"), HTTP_AUTHORIZATION=basic(victim.email, PASSWORD))
    assert response.status_code == 200 and response.json() == []


def test_each_refusal_and_the_failure_that_locks_send_axes_signal_once(victim):
    sent = []

    def receive(sender, **kwargs):
        sent.append(kwargs["username"])

    user_locked_out.connect(receive)
    try:
        api = APIClient(REMOTE_ADDR="203.0.113.13")
        for _ in range(LIMIT - 1):
            token_login(api, victim.email, "guess")
        assert sent == []
        token_login(api, victim.email, "guess")
        token_login(api, victim.email, PASSWORD)
        api.get(reverse("mobile_my_orders"), HTTP_AUTHORIZATION=basic(victim.email, PASSWORD))
    finally:
        user_locked_out.disconnect(receive)
    assert sent == [victim.email] * 3


# --- When to retry ------------------------------------------------------------------


def test_retry_after_counts_down_from_the_failures_that_lock(victim):
    api = APIClient(REMOTE_ADDR="203.0.113.14")
    for _ in range(LIMIT):
        token_login(api, victim.email, "guess")
    assert COOLOFF - 5 <= int(token_login(api, victim.email, PASSWORD)["Retry-After"]) <= COOLOFF
    # A hundred seconds on.
    AccessAttempt.objects.update(attempt_time=datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=100))
    assert COOLOFF - 105 <= int(token_login(api, victim.email, PASSWORD)["Retry-After"]) <= COOLOFF - 100


def test_the_login_page_says_when_to_retry(client, victim):
    for _ in range(LIMIT):
        client.post(reverse("login"), {"username": victim.email, "password": "guess"}, REMOTE_ADDR="203.0.113.15")
    locked = client.post(reverse("login"), {"username": victim.email, "password": PASSWORD}, REMOTE_ADDR="203.0.113.15")
    seconds = int(locked["Retry-After"])
    assert locked.status_code == 429 and f"Try again in {seconds} seconds.".encode() in locked.content
    assert b"didn't match" not in locked.content  # no password was checked
    assert "_auth_user_id" not in client.session


# --- Known devices --------------------------------------------------------------------


def with_note(note, *, cookie=True):
    factory = RequestFactory()
    if cookie:
        factory.cookies[known_devices.COOKIE] = note
        return factory.get("/")
    return factory.get("/", HTTP_KNOWN_DEVICE=note)


def test_a_known_device_note_names_its_accounts_only():
    note = known_devices.note_for(RequestFactory().get("/"), "Victim@site.com")
    for request in (with_note(note), with_note(note, cookie=False)):
        assert known_devices.is_known(request, "victim@site.com")
        assert not known_devices.is_known(request, "other@site.com")
        assert throttles.lockout_parameters(request, {"username": "victim@site.com"}) == ["ip_address"]
        assert throttles.lockout_parameters(request, {"email": "other@site.com"}) == ["ip_address", "username"]
    assert "victim" not in note
    damaged = note[:-1] + ("A" if note[-1] != "A" else "B")
    assert not known_devices.is_known(with_note(damaged), "victim@site.com")


def test_a_note_keeps_the_accounts_most_recently_logged_in_to(settings):
    request = RequestFactory().get("/")
    names = [f"user{n}@site.com" for n in range(known_devices.MAX_ACCOUNTS + 1)]
    for name in names:
        request = with_note(known_devices.note_for(request, name))
    assert not known_devices.is_known(request, names[0])
    assert all(known_devices.is_known(request, name) for name in names[1:])
    settings.LOGIN_KNOWN_DEVICE_DAYS = -1  # every note is too old
    assert not known_devices.is_known(request, names[-1])


def test_a_page_login_gives_the_browser_its_note_and_the_token_login_the_phone(client, victim):
    response = client.post(reverse("login"), {"username": victim.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies[known_devices.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] == 90 * 86400
    assert known_devices.is_known(with_note(cookie.value), victim.email)

    answer = token_login(APIClient(), victim.email, PASSWORD)
    assert answer.status_code == 200 and list(answer.json()) == ["token"]
    assert known_devices.is_known(with_note(answer[known_devices.HEADER], cookie=False), victim.email)
    assert known_devices.COOKIE not in answer.cookies


# --- Small tables --------------------------------------------------------------------


def test_failures_older_than_the_cool_off_are_deleted_and_no_log_is_kept(client, victim):
    token_login(APIClient(REMOTE_ADDR="203.0.113.16"), victim.email, "guess")
    AccessAttempt.objects.update(
        attempt_time=datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=COOLOFF + 1)
    )
    token_login(APIClient(REMOTE_ADDR="203.0.113.17"), "other@site.com", "guess")
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["203.0.113.17"]

    assert client.post(reverse("login"), {"username": victim.email, "password": PASSWORD}).status_code == 302
    assert token_login(APIClient(), victim.email, PASSWORD).status_code == 200
    assert not AccessLog.objects.exists() and not AccessFailureLog.objects.exists()


def test_the_test_clients_login_and_force_login_are_not_throttled(client, victim):
    for _ in range(LIMIT + 1):
        assert client.login(email=victim.email, password=PASSWORD)
        client.force_login(victim)
    assert not AccessAttempt.objects.exists()
