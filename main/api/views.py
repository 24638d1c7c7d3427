"""The mobile API's views: log in and out, my orders. (The tracker is a
Channels consumer: main/tracker/.)"""

from urllib.parse import urljoin

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status, views
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.decorators import api_view, permission_classes
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from main import access
from main.infra import known_devices, throttles
from main.models import ProductImage

from .schema import errors

# --- Login and logout ----------------------------------------------------------


class ObtainToken(views.APIView):
    """Log in with email and password; answers the user's token, and in the
    Known-Device header the note that spares this phone the account's lock
    when sent back (main/infra/known_devices.py)."""

    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()  # the login throttle is axes' (main/infra/throttles.py)
    parser_classes = (JSONParser, FormParser, MultiPartParser)

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
        parameters=[
            OpenApiParameter(
                known_devices.HEADER,
                str,
                OpenApiParameter.HEADER,
                description="The value an earlier login answered: this phone logs in while the account is locked.",
            ),
            OpenApiParameter(
                known_devices.HEADER,
                str,
                OpenApiParameter.HEADER,
                response=[200],
                description="Keep it, and send it back on later logins.",
            ),
        ],
        auth=[],
    )
    def post(self, request):
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            if throttles.locked_out(request):
                raise throttles.throttled(request)
            if "non_field_errors" in serializer.errors:
                detail = {"detail": gettext("Unable to log in with these credentials."), "code": "invalid_credentials"}
            else:
                detail = {"detail": gettext("Username and password are required."), "code": "invalid"}
            return Response(dict(detail, errors=serializer.errors), status=status.HTTP_400_BAD_REQUEST)
        user = serializer.validated_data["user"]
        token, _ = Token.objects.get_or_create(user=user)
        note = known_devices.note_for(request, user.get_username())
        return Response({"token": token.key}, headers={known_devices.HEADER: note})


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
    # Sockets opened with it hear of the delete once it is committed (main.access).
    Token.objects.filter(user=request.user).delete()
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
    describes it; `site`: the request's absolute URL of "/". Built by hand:
    a serializer's fields cost more than the query for a long order history."""
    thumbnail = order["thumbnail"]
    return {
        "id": order["id"],
        "image": urljoin(site, ProductImage.thumbnail.field.storage.url(thumbnail)) if thumbnail else None,
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
    orders = access.own_orders(request.user).order_by("-date_added", "-pk").summaries()
    site = request.build_absolute_uri("/")  # once: it checks the host against ALLOWED_HOSTS
    return Response([mobile_order(order, site) for order in orders])
