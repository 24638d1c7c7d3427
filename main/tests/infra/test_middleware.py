"""main.infra.middleware.OneThreadBelow: under ASGI, Django's middleware runs
in its sync mode, in the view's worker thread, not a thread switch per
middleware method."""

import threading

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpResponse
from django.test import AsyncClient
from django.urls import path
from django.utils.deprecation import MiddlewareMixin

seen = []  # (what, sync mode?, thread id) for the request being made


class RecordMode(MiddlewareMixin):
    """Like Django's own middleware (async-capable): the mode it is called in."""

    def __call__(self, request):
        seen.append(("middleware", not iscoroutinefunction(self), threading.get_ident()))
        return super().__call__(request)


def view(request):
    seen.append(("view", True, threading.get_ident()))
    return HttpResponse("ok")


urlpatterns = [path("mode/", view)]


async def test_django_middleware_runs_in_sync_mode_in_the_view_thread(settings):
    settings.ROOT_URLCONF = __name__
    # Among Django's own, just above ours.
    settings.MIDDLEWARE = settings.MIDDLEWARE[:-1] + [f"{__name__}.RecordMode", settings.MIDDLEWARE[-1]]
    seen.clear()
    response = await AsyncClient().get("/mode/")
    assert response.status_code == 200 and response.headers["X-Frame-Options"] == "DENY"
    assert [(what, sync) for what, sync, _ in seen] == [("middleware", True), ("view", True)]
    assert seen[0][2] == seen[1][2] != threading.get_ident()  # one worker thread, not the event loop's


def test_it_is_last_in_the_shipped_stack():
    assert settings.MIDDLEWARE[-1] == "main.infra.middleware.OneThreadBelow"
