"""Every error the mobile API answers: JSON with `detail` and a stable `code`."""

import logging

from rest_framework import exceptions, serializers, status, views
from rest_framework.response import Response

from main.infra.answers import RETRY_AFTER_SECONDS, UNAVAILABLE
from main.infra.db import unreachable

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
            UNAVAILABLE,
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    response = views.exception_handler(exc, context)
    if isinstance(exc, exceptions.ValidationError) and response is not None and "detail" not in response.data:
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = {"detail": "Invalid input.", "code": "invalid", "errors": errors}
        return response
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        codes = exc.get_codes() if hasattr(exc, "get_codes") else None
        response.data["code"] = codes if isinstance(codes, str) else "error"
    return response
