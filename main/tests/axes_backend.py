"""The login throttle's first backend, for the test suite: Django's test
client logs in (`client.login()`) without a request, which axes' backend
refuses as a way around the throttle. Such a login has no client to count;
every login with a request is throttled as in production."""

from axes.backends import AxesStandaloneBackend


class AxesBackend(AxesStandaloneBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
