"""The login throttle end to end (docs/operations.md, "Login throttle"): real
workers (booktime.serve) on the test database, the shipped nginx config in
front of them, and clients on several loopback addresses (127.0.0.0/8 is all
loopback), each a device with its own cookies.

Every door into an account shares one count of failures, per client address
and per account: the login page, the admin's login page, the mobile token
login and HTTP Basic on the REST API."""

import base64
import http.client
import json
import re
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from http.cookies import SimpleCookie

import pytest

from harness import servers
from main import factories

from ..clients import wait_for
from .test_deploy import NGINX, nginx_config

PASSWORD = "abcabcabc"  # UserFactory's
LIMIT = 10  # LOGIN_FAILURE_LIMIT's default
COOLOFF = 300  # LOGIN_COOLOFF_SECONDS' default
TIMEOUT = 10


# --- Devices: HTTP clients on a loopback address of their own -----------------------


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


class Device:
    """A browser or a phone at one client address, keeping its cookies and the
    Known-Device value the mobile login gives it."""

    def __init__(self, server, address="127.0.0.1"):
        self.server, self.address = server, address
        self.cookies = {}
        self.known_device = None

    def request(self, method, path, *, form=None, data=None, headers=None):
        headers = dict(headers or {})
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if data is not None:
            body = json.dumps(data).encode()
            headers["Content-Type"] = "application/json"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.server.port, timeout=TIMEOUT, source_address=(self.address, 0)
        )
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        for line in answer.headers.get_all("Set-Cookie") or ():
            for name, morsel in SimpleCookie(line).items():
                self.cookies[name] = morsel.value
        if answer.headers.get("Known-Device"):
            self.known_device = answer.headers["Known-Device"]
        return answer

    def mobile_headers(self):
        return {"Known-Device": self.known_device} if self.known_device else {}


# --- The doors --------------------------------------------------------------------


def form_login(device, path, email, password, headers=None):
    """One attempt on a login form as a browser makes it: the page (its CSRF
    cookie and token) first, then the form posted."""
    page = device.request("GET", path)
    assert page.status == 200, page.body
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body).group(1).decode()
    form = {"username": email, "password": password, "csrfmiddlewaretoken": csrf}
    return device.request("POST", path, form=form, headers=headers)


def page(device, email, password):
    return form_login(device, "/login/", email, password)


def admin(device, email, password):
    return form_login(device, "/admin/login/?next=/admin/", email, password)


def token(device, email, password):
    return device.request(
        "POST", "/mobile-api/auth/", data={"username": email, "password": password}, headers=device.mobile_headers()
    )


def basic(device, email, password):
    credentials = base64.b64encode(f"{email}:{password}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}", **device.mobile_headers()}
    return device.request("GET", "/mobile-api/my-orders/", headers=headers)


DOORS = {"page": page, "admin": admin, "token": token, "basic": basic}
WRONG = {"page": 200, "admin": 200, "token": 400, "basic": 401}  # a wrong password's answer


def logged_in(door, answer):
    if door in ("page", "admin"):
        return answer.status == 302 and answer.headers["Location"] == ("/" if door == "page" else "/admin/")
    return answer.status == 200


def refused(answer):
    """A locked-out answer: 429, saying when to try again."""
    retry = int(answer.headers.get("Retry-After", 0))
    if answer.status != 429 or not 0 < retry <= COOLOFF:
        return False
    if answer.headers["Content-Type"].startswith("application/json"):
        return answer.json()["code"] == "throttled"
    return f"Try again in {retry} second".encode() in answer.body


def same_answer(a, b):
    """The same answer but for what differs per response (the CSRF token, the seconds)."""

    def normal(answer):
        body = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", answer.body)
        return answer.status, re.sub(rb"\d+", b"N", body)

    return normal(a) == normal(b)


def fail_from_addresses(server, email, first, count):
    """One wrong password on `email` from each of `count` addresses, going
    round the doors."""
    doors = list(DOORS.values())
    for n in range(count):
        doors[n % len(doors)](Device(server, f"127.0.0.{first + n}"), email, "guess")


