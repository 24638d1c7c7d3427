from django.contrib.auth import views as auth_views
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .api import conversations as conversations
from .api import views as api
from .web import views as web

urlpatterns = [
    path("", web.home, name="home"),
    path("login/", web.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("my-orders/", web.my_orders, name="my_orders"),
    path("customer-service/", web.dashboard, name="cs_main"),
    path("customer-service/<int:order_id>/", web.room, name="cs_chat"),
    path("mobile-api/auth/", api.obtain_auth_token, name="mobile_token"),
    path("mobile-api/logout/", api.logout, name="mobile_logout"),
    path("mobile-api/my-orders/", api.my_orders, name="mobile_my_orders"),
    path("mobile-api/conversations/", conversations.conversation_list, name="mobile_conversations"),
    path("mobile-api/conversations/<int:order_id>/", conversations.conversation_detail, name="mobile_conversation"),
    path(
        "mobile-api/conversations/<int:order_id>/messages/",
        conversations.conversation_messages,
        name="mobile_conversation_messages",
    ),
    path("mobile-api/conversations/<int:order_id>/read/", conversations.conversation_read, name="mobile_read"),
    path("mobile-api/conversations/<int:order_id>/claim/", conversations.conversation_claim, name="mobile_claim"),
    path("mobile-api/conversations/<int:order_id>/release/", conversations.conversation_release, name="mobile_release"),
    path("mobile-api/conversations/<int:order_id>/assign/", conversations.conversation_assign, name="mobile_assign"),
    path("mobile-api/conversations/<int:order_id>/resolve/", conversations.conversation_resolve, name="mobile_resolve"),
    path("mobile-api/conversations/<int:order_id>/reopen/", conversations.conversation_reopen, name="mobile_reopen"),
    path("mobile-api/schema/", SpectacularAPIView.as_view(), name="mobile_schema"),
    path("mobile-api/docs/", SpectacularSwaggerView.as_view(url_name="mobile_schema"), name="mobile_docs"),
]
