"""Security checks against the real app in a real worker, with real clients
(urllib, websockets, headless chromium). Where each property is proven:

1. A foreign page cannot ride a user's session cookie over WebSocket
   (cross-site WebSocket hijacking): here, with a cookie from a real login on
   the login page; also chat/test_e2e.py::test_origin_check (`Origin: null`,
   no Origin for native apps). The tracker and the dashboard's stream are
   plain HTTP, not WebSockets: here, a foreign Origin gets no CORS header and
   the session cookie is SameSite=Lax.
2. No token, password or query string in anything the server logs: here,
   everything the worker writes (access log and app log at DEBUG) over a run of
   every way a token travels; also api/test_api.py::
   test_no_token_or_password_in_the_server_log and infra/test_auth.py::
   test_no_token_in_our_logs / test_access_logs_show_no_query_string. nginx's
   logs (deploy/nginx.conf): system/test_deploy.py::
   test_nginx_spreads_requests_over_workers_and_no_log_shows_the_query_string
   and test_no_nginx_log_shows_a_token_when_a_worker_is_down_or_a_file_missing.
3. The tracker never follows a redirect off the courier's host: here, the
   other host is a live server that counts its hits (tracker/test_tracker.py's
   `redirect-away` case points at an unresolvable name, which a followed
   redirect would answer 502 too); a redirect on the courier's own host is
   followed: tracker/test_tracker.py::test_a_redirect_on_the_couriers_own_host_is_followed.
4. Every user-controlled string is rendered as text on the chat page and the
   employees' dashboard: here (names, emails, product names, messages); the
   message alone also in chat/test_browser.py.
5. Password guessing is throttled, on the login page too (one count with
   the mobile API): here; every way of logging in (the admin's too), per
   address and per account, behind nginx and without, the known-device
   exemption and Redis away: system/test_login_throttle.py; the mobile API:
   api/test_api.py::test_login_attempts_are_throttled /
   test_the_login_throttle_is_shared_by_server_processes; axes' hooks:
   infra/test_throttles.py.
6. Another customer's order id is refused on every route that takes one,
   with the same answer as an order that does not exist: here; the routes are
   found by walking the URL resolvers, so a new one fails the test until it
   is covered.
"""

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import get_resolver
from playwright.sync_api import expect
from rest_framework.authtoken.models import Token
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from harness import servers
from main import factories, models
from main import routing as asgi_routing
from main.tests.routes import walk

from .. import mobile_servers
from ..browsing import browser_login

app, clean, standin = mobile_servers.app, mobile_servers.clean, mobile_servers.standin

PASSWORD = "abcabcabc"  # main.factories.UserFactory's
TIMEOUT = 10
WAIT_MS = 10_000


# --- Real clients --------------------------------------------------------------


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))


def http(method, url, headers=None, data=None):
    """One request, redirects not followed: (status, headers, body)."""
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with OPENER.open(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def login_attempt(server, email, password):
    """One attempt on the real login page, as a browser makes it (the form's
    CSRF token and cookie first): the answer to the POST."""
    status, headers, body = http("GET", f"{server.url}/login/")
    assert status == 200
    csrf_cookie = re.search(r"csrftoken=([^;]+)", headers["Set-Cookie"]).group(1)
    csrf = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body).group(1).decode()
    form = urllib.parse.urlencode({"username": email, "password": password, "csrfmiddlewaretoken": csrf})
    return http(
        "POST",
        f"{server.url}/login/",
        headers={"Cookie": f"csrftoken={csrf_cookie}", "Content-Type": "application/x-www-form-urlencoded"},
        data=form.encode(),
    )


def login_on_the_page(server, email, password=PASSWORD):
    """Log in through the real login page: the session cookie's value, and
    the Set-Cookie header that set it."""
    status, headers, _ = login_attempt(server, email, password)
    assert status == 302 and headers["Location"] == "/", "the login page did not log in"
    set_cookie = next(v for v in headers.get_all("Set-Cookie") if v.startswith("sessionid="))
    return re.match(r"sessionid=([^;]+)", set_cookie).group(1), set_cookie