# --- Servers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(default_worker, tmp_path_factory):
    """The shipped nginx config in front of the worker."""
    tmp_path = tmp_path_factory.mktemp("nginx")
    port = servers.free_port()
    config = nginx_config(tmp_path, port, [default_worker.port])
    check = subprocess.run([NGINX, "-t", "-c", str(config)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    server = servers.Server([NGINX, "-c", str(config)], port, log_path=tmp_path / "nginx.out")
    yield server
    server.stop()


@pytest.fixture(params=["direct", "nginx"])
def served(request, default_worker, proxy):
    """The worker, reached directly or through nginx."""
    return default_worker if request.param == "direct" else proxy


@pytest.fixture
def victim(transactional_db):
    """A staff member, so the admin's login is a door too."""
    return factories.EmployeeFactory(email="victim@site.com")


# --- Each door ------------------------------------------------------------------


@pytest.mark.parametrize("door", DOORS)
def test_each_door_locks_at_the_limit_and_says_when_to_retry(default_worker, victim, door):
    attempt, device = DOORS[door], Device(default_worker, "127.0.0.2")
    for _ in range(LIMIT - 1):
        assert attempt(device, victim.email, "guess").status == WRONG[door]
    assert refused(attempt(device, victim.email, "guess"))
    # Locked: the right password gets the same answer as a wrong one, given
    # before the password is checked.
    right, wrong = attempt(device, victim.email, PASSWORD), attempt(device, victim.email, "guess-again")
    assert refused(right) and refused(wrong) and same_answer(right, wrong)
    assert "sessionid" not in device.cookies and "known_device" not in device.cookies
    assert device.known_device is None


def test_the_doors_share_one_count(default_worker, victim):
    device = Device(default_worker, "127.0.0.3")
    doors = list(DOORS.values())
    for n in range(LIMIT - 1):
        doors[n % len(doors)](device, victim.email, "guess")
    assert refused(page(device, victim.email, "guess"))
    for door in DOORS.values():
        assert refused(door(device, victim.email, PASSWORD))


# --- The client's address ----------------------------------------------------------


def test_a_forged_forwarded_for_sent_straight_to_a_worker_gets_no_fresh_budget(default_worker, transactional_db):
    """The attacker (not the trusted proxy's address) names a new address in
    X-Forwarded-For on each try, on a new account each time: the worker counts
    the address it connected from."""
    attacker = Device(default_worker, "127.0.0.4")

    def guess(n):
        forged = {"X-Forwarded-For": f"198.51.100.{n}"}
        return attacker.request(
            "POST", "/mobile-api/auth/", data={"username": f"user{n}@site.com", "password": "guess"}, headers=forged
        )

    for n in range(LIMIT):
        guess(n)
    assert refused(guess(LIMIT))


def test_behind_nginx_each_client_counts_by_the_address_nginx_saw(proxy, transactional_db):
    neighbour = factories.UserFactory(email="neighbour@site.com")
    attacker = Device(proxy, "127.0.0.5")
    for n in range(LIMIT):
        forged = {"X-Forwarded-For": f"198.51.100.{n}"}
        attacker.request(
            "POST", "/mobile-api/auth/", data={"username": f"user{n}@site.com", "password": "x"}, headers=forged
        )
    assert refused(token(attacker, "someone@site.com", PASSWORD))
    # Not nginx's own address: a client next door is not locked out.
    assert logged_in("token", token(Device(proxy, "127.0.0.6"), neighbour.email, PASSWORD))


# --- Per account ---------------------------------------------------------------------


def test_failures_on_one_account_add_up_across_addresses(served, victim):
    fail_from_addresses(served, victim.email, first=10, count=LIMIT)
    for door in DOORS.values():
        assert refused(door(Device(served, "127.0.0.40"), victim.email, PASSWORD))
    # Those addresses spent one try each: their own accounts open.
    own = factories.UserFactory(email="own@site.com")
    assert logged_in("page", page(Device(served, "127.0.0.10"), own.email, PASSWORD))


# --- The known-device exemption --------------------------------------------------------


def test_a_known_device_logs_in_while_its_account_is_locked(served, victim):
    laptop, phone = Device(served, "127.0.0.20"), Device(served, "127.0.0.21")
    assert logged_in("page", page(laptop, victim.email, PASSWORD))
    assert "known_device" in laptop.cookies
    assert logged_in("token", token(phone, victim.email, PASSWORD)) and phone.known_device
    laptop.cookies.pop("sessionid")

    fail_from_addresses(served, victim.email, first=50, count=LIMIT)
    assert refused(page(Device(served, "127.0.0.22"), victim.email, PASSWORD))

    assert logged_in("page", page(laptop, victim.email, PASSWORD))
    laptop.cookies.pop("sessionid")
    assert logged_in("admin", admin(laptop, victim.email, PASSWORD))
    assert logged_in("token", token(phone, victim.email, PASSWORD))
    assert logged_in("basic", basic(phone, victim.email, PASSWORD))


def test_a_device_known_for_another_account_or_a_forged_note_is_not_exempt(served, victim):
    other = factories.UserFactory(email="other@site.com")
    elsewhere, laptop = Device(served, "127.0.0.23"), Device(served, "127.0.0.24")
    assert logged_in("page", page(elsewhere, other.email, PASSWORD))
    assert logged_in("page", page(laptop, victim.email, PASSWORD))
    elsewhere.cookies.pop("sessionid")
    fail_from_addresses(served, victim.email, first=60, count=LIMIT)

    assert refused(page(elsewhere, victim.email, PASSWORD))
    # The victim's own note, its signature damaged, on another device.
    note = laptop.cookies["known_device"]
    forged = Device(served, "127.0.0.30")
    forged.cookies["known_device"] = forged.known_device = note[:-4] + ("AAAA" if note[-4:] != "AAAA" else "BBBB")
    assert refused(page(forged, victim.email, PASSWORD))
    assert refused(token(forged, victim.email, PASSWORD))


def test_the_per_address_limit_applies_to_a_known_device_too(default_worker, victim):
    laptop = Device(default_worker, "127.0.0.25")
    assert logged_in("page", page(laptop, victim.email, PASSWORD))
    laptop.cookies.pop("sessionid")
    for n in range(LIMIT):
        page(laptop, f"user{n}@site.com", "guess")
    assert refused(page(laptop, victim.email, PASSWORD))


# --- The lock expires; Redis is not needed --------------------------------------------


def test_a_lock_expires_by_itself(worker_server, victim):
    server = worker_server({"LOGIN_COOLOFF_SECONDS": "1"})
    device = Device(server, "127.0.0.26")
    for _ in range(LIMIT):
        page(device, victim.email, "guess")
    locked = page(device, victim.email, PASSWORD)
    assert locked.status == 429 and locked.headers["Retry-After"] == "1"
    assert b"Try again in 1 second." in locked.body
    # Attempts while locked are refused unchecked and do not lengthen the lock.
    started = time.monotonic()
    wait_for(lambda: logged_in("token", token(device, victim.email, PASSWORD)), timeout=10)
    assert time.monotonic() - started < 3


def test_logins_work_and_stay_throttled_while_redis_is_unreachable(worker_server, victim):
    server = worker_server({"REDIS_URL": f"redis://127.0.0.1:{servers.free_port()}/0"})
    for door in DOORS:
        assert logged_in(door, DOORS[door](Device(server, "127.0.0.27"), victim.email, PASSWORD))
    device = Device(server, "127.0.0.28")
    for _ in range(LIMIT):
        basic(device, victim.email, "guess")
    assert refused(token(device, victim.email, PASSWORD))
    assert refused(page(Device(server, "127.0.0.29"), victim.email, PASSWORD))
