"""django-rq's job dashboard, closed to everyone but Operators and never loading pickle.

Redis is a trust boundary (DESIGN.md section 7): whoever can write to it can plant a job hash,
so nothing on these pages may unpickle what Redis holds. django-rq 4 reads jobs with the
queue's serializer (JSON here) except in three places, replaced below: "delete failed jobs"
(`Job.fetch_many` without a serializer), "stop job" and the "stop" bulk action
(`send_stop_job_command` without a serializer), and the RQ-cron pages (RQ's cron pickles;
CDP Stage does not use it). Every page needs the `django_rq.admin` permission (the Operator
role; superusers have it), not merely staff status: the dashboard can empty a queue.
"""

from collections.abc import Callable
from functools import wraps

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import URLPattern, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django_rq import urls as django_rq_urls
from django_rq import views as django_rq_views
from django_rq.queues import get_queue_by_index
from rq.command import send_stop_job_command
from rq.exceptions import DeserializationError, InvalidJobOperation, NoSuchJobError
from rq.queue import Queue

OPERATE_JOB_QUEUES = "django_rq.admin"

View = Callable[..., HttpResponse]


def delete_failed_jobs(request: HttpRequest, queue_index: int) -> HttpResponse:
    """Delete every job of the failed registry by id: nothing stored with them is loaded."""
    if request.method != "POST":
        return django_rq_views.delete_failed_jobs(request, queue_index)  # confirmation: a count
    queue = get_queue_by_index(queue_index)
    registry = queue.failed_job_registry
    job_ids = registry.get_job_ids()
    for job_id in job_ids:
        registry.remove(job_id)
        # A bare Job (no fetch): delete() needs only the id to drop the hash and its keys.
        queue.job_class(job_id, connection=queue.connection, serializer=queue.serializer).delete(
            remove_from_queue=False
        )
    messages.info(request, f"Deleted {len(job_ids)} failed jobs.")
    return redirect(django_rq_views.rq_viewname(request, "home"))


def stop_jobs(queue: Queue, job_ids: list[str]) -> tuple[list[str], list[str]]:
    """Ask the workers running these jobs to stop them; the jobs are read as JSON."""
    stopped, not_stopped = [], []
    for job_id in job_ids:
        try:
            send_stop_job_command(queue.connection, job_id, serializer=queue.serializer)
        except (NoSuchJobError, InvalidJobOperation, DeserializationError, ValueError):
            not_stopped.append(job_id)
        else:
            stopped.append(job_id)
    return stopped, not_stopped


@require_POST
def stop_job(request: HttpRequest, queue_index: int, job_id: str) -> HttpResponse:
    """Stop one running job."""
    stopped, _ = stop_jobs(get_queue_by_index(queue_index), [job_id])
    if stopped:
        messages.info(request, f"Asked the worker to stop {job_id}.")
    else:
        messages.error(request, f"Could not stop {job_id}: it is not running.")
    return redirect(django_rq_views.rq_viewname(request, "job_detail"), queue_index, job_id)


def actions(request: HttpRequest, queue_index: int) -> HttpResponse:
    """The bulk actions: "stop" here (JSON-safe), delete and requeue as django-rq does them."""
    if request.method != "POST" or request.POST.get("action") != "stop":
        return django_rq_views.actions(request, queue_index)
    stopped, not_stopped = stop_jobs(
        get_queue_by_index(queue_index), request.POST.getlist("job_ids")
    )
    if stopped:
        messages.info(request, f"Asked the workers to stop {len(stopped)} jobs.")
    if not_stopped:
        messages.error(request, f"{len(not_stopped)} jobs could not be stopped.")
    next_url = request.POST.get("next_url", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse(django_rq_views.rq_viewname(request, "jobs"), args=[queue_index])
    return redirect(next_url)


def rq_cron_not_used(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    """RQ's cron stores its jobs with pickle; CDP Stage schedules through its reconcilers."""
    raise Http404("CDP Stage does not use RQ's cron scheduler.")


# django-rq's URL names whose views are replaced (the rest are django-rq's own).
REPLACED_VIEWS: dict[str, View] = {
    "delete_failed_jobs": delete_failed_jobs,
    "stop_job": stop_job,
    "actions": actions,
    "cron_scheduler_detail": rq_cron_not_used,
    "cron_job_detail": rq_cron_not_used,
}


def operator_only(admin_site: AdminSite, view: View) -> View:
    """Admin login (active staff), then the Operator permission."""

    @wraps(view)
    def operator_view(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        request.current_app = admin_site.name
        if not request.user.has_perm(OPERATE_JOB_QUEUES):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    # django-rq's templates carry inline scripts (select all, confirm) without our nonce.
    return never_cache(
        csp_replace({"script-src": [SELF, UNSAFE_INLINE]})(admin_site.admin_view(operator_view))
    )


def dashboard_urlpatterns(admin_site: AdminSite) -> list[URLPattern]:
    """Every django-rq page under the admin, each behind `operator_only`.

    The API views (stats JSON, Prometheus metrics) get the same guard: their bearer-token
    access is not configured here, and staff status alone must not read the queues.
    """
    prefix = "django_rq_"
    patterns = django_rq_urls.get_api_urlpatterns(
        name_prefix=prefix
    ) + django_rq_urls.get_admin_urlpatterns(name_prefix=prefix)
    return [
        URLPattern(
            pattern.pattern,
            operator_only(
                admin_site, REPLACED_VIEWS.get(pattern.name.removeprefix(prefix), pattern.callback)
            ),
            pattern.default_args,
            pattern.name,
        )
        for pattern in patterns
    ]
