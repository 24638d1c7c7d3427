"""The mobile API's OpenAPI description (drf-spectacular): served at
/mobile-api/schema/, browsable at /mobile-api/docs/."""

from django.conf import settings
from drf_spectacular.authentication import BasicScheme
from drf_spectacular.utils import OpenApiResponse
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .errors import MOBILE_API, ErrorSerializer


class SchemaView(SpectacularAPIView):
    """The description. The API has one version: the view's own, rather than
    a `?version=` from the query, which drf-spectacular would write into a
    response header as it came (a NUL or a newline there breaks the answer)."""

    api_version = settings.SPECTACULAR_SETTINGS["VERSION"]


class DocsView(SpectacularSwaggerView):
    """The Swagger UI page, in a template of ours: the page's language, a
    main landmark, colours at AA contrast. OPTIONS is refused (405, JSON):
    the page's HTML renderer has no template for DRF's description of a view."""

    metadata_class = None
    template_name = "main/api_docs.html"


def errors(*codes):
    return OpenApiResponse(ErrorSerializer, description=", ".join(codes))


class ThrottledBasicScheme(BasicScheme):
    """The schema's `basicAuth` is our throttled HTTP Basic."""

    target_class = "main.infra.throttles.ThrottledBasicAuthentication"


def only_mobile_api(endpoints, **kwargs):
    """Preprocessing hook: the schema describes the mobile API alone."""
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
