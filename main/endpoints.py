"""The mobile app's REST API (Django REST framework)."""

from rest_framework.authtoken import views as authtoken_views
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from . import models

obtain_auth_token = authtoken_views.obtain_auth_token


@api_view()
@permission_classes((IsAuthenticated,))
def my_orders(request):
    orders = models.Order.objects.filter(user=request.user).order_by("-date_added").with_lines()
    return Response(
        [{"id": o.id, "image": o.mobile_thumb_url, "summary": o.summary, "price": o.total_price} for o in orders]
    )
