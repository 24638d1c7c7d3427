"""The product's URLs plus B for the REST row: the view a Django developer
would write for "my orders", a plain JsonResponse behind the same DRF token
authentication, no serializer."""

from django.http import JsonResponse
from django.urls import include, path
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from main import models


def plain_orders(request):
    try:
        found = TokenAuthentication().authenticate(request)
    except AuthenticationFailed:
        found = None
    if found is None:
        return JsonResponse({"detail": "Authentication credentials were not provided."}, status=401)
    orders = models.Order.objects.filter(user=found[0]).order_by("-date_added", "-pk")
    return JsonResponse(list(orders.values("id", "status", "date_added")), safe=False)


urlpatterns = [
    path("bench/plain-orders/", plain_orders),
    path("", include("booktime.urls")),
]