def ws_open(server, path, *, cookie=None, origin=None, headers=None):
    """A WebSocket handshake: the open socket, or the refusal's HTTP status."""
    headers = dict(headers or {})
    if cookie is not None:
        headers["Cookie"] = f"sessionid={cookie}"
    try:
        return connect(
            f"{server.ws_url}{path}",
            origin=origin,
            additional_headers=headers,
            open_timeout=TIMEOUT,
            close_timeout=2,
            proxy=None,
        )
    except InvalidStatus as refused:
        return refused.response


def first_event(ws):
    with ws:
        return json.loads(ws.recv(timeout=TIMEOUT))


# --- 1. Cross-site WebSocket hijacking -------------------------------------------


FOREIGN_ORIGINS = [
    "https://evil.example",
    "null",  # a sandboxed iframe or a file: page
    "http://127.0.0.1.evil.example",  # our host name as a prefix of theirs
    "http://evil.example/http://127.0.0.1",
]


def test_a_foreign_origin_cannot_ride_a_real_session(app, clean, people):
    customer, order, _, _ = people
    cookie, set_cookie = login_on_the_page(app, customer.email)
    path = f"/ws/customer-service/{order.pk}/"
    for origin in FOREIGN_ORIGINS:
        refused = ws_open(app, path, cookie=cookie, origin=origin)
        assert getattr(refused, "status_code", None) == 403, f"{origin} was let in"
    # The same cookie from our own pages gets in.
    for own in (app.url, f"http://localhost:{app.port}"):
        assert first_event(ws_open(app, path, cookie=cookie, origin=own)) == {
            "type": "chat_join",
            "username": "Jane Doe",
        }

    # The tracker is plain HTTP: a foreign page's fetch gets no CORS header,
    # so it cannot read the answer, and a browser does not send the session
    # cookie on a cross-site request anyway (SameSite=Lax).
    assert "samesite=lax" in set_cookie.lower() and "httponly" in set_cookie.lower()
    tracker = f"{app.url}/mobile-api/my-orders/{order.pk}/tracker/"
    status, headers, _ = http("GET", tracker, headers={"Cookie": f"sessionid={cookie}", "Origin": FOREIGN_ORIGINS[0]})
    assert status == 200  # the owner's session is accepted...
    assert not [h for h in headers if h.lower().startswith("access-control-")]  # ...but not shared cross-site


# --- 2. No token or query string in any log ---------------------------------------


