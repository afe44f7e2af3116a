"""The job dashboard's entry in the admin: django-rq's, with its pages behind `operator_only`."""

from django.contrib import admin
from django.urls import path
from django_rq import stats_views
from django_rq.admin import QueueAdmin
from django_rq.models import Dashboard

from cdpstage.job_dashboard import OPERATE_JOB_QUEUES, dashboard_urlpatterns, operator_only


class JobDashboardAdmin(QueueAdmin):
    """Listed on the index for Operators only; every page checks the permission itself."""

    def has_module_permission(self, request) -> bool:
        return request.user.has_perm(OPERATE_JOB_QUEUES)

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(OPERATE_JOB_QUEUES)

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.has_perm(OPERATE_JOB_QUEUES)

    def get_urls(self):
        # The index links the changelist name: the dashboard's front page, behind the guard too.
        changelist = path(
            "",
            operator_only(self.admin_site, stats_views.stats),
            name=f"{self.opts.app_label}_{self.opts.model_name}_changelist",
        )
        return [*dashboard_urlpatterns(self.admin_site), changelist]


# django_rq.admin registered its own (staff-only) version first: INSTALLED_APPS lists it earlier.
if admin.site.is_registered(Dashboard):
    admin.site.unregister(Dashboard)
admin.site.register(Dashboard, JobDashboardAdmin)
