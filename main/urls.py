from django.contrib.auth import views as auth_views
from django.urls import path

from .api import conversations as conversations
from .api import schema
from .api import views as api
from .web import views as web

urlpatterns = [
    path("", web.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),  # behind the login throttle (axes)
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
    *(
        path(f"mobile-api/conversations/<int:order_id>/{action}/", view, name=f"mobile_{action}")
        for action, view in conversations.ACTIONS.items()
    ),
    path("mobile-api/schema/", schema.SchemaView.as_view(), name="mobile_schema"),
    path("mobile-api/docs/", schema.DocsView.as_view(url_name="mobile_schema"), name="mobile_docs"),
]
