"""Password attempts, throttled: on the mobile API and on the login page
(imported by DRF's settings, so it must not import DRF's views)."""

from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication, get_authorization_header
from rest_framework.throttling import SimpleRateThrottle


class LoginAttemptThrottle(SimpleRateThrottle):
    """Password attempts per client address (MOBILE_LOGIN_RATE): token logins
    and HTTP Basic requests share one budget."""

    scope = "mobile-login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginPageThrottle(LoginAttemptThrottle):
    """The same budget, for the login page (main/web/views.py): allow_request
    only looks, and count_failure counts a wrong password, so people who log
    in do not use up their address's budget."""

    def throttle_success(self):
        return True

    def count_failure(self):
        if self.rate is None:  # no limit
            return
        # As the count is now: other attempts may have been counted while
        # this one's password was checked.
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        super().throttle_success()


class ThrottledBasicAuthentication(BasicAuthentication):
    """HTTP Basic, as the chapter has it, but every request that carries a
    password counts against the login throttle, so it is no way around it."""

    def authenticate(self, request):
        scheme = get_authorization_header(request).split()[:1]
        if scheme and scheme[0].lower() == b"basic":
            throttle = LoginAttemptThrottle()
            if not throttle.allow_request(request, None):
                raise exceptions.Throttled(throttle.wait())
        return super().authenticate(request)
