from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("my-orders/", views.my_orders, name="my_orders"),
    path("customer-service/<int:order_id>/", views.room, name="cs_chat"),
]
