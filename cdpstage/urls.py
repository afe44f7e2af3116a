"""URL routes: the admin is the whole UI (the job dashboard is an admin page, cdpstage.admin)."""

from django.contrib import admin
from django.templatetags.static import static
from django.urls import path
from django.utils.functional import lazy
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Browsers ask for /favicon.ico whatever the page declares; the admin pages link the SVG.
    path(
        "favicon.ico",
        RedirectView.as_view(url=lazy(static, str)("cdpstage/favicon.svg"), permanent=True),
    ),
    path("admin/", admin.site.urls),
]
