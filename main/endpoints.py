"""The mobile app's REST API (Django REST framework), and its OpenAPI
description (drf-spectacular; the tracker, a Channels consumer, is added to
it by hand in add_tracker_to_schema)."""

import functools
import logging
from urllib.parse import urljoin

from django.db import transaction
from drf_spectacular.authentication import BasicScheme
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status, views
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.decorators import api_view, permission_classes
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import models
from .api_auth import LoginAttemptThrottle
from .chat import close_token_sockets
from .db import RETRY_AFTER_SECONDS, unreachable

MOBILE_API = "/mobile-api/"

logger = logging.getLogger(__name__)


class ErrorSerializer(serializers.Serializer):
    """Every error the mobile API answers: a message and a stable code."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Per-field messages, for invalid input.")


def exception_handler(exc, context):
    """DRF's answer, plus a machine-readable `code` next to `detail`; 503
    `unavailable` while PostgreSQL cannot be reached."""
    if unreachable(exc):
        logger.warning("%s: database unavailable", context["request"].path)
        return Response(
            {"detail": "Temporarily unavailable, try again shortly.", "code": "unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    response = views.exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        codes = exc.get_codes() if hasattr(exc, "get_codes") else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response


def errors(*codes):
    return OpenApiResponse(ErrorSerializer, description=", ".join(codes))


class ThrottledBasicScheme(BasicScheme):
    """The schema's `basicAuth` is our throttled HTTP Basic."""

    target_class = "main.api_auth.ThrottledBasicAuthentication"


# --- Login and logout ----------------------------------------------------------


class ObtainToken(views.APIView):
    """Log in with email and password; answers the user's token."""

    authentication_classes = ()
    permission_classes = ()
    parser_classes = (JSONParser, FormParser, MultiPartParser)
    throttle_classes = (LoginAttemptThrottle,)

    @extend_schema(
        operation_id="mobile_login",
        tags=["mobile-api"],
        request=inline_serializer(
            "Login",
            {"username": serializers.CharField(help_text="The user's email"), "password": serializers.CharField()},
        ),
        responses={
            200: inline_serializer("TokenAnswer", {"token": serializers.CharField()}),
            400: errors("invalid_credentials", "invalid"),
            429: errors("throttled"),
        },
        auth=[],
    )
    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            if "non_field_errors" in serializer.errors:
                detail = {"detail": "Unable to log in with these credentials.", "code": "invalid_credentials"}
            else:
                detail = {"detail": "Username and password are required.", "code": "invalid"}
            return Response(dict(detail, errors=serializer.errors), status=status.HTTP_400_BAD_REQUEST)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})


obtain_auth_token = ObtainToken.as_view()


@extend_schema(
    operation_id="mobile_logout",
    tags=["mobile-api"],
    request=None,
    responses={204: OpenApiResponse(description="The token is revoked"), 401: errors("not_authenticated")},
)
@api_view(["POST"])
@permission_classes((IsAuthenticated,))
def logout(request):
    """Revoke the caller's token (a lost phone is cut off); log in again for a
    new one. Chat sockets opened with it are closed (code 4401)."""
    tokens = Token.objects.filter(user=request.user)
    keys = list(tokens.values_list("key", flat=True))
    tokens.delete()
    for key in keys:  # once the delete is committed: a socket joining then finds the token gone
        transaction.on_commit(functools.partial(close_token_sockets, key))
    return Response(status=status.HTTP_204_NO_CONTENT)


# --- My orders -----------------------------------------------------------------


class MobileOrderSerializer(serializers.Serializer):
    """One order as the app reads it (the schema of my-orders' answer; the
    view builds the same dicts itself, see mobile_order)."""

    id = serializers.IntegerField()
    image = serializers.URLField(allow_null=True, help_text="Absolute URL of the first product's thumbnail")
    summary = serializers.CharField(help_text='e.g. "2 x The B Book, 1 x The book of A"')
    price = serializers.FloatField(help_text="Total price, e.g. 28.0")


def mobile_order(order, site):
    """One of the dicts of Order.objects.summaries() as MobileOrderSerializer
    describes it; `site`: the request's absolute URL of "/". Built by hand: a
    serializer's fields cost more than the query for a long order history."""
    thumbnail = order["thumbnail"]
    return {
        "id": order["id"],
        "image": urljoin(site, models.ProductImage.thumbnail.field.storage.url(thumbnail)) if thumbnail else None,
        "summary": order["summary"],
        "price": float(order["total_price"]),
    }


@extend_schema(
    operation_id="mobile_my_orders",
    tags=["mobile-api"],
    responses={200: MobileOrderSerializer(many=True), 401: errors("not_authenticated")},
)
@api_view(["GET"])
@permission_classes((IsAuthenticated,))
def my_orders(request):
    """The caller's orders, newest first."""
    orders = models.Order.objects.filter(user=request.user).order_by("-date_added", "-pk").summaries()
    site = request.build_absolute_uri("/")  # once: it checks the host against ALLOWED_HOSTS
    return Response([mobile_order(order, site) for order in orders])


# --- OpenAPI -------------------------------------------------------------------


def only_mobile_api(endpoints, **kwargs):
    return [e for e in endpoints if e[0].startswith(MOBILE_API)]


def add_tracker_to_schema(result, generator, request, public):
    """The tracker is a Channels consumer, which drf-spectacular cannot see."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    result["components"].setdefault("securitySchemes", {})["tokenQuery"] = {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "The token as a query parameter, as the mobile app sends it.",
    }
    result["paths"][MOBILE_API + "my-orders/{order_id}/tracker/"] = {
        "get": {
            "operationId": "mobile_order_tracker",
            "summary": "The courier's shipment status for one of the caller's orders",
            "description": (
                "The courier's answer, passed through: `application/json` if the courier sent valid JSON, "
                "otherwise `text/plain`. Someone else's order, an unknown order and no login all get the "
                "same 404. The courier is asked within a timeout (COURIER_API_TIMEOUT)."
            ),
            "tags": ["mobile-api"],
            "parameters": [{"name": "order_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
            "security": [{"tokenAuth": []}, {"tokenQuery": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": "The courier's status for the order",
                    "content": {"text/plain": {"schema": {"type": "string"}}, "application/json": {"schema": {}}},
                },
                "404": {"description": "not_found: not your order, no such order, or not logged in", "content": error},
                "502": {"description": "courier_unavailable: the courier failed or answered garbage", "content": error},
                "504": {"description": "courier_timeout: the courier did not answer in time", "content": error},
            },
        }
    }
    return result
