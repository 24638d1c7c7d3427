from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from django.views.i18n import JavaScriptCatalog
from django.views.static import serve

urlpatterns = [
    path("admin/", admin.site.urls),
    # The language switcher posts to i18n/setlang/ (Django's set_language).
    path("i18n/", include("django.conf.urls.i18n")),
    # The pages' scripts' strings in the reader's language: gettext() and friends in JavaScript.
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("", include("main.urls")),
]

if settings.SERVE_MEDIA:
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]

# Django's own answers (no view took the path, a request refused before one,
# a crash): JSON in the API's error shape under /mobile-api/, pages elsewhere.
handler400 = "main.api.errors.bad_request"
handler403 = "main.api.errors.permission_denied"
handler404 = "main.api.errors.not_found"
handler500 = "main.api.errors.server_error"