def test_no_token_password_or_query_string_in_anything_the_server_logs(worker_server, standin, clean, people):
    customer, order, _, _ = people
    server = worker_server({"COURIER_API_URL": f"{standin.url}/", "LOG_LEVEL": "DEBUG"})
    marker = f"SECRETMARK{uuid.uuid4().hex[:12]}"
    bad_token = uuid.uuid4().hex + "abcdef01"  # 40 hex characters, as a real key: not one
    wrong_password = f"wrong-{marker}-pw"

    # Token login, a wrong then a right password.
    login = f"{server.url}/mobile-api/auth/"
    form = {"Content-Type": "application/json"}
    creds = {"username": customer.email, "password": wrong_password}
    assert http("POST", login, form, json.dumps(creds).encode())[0] == 400
    status, _, body = http("POST", login, form, json.dumps(dict(creds, password=PASSWORD)).encode())
    assert status == 200
    token = json.loads(body)["token"]

    # The chat socket with ?token= (and another parameter), a message sent.
    with ws_open(server, f"/ws/customer-service/{order.pk}/?token={token}&after={marker}") as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "chat_join"
        ws.send(json.dumps({"type": "message", "message": "Where is my book?"}))
        assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "chat_message"
    # Refused: a bad ?token= on the chat, an unknown socket path.
    assert ws_open(server, f"/ws/customer-service/{order.pk}/?token={bad_token}").status_code == 403
    assert ws_open(server, f"/ws/nowhere/?token={token}&q={marker}").status_code == 403

    # The tracker with ?token=, with a bad one, and with the header.
    tracker = f"{server.url}/mobile-api/my-orders/{order.pk}/tracker/"
    assert http("GET", f"{tracker}?token={token}&q={marker}")[0] == 200
    assert http("GET", f"{tracker}?token={bad_token}")[0] == 404
    auth = {"Authorization": f"Token {token}"}
    assert http("GET", tracker, auth)[0] == 200
    # REST with the header; with the token in the query (not how REST reads it).
    assert http("GET", f"{server.url}/mobile-api/my-orders/?page={marker}", auth)[0] == 200
    assert http("GET", f"{server.url}/mobile-api/my-orders/?token={token}")[0] == 401
    # Pages with a secret in the query string: found, not found.
    assert http("GET", f"{server.url}/login/?next=/my-orders/%3Fs%3D{marker}&q={marker}")[0] == 200
    assert http("GET", f"{server.url}/no-such-page/?q={marker}&token={token}")[0] == 404

    server.stop()  # everything written and the log file closed
    log = server.log_path.read_text(errors="replace")
    for secret in (token, bad_token, marker, wrong_password, PASSWORD):
        assert secret not in log, f"{secret!r} is in the server's output"
    access_log = [line for line in log.splitlines() if re.search(r'"(GET|POST|WebSocket) /', line)]
    assert not [line for line in access_log if "?" in line], "a query string in the access log"

    # It did log: the access log has every request and socket, the app its lines.
    for line in (
        '"POST /mobile-api/auth/ HTTP/1.1" 400',
        '"POST /mobile-api/auth/ HTTP/1.1" 200',
        f'"WebSocket /ws/customer-service/{order.pk}/" [accepted]',
        f'"WebSocket /ws/customer-service/{order.pk}/" 403',
        '"WebSocket /ws/nowhere/" 403',
        f'"GET /mobile-api/my-orders/{order.pk}/tracker/ HTTP/1.1" 200',
        f'"GET /mobile-api/my-orders/{order.pk}/tracker/ HTTP/1.1" 404',
        '"GET /mobile-api/my-orders/ HTTP/1.1" 200',
        '"GET /mobile-api/my-orders/ HTTP/1.1" 401',
        '"GET /login/ HTTP/1.1" 200',
        '"GET /no-such-page/ HTTP/1.1" 404',
        f"Chat opened: user {customer.pk}, order {order.pk}",
        f"Order tracking request for user {customer.pk} and order {order.pk}",
        "Not Found: /no-such-page/",
        "Chat closed: user",
    ):
        assert line in log, f"{line!r} is not in the server's output"


# --- 3. The tracker stays on the courier's host ------------------------------------


def test_the_tracker_never_follows_a_redirect_off_the_couriers_host(app, standin, clean):
    user = factories.UserFactory(email="tracker@site.com")
    order = factories.OrderFactory(user=user)
    token = Token.objects.get(user=user).key
    elsewhere = servers.courier_standin()  # another host: a live one, answering 200
    try:
        mobile_servers.configure(
            standin, orders={order.pk: {"mode": "redirect-away", "location": f"{elsewhere.url}/track/{order.pk}"}}
        )
        status, _, body = http("GET", f"{app.url}/mobile-api/my-orders/{order.pk}/tracker/?token={token}")
        assert mobile_servers.hits(standin, order.pk) >= 1  # the courier was asked and redirected
        assert mobile_servers.hits(elsewhere, order.pk) == 0, "the tracker followed a redirect off the courier's host"
        assert status == 502 and json.loads(body)["code"] == "courier_unavailable"
    finally:
        elsewhere.stop()


