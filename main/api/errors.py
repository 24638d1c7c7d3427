"""Every error the mobile API answers: JSON with `detail` and a stable
`code`, whatever the request asked for (its Accept header, `?format=`) and
wherever it failed: in a view (exception_handler), or in Django before any
view took it (the handlers booktime/urls.py names, for /mobile-api/ paths)."""

import logging
import traceback

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404, JsonResponse
from django.utils.translation import gettext, gettext_noop
from django.utils.translation import gettext_lazy as _
from django.views import defaults
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rest_framework import exceptions, serializers, status, views
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from main.infra.answers import RETRY_AFTER_SECONDS, UNAVAILABLE
from main.infra.db import unreachable

logger = logging.getLogger(__name__)

# The `detail` of main.infra.answers.UNAVAILABLE, which knows no language: translated here.
gettext_noop("Temporarily unavailable, try again shortly.")

MOBILE_API = "/mobile-api/"


class Refused(exceptions.APIException):
    """A request a view refuses for what it says, with the code that says
    why and any more keys for the answer; raised rather than answered, so
    that it is JSON as every error is."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail, code, status_code=None, **extra):
        super().__init__(detail, code)
        if status_code is not None:
            self.status_code = status_code
        self.extra = extra


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The request body is too large.")
    default_code = "too_large"


class TooManyFields(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Too many parameters in the query string or the body.")
    default_code = "too_many_fields"


class BadRequest(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("Bad request.")
    default_code = "bad_request"


class ErrorSerializer(serializers.Serializer):
    """Every error the mobile API answers: a message and a stable code."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Per-field messages, for invalid input.")


def exception_handler(exc, context):
    """DRF's answer, plus a machine-readable `code` next to `detail`; 503
    `unavailable` while PostgreSQL or Redis (the send throttle's counts)
    cannot be reached; always as JSON."""
    request = context.get("request")
    response = _answer(exc, context)
    if response is not None and request is not None:
        # An error is JSON even on a view that answers in another format
        # (the schema's YAML, the docs' HTML, the browsable API).
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
    return response


def _answer(exc, context):
    redis_down = isinstance(exc, (RedisConnectionError, RedisTimeoutError))
    if redis_down or unreachable(exc):
        logger.warning("%s: %s unavailable", context["request"].path, "Redis" if redis_down else "database")
        return Response(
            {**UNAVAILABLE, "detail": gettext(UNAVAILABLE["detail"])},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    exc = client_error(exc) or _as_api_exception(exc)
    response = views.exception_handler(exc, context)
    if isinstance(exc, exceptions.ValidationError) and response is not None and "detail" not in response.data:
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"detail": gettext("Invalid input."), "code": "invalid", "errors": errors}
        return response
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        codes = exc.get_codes() if hasattr(exc, "get_codes") else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
        response.data.update(getattr(exc, "extra", {}))
    return response


def client_error(exc):
    """The API's answer to an exception that is the client's doing although
    no APIException says so, or None: what Django finds suspicious in a
    request (too large, too many fields), and whatever reading the body
    raised (JSON nested past the parser's depth, a charset that decodes
    nothing)."""
    if isinstance(exc, RequestDataTooBig):
        return TooLarge()
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):
        return TooManyFields()
    if isinstance(exc, SuspiciousOperation):
        return BadRequest()
    if not isinstance(exc, exceptions.APIException) and _raised_parsing(exc):
        return exceptions.ParseError(gettext("The body could not be parsed."))
    return None


def _as_api_exception(exc):
    """Django's 404 and 403 as DRF's (as DRF's own handler does, but with
    their codes, and without the message a lookup put in them)."""
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied()
    return exc


def _raised_parsing(exc):
    """Whether `exc` came out of DRF's parsing of the request body."""
    return any(frame.f_code is Request._parse.__code__ for frame, _ in traceback.walk_tb(exc.__traceback__))


# --- Django's answers for a /mobile-api/ path no view took ---------------------------


def _api(request):
    return request.path.startswith(MOBILE_API)


def bad_request(request, exception):
    if _api(request):
        return JsonResponse({"detail": str(BadRequest.default_detail), "code": "bad_request"}, status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if _api(request):
        detail = exceptions.PermissionDenied.default_detail
        return JsonResponse({"detail": str(detail), "code": "permission_denied"}, status=403)
    return defaults.permission_denied(request, exception)


def not_found(request, exception):
    if _api(request):
        return JsonResponse({"detail": str(exceptions.NotFound.default_detail), "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _api(request):
        return JsonResponse({"detail": gettext("Server error."), "code": "server_error"}, status=500)
    return defaults.server_error(request)
