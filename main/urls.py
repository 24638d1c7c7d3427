from django.contrib.auth import views as auth_views
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import endpoints, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("my-orders/", views.my_orders, name="my_orders"),
    path("customer-service/", views.dashboard, name="cs_main"),
    path("customer-service/<int:order_id>/", views.room, name="cs_chat"),
    path("mobile-api/auth/", endpoints.obtain_auth_token, name="mobile_token"),
    path("mobile-api/logout/", endpoints.logout, name="mobile_logout"),
    path("mobile-api/my-orders/", endpoints.my_orders, name="mobile_my_orders"),
    path("mobile-api/schema/", SpectacularAPIView.as_view(), name="mobile_schema"),
    path("mobile-api/docs/", SpectacularSwaggerView.as_view(url_name="mobile_schema"), name="mobile_docs"),
]