# --- 5. Password guessing on the login page ------------------------------------------


def without_csrf_token(body):
    """A page without what differs per answer: the CSRF token, and the seconds to wait."""
    return re.sub(rb"\d+ seconds?", b"", re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", body))


def test_wrong_passwords_on_the_login_page_spend_the_login_throttle(app, clean, people):
    email = people[0].email
    # People logging in spend none of the budget...
    for _ in range(mobile_servers.LOGIN_LIMIT + 1):
        assert login_attempt(app, email, PASSWORD)[0] == 302
    # ...wrong passwords do: at the limit even the right one is refused,
    # before it is checked (the same answer as a wrong one).
    for n in range(mobile_servers.LOGIN_LIMIT - 1):
        status, _, body = login_attempt(app, email, f"guess{n}")
        assert status == 200 and b"didn't match" in body
    assert login_attempt(app, email, "guess-last")[0] == 429
    right, wrong = login_attempt(app, email, PASSWORD), login_attempt(app, email, "guess-again")
    for status, headers, body in (right, wrong):
        assert status == 429 and int(headers["Retry-After"]) > 0 and b"Too many failed logins" in body
        assert not [c for c in headers.get_all("Set-Cookie") or () if c.startswith("sessionid=")]
    assert without_csrf_token(right[2]) == without_csrf_token(wrong[2])
    # One budget with the mobile API's token login.
    login = json.dumps({"username": email, "password": PASSWORD}).encode()
    assert http("POST", f"{app.url}/mobile-api/auth/", {"Content-Type": "application/json"}, login)[0] == 429


def test_mobile_login_attempts_spend_the_login_pages_budget(app, clean, people):
    email = people[0].email
    login = json.dumps({"username": email, "password": "guess"}).encode()
    for _ in range(mobile_servers.LOGIN_LIMIT - 1):
        assert http("POST", f"{app.url}/mobile-api/auth/", {"Content-Type": "application/json"}, login)[0] == 400
    assert http("POST", f"{app.url}/mobile-api/auth/", {"Content-Type": "application/json"}, login)[0] == 429
    assert login_attempt(app, email, PASSWORD)[0] == 429


# --- 6. Another customer's order id, on every route that takes one ------------------


def routes():
    """Every route of the app, as (kind, route): "page" (Django's URLconf)
    or "asgi-http" / "websocket" (booktime/routing.py's own routes)."""

    yield from (("page", r) for r in walk(get_resolver().url_patterns))
    yield from (("asgi-http", r) for r in walk(asgi_routing.http_urlpatterns))
    yield from (("websocket", r) for r in walk(asgi_routing.websocket_urlpatterns))


def takes_parameters(route):
    return "<" in route or "(?P" in route


# Each route that can name an order, and the URL that asks it for order {id}.
ORDER_ROUTES = {
    ("page", "customer-service/<int:order_id>/"): "/customer-service/{id}/",
    ("asgi-http", "mobile-api/my-orders/<int:order_id>/tracker/"): "/mobile-api/my-orders/{id}/tracker/",
    ("websocket", "ws/customer-service/<int:order_id>/"): "/ws/customer-service/{id}/",
    ("page", "admin/main/order/<path:object_id>/"): "/admin/main/order/{id}/",
    ("page", "admin/main/order/<path:object_id>/change/"): "/admin/main/order/{id}/change/",
    ("page", "admin/main/order/<path:object_id>/history/"): "/admin/main/order/{id}/history/",
    ("page", "admin/main/order/<path:object_id>/delete/"): "/admin/main/order/{id}/delete/",
    # The admin's "view on site" link names any object, an order too.
    ("page", "admin/r/<path:content_type_id>/<path:object_id>/"): "/admin/r/{order_type}/{id}/",
    ("page", "mobile-api/conversations/<int:order_id>/"): "/mobile-api/conversations/{id}/",
    # Both of what it takes: a page of messages, and a message sent.
    ("page", "mobile-api/conversations/<int:order_id>/messages/"): (
        "/mobile-api/conversations/{id}/messages/",
        "POST /mobile-api/conversations/{id}/messages/",
    ),
    **{
        (
            "page",
            f"mobile-api/conversations/<int:order_id>/{action}/",
        ): f"POST /mobile-api/conversations/{{id}}/{action}/"
        for action in ("read", "claim", "release", "assign", "resolve", "reopen")
    },
}
# Routes whose parameters never name an order (or anything that holds one).
ADMIN_MODELS_WITHOUT_ORDERS = {
    "auth/group",
    "authtoken/tokenproxy",
    "main/user",
    "main/product",
    # The login throttle's (django-axes) counts and logs.
    "axes/accessattempt",
    "axes/accesslog",
    "axes/accessfailurelog",
}
ADMIN_OBJECT_ROUTE = re.compile(r"admin/(\w+/\w+)/<path:object_id>/(change/|history/|delete/)?")
NOT_ORDER_ROUTES = {
    ("page", "admin/main/user/<id>/password/"): "a user's password form",
    ("page", "admin/^(?P<app_label>auth|authtoken|axes|main)/$"): "an app's list of models",
    ("page", "admin/(?P<url>.*)$"): "the admin's catch-all (a redirect to its login, or a 404)",
    ("page", "^media/(?P<path>.*)$"): "uploaded files, by file name",
}


def test_every_route_that_takes_a_parameter_is_known_to_name_an_order_or_not():
    unknown = []
    for kind, route in routes():
        if not takes_parameters(route) or (kind, route) in ORDER_ROUTES or (kind, route) in NOT_ORDER_ROUTES:
            continue
        admin = ADMIN_OBJECT_ROUTE.fullmatch(route)
        if kind == "page" and admin and admin.group(1) in ADMIN_MODELS_WITHOUT_ORDERS:
            continue
        unknown.append((kind, route))
    assert not unknown, (
        f"routes with parameters this test does not know: {unknown}; if one can name an order, add it to "
        "ORDER_ROUTES (test_another_customers_order_is_refused_everywhere asks it), else to NOT_ORDER_ROUTES"
    )
    # ...and every route ORDER_ROUTES asks still exists.
    assert set(ORDER_ROUTES) <= set(routes())


def normalised(answer, path):
    """An answer with the path that was asked for (as in a redirect to the
    login page, plain or quoted) taken out."""
    status, headers, body = answer

    def out(text):
        return text.replace(path, "{path}").replace(urllib.parse.quote(path, safe=""), "{path}")

    ignored = {"date", "expires", "set-cookie", "vary", "content-length"}  # per response
    kept = sorted((k.lower(), out(v)) for k, v in headers.items() if k.lower() not in ignored)
    return status, kept, out(body.decode("utf-8", "replace"))


def ask(server, kind, path, credentials):
    """Ask a route as customer B: an HTTP answer, or a WebSocket's refusal
    (an accepted socket fails the test). `path` may start with its method."""
    headers = dict(credentials.get("headers", {}))
    query = credentials.get("query", "")
    method, _, path = path.rpartition(" ")
    if kind == "websocket":
        answer = ws_open(server, path + query, origin=server.url, headers=headers)
        if not hasattr(answer, "status_code"):
            answer.close()
            pytest.fail(f"{path}{query} was accepted for customer B with {credentials['name']}")
        return answer.status_code, dict(answer.headers), answer.body
    if method == "POST":
        headers["Content-Type"] = "application/json"
        return http("POST", f"{server.url}{path}{query}", headers, data=b'{"seq": 1, "user_id": 1, "message": "hi"}')
    return http("GET", f"{server.url}{path}{query}", headers)


def test_another_customers_order_is_refused_everywhere(app, standin, clean, people):
    jane, janes_order, _, bob = people
    bobs_order = factories.OrderFactory(user=bob)
    missing = models.Order.objects.order_by("-pk").first().pk + 1000
    bob_cookie, _ = login_on_the_page(app, bob.email)
    bob_token = Token.objects.get(user=bob).key
    order_type = ContentType.objects.get_for_model(models.Order).pk
    credentials = [
        {"name": "a session", "headers": {"Cookie": f"sessionid={bob_cookie}"}},
        {"name": "a token header", "headers": {"Authorization": f"Token {bob_token}"}},
        {"name": "a ?token=", "query": f"?token={bob_token}"},
    ]

    def url(route, order_id, template=None):
        return (template or ORDER_ROUTES[route]).format(id=order_id, order_type=order_type)

    # Bob's credentials work: his own order opens where a customer may go.
    for creds in credentials:
        if "Cookie" in creds.get("headers", {}):
            assert ask(app, "page", url(("page", "customer-service/<int:order_id>/"), bobs_order.pk), creds)[0] == 200
        tracker = ("asgi-http", "mobile-api/my-orders/<int:order_id>/tracker/")
        assert ask(app, "asgi-http", url(tracker, bobs_order.pk), creds)[0] == 200
        ws_path = url(("websocket", "ws/customer-service/<int:order_id>/"), bobs_order.pk)
        assert first_event(ws_open(app, ws_path + creds.get("query", ""), origin=app.url, headers=creds.get("headers")))

    asked = [(kind, t) for (kind, _), ts in ORDER_ROUTES.items() for t in ([ts] if isinstance(ts, str) else ts)]
    for kind, template in asked:
        for creds in credentials:
            janes_path, nobodys_path = url(None, janes_order.pk, template), url(None, missing, template)
            janes, nobodys = ask(app, kind, janes_path, creds), ask(app, kind, nobodys_path, creds)
            where = f"{template} with {creds['name']}"
            # 401: a route that takes no ?token= (the REST API) knows no one.
            assert janes[0] in (302, 401, 403, 404), f"{where}: {janes[0]} for another customer's order"
            if janes[0] == 302:  # to a login page, not into the order
                assert "/login/" in janes[1]["Location"], f"{where}: redirected to {janes[1]['Location']}"
            assert normalised(janes, janes_path) == normalised(nobodys, nobodys_path), (
                f"{where}: another customer's order is told apart from a missing one"
            )
    # Nothing was asked of the courier for Jane's order, nor chat state left.
    assert mobile_servers.hits(standin, janes_order.pk) == 0
    janes_order.refresh_from_db()
    assert janes_order.last_spoken_to is None and not models.ChatMessage.objects.filter(order=janes_order).exists()


# --- 4. User-controlled strings are text, never markup ------------------------------
# (Last in the module: Playwright's sync API keeps an event loop running in
# this thread once the module's browser is up.)

# Each would set window.__xss if it ever became markup.
CUSTOMER_FIRST = '<img src=x onerror="window.__xss=1">'
CUSTOMER_LAST = '"><script>window.__xss=2</script>'
CUSTOMER_EMAIL = '"<svg/onload=window.__xss=3>"@example.com'  # a valid address (a quoted local part)
AGENT_FIRST = "<img src=x onerror=window.__xss=4>"
AGENT_LAST = "</span><svg onload=window.__xss=5>"
PRODUCT = "<script>window.__xss=6</script>"
QUESTION = "<img src=x onerror=window.__xss=7> & <script>window.__xss=8</script>"
ANSWER = "</div><svg onload=window.__xss=9><b>ok</b>"
INJECTED = """() => document.querySelectorAll('svg, b, img[src="x"], [onerror], [onload]').length
    + [...document.scripts].filter(s => s.textContent.includes('__xss')).length"""


def assert_nothing_ran(page):
    assert page.evaluate("window.__xss") is None, "a payload ran"
    assert page.evaluate(INJECTED) == 0, "a payload became an element"


def session_in_browser(browser, server, email):
    """A browser context with the session of a real login on the login page.
    (Not typed into that page: its email field, type="email", refuses a
    quoted local part, which Django's validator accepts.)"""
    cookie, _ = login_on_the_page(server, email)
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    context.add_cookies([{"name": "sessionid", "value": cookie, "url": server.url}])
    return context, open_page(context, f"{server.url}/")


def open_page(context, url):
    page = context.new_page()
    page.goto(url)
    return page


@pytest.mark.parametrize("named", [True, False], ids=["named", "nameless"])
def test_names_emails_and_messages_are_shown_as_text_on_both_pages(worker_server, browser, named):
    models.User._meta.get_field("email").run_validators(CUSTOMER_EMAIL)  # the model accepts it
    names = {"first_name": CUSTOMER_FIRST, "last_name": CUSTOMER_LAST} if named else {}
    customer = factories.UserFactory(email=CUSTOMER_EMAIL, **names)
    customer_name = f"{CUSTOMER_FIRST} {CUSTOMER_LAST}" if named else CUSTOMER_EMAIL
    assert customer.display_name == customer_name
    agent = factories.EmployeeFactory(email="agent@booktime.domain", first_name=AGENT_FIRST, last_name=AGENT_LAST)
    agent_name = f"{AGENT_FIRST} {AGENT_LAST}"
    order = factories.OrderFactory(user=customer)
    factories.OrderLineFactory(order=order, product=factories.ProductFactory(name=PRODUCT))
    server = worker_server()
    chat_url = f"{server.url}/customer-service/{order.pk}/"

    customer_context, customer_page = session_in_browser(browser, server, CUSTOMER_EMAIL)
    expect(customer_page.locator(".topbar .who")).to_have_text(customer_name)
    customer_page.goto(chat_url)
    expect(customer_page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)
    expect(customer_page.locator(".chat-summary")).to_have_text(f"1 x {PRODUCT}")

    agent_context, agent_page = browser_login(browser, server, agent.email)
    agent_page.goto(chat_url)
    expect(agent_page.locator("#chat-status")).to_have_text("Connected", timeout=WAIT_MS)
    expect(agent_page.locator(".chat-summary")).to_have_text(f"1 x {PRODUCT} · customer: {customer_name}")
    expect(customer_page.locator(".notice").last).to_have_text(f"{agent_name} joined the chat", timeout=WAIT_MS)

    customer_page.fill("#chat-input", QUESTION)
    customer_page.press("#chat-input", "Enter")
    expect(agent_page.locator(".msg .msg-text").last).to_have_text(QUESTION, timeout=WAIT_MS)
    expect(agent_page.locator(".msg .msg-who").last).to_have_text(customer_name)

    agent_page.fill("#chat-input", ANSWER)  # typing...
    expect(customer_page.locator("#chat-typing")).to_have_text(f"{agent_name} is typing…", timeout=WAIT_MS)
    agent_page.press("#chat-input", "Enter")
    expect(customer_page.locator(".msg .msg-text").last).to_have_text(ANSWER, timeout=WAIT_MS)
    expect(customer_page.locator(".msg .msg-who").last).to_have_text(agent_name)

    # The dashboard: the customer, present (their page heartbeats), by email;
    # the agent who last spoke to them, by name and email.
    dashboard = open_page(agent_context, f"{server.url}/customer-service/")
    card = dashboard.locator(f".chat[data-order-id='{order.pk}']")
    expect(card.locator(".person.customer")).to_contain_text(CUSTOMER_EMAIL, timeout=WAIT_MS)
    expect(card.locator(".last-spoken")).to_have_text(f"Last spoken to by {agent_name} (agent@booktime.domain)")

    for page in (customer_page, agent_page, dashboard):
        assert_nothing_ran(page)
    agent_context.close()
    customer_context.close()
