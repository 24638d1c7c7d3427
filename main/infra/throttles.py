"""The login throttle: django-axes' hooks (the AXES_* settings) and the 429
answers of every way of logging in (docs/operations.md, "Login throttle").

axes' backend comes first in AUTHENTICATION_BACKENDS: a locked-out attempt is
refused there, before any password is checked, and marked on its request
(`axes_locked_out`). The login forms' answer is then replaced by
lockout_response (axes' middleware); the REST API asks locked_out and raises
throttled. Every refusal, and the failure that locks, sends axes'
`user_locked_out` signal: the one place to count them. Imported by DRF's
settings (the HTTP Basic class), so it must not import DRF's views."""

import ipaddress
import math

from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cool_off, get_failure_limit
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import ngettext
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication

from main.infra import known_devices

IPV6_PREFIX = 64

# --- axes' hooks ------------------------------------------------------------------


def client_address(request):
    """AXES_CLIENT_IP_CALLABLE: the address the server says the client connected
    from. X-Forwarded-For is never read here: uvicorn has already put its
    client in REMOTE_ADDR when the connection came from a trusted proxy
    (FORWARDED_ALLOW_IPS), and ignored it otherwise."""
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return None  # not an address: such clients share one count
    if address.version == 6 and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    if address.version == 6:
        # One IPv6 subscriber gets a whole /64: counted as one address, or
        # each guess could come from a fresh one.
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False).network_address)
    return str(address)


def account(request, credentials):
    """AXES_USERNAME_CALLABLE: the account tried. The login forms pass
    `username`, HTTP Basic passes the User model's `email`."""
    name = (credentials or {}).get("username") or (credentials or {}).get("email")
    return known_devices.account_key(name) if isinstance(name, str) else None


def lockout_parameters(request, credentials):
    """AXES_LOCKOUT_PARAMETERS: failures count per client address and per
    account. A device that has logged in to the account before is spared the
    account's count, never its address's: guessing from elsewhere cannot
    lock the owner out."""
    name = account(request, credentials)
    if name and hasattr(request, "META") and known_devices.is_known(request, name):
        return ["ip_address"]
    return ["ip_address", "username"]


def retry_after(request, credentials):
    """Seconds until this request may try again: until enough of the failures
    that lock it are older than the cool-off."""
    AxesProxyHandler.update_request(request)
    cool_off, limit = get_cool_off(request), get_failure_limit(request, credentials)
    now = lifts = timezone.now()
    for attempts in AxesProxyHandler.get_implementation().get_user_attempts(request, credentials):
        rows = list(attempts.order_by("attempt_time").values_list("attempt_time", "failures_since_start"))
        left = sum(failures for _, failures in rows)
        for attempt_time, failures in rows:
            if left < limit:
                break
            left -= failures
            lifts = max(lifts, attempt_time + cool_off)
    return max(1, math.ceil((lifts - now).total_seconds()))


# --- The answers ------------------------------------------------------------------


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE, for the login forms (the site's, the admin's):
    their page again, status 429, saying when to retry (the `throttled` and
    `retry_after` context); the form comes back empty, as no password was
    checked."""
    seconds = retry_after(request, credentials or getattr(request, "axes_credentials", None))
    if isinstance(original_response, TemplateResponse) and original_response.context_data is not None:
        context = dict(original_response.context_data, throttled=True, retry_after=seconds)
        if "form" in context:
            context["form"] = type(context["form"])(request)
        response = TemplateResponse(request, original_response.template_name, context, status=429)
        response.render()  # a middleware's answer: Django rendered the view's already
    else:
        message = ngettext(
            "Too many failed logins. Try again in %(seconds)s second.",
            "Too many failed logins. Try again in %(seconds)s seconds.",
            seconds,
        ) % {"seconds": seconds}
        response = HttpResponse(message, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response


def locked_out(request):
    """Whether axes refused this request's login, or its failure reached the limit."""
    return bool(getattr(request, "axes_locked_out", False))


def throttled(request):
    """The REST API's answer to a locked-out login: 429 `throttled` with
    Retry-After (main/api/errors.py)."""
    return exceptions.Throttled(wait=retry_after(request, getattr(request, "axes_credentials", None)))


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic, as the chapter has it, behind the login throttle: a
    locked-out request is answered 429, not 401."""

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            if locked_out(request):
                raise throttled(request) from None
            raise
