"""The admin site: CDP Stage's titles and a dashboard on the index page."""

from django.contrib import admin

from cdpstage.dashboard import dashboard_context


class CdpStageAdminSite(admin.AdminSite):
    site_header = "CDP Stage"
    site_title = "CDP Stage"
    index_title = "Dashboard"
    # The app list sidebar takes 300 px of every page: at 1280 px the guest list's columns
    # would not fit beside its filters. The index and the breadcrumbs lead everywhere.
    enable_nav_sidebar = False

    def index(self, request, extra_context=None):
        context = {"dashboard": dashboard_context(request.user), **(extra_context or {})}
        return super().index(request, extra_context=context)
