from django.contrib.auth import views as auth_views
from django.urls import path

from . import endpoints, views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("my-orders/", views.my_orders, name="my_orders"),
    path("customer-service/", views.dashboard, name="cs_main"),
    path("customer-service/<int:order_id>/", views.room, name="cs_chat"),
    path("mobile-api/auth/", endpoints.obtain_auth_token, name="mobile_token"),
    path("mobile-api/my-orders/", endpoints.my_orders, name="mobile_my_orders"),
]
