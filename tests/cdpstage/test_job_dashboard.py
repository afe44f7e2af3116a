"""The job dashboard: Operators only, and a pickle payload planted in Redis is never loaded."""

from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.messages.storage.cookie import CookieStorage
from django.urls import reverse
from django_rq import views as django_rq_views
from django_rq.models import Dashboard
from django_rq.queues import get_queue_by_index
from rq.job import Job
from rq.serializers import DefaultSerializer

from cdpstage.admin import JobDashboardAdmin

pytestmark = pytest.mark.django_db

QUEUE_INDEX = 0  # the dashboard's first queue (django-rq orders them itself)


class TouchOnUnpickle:
    """What an attacker plants: unpickling it creates `marker` (a harmless stand-in for a shell)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant_pickled_failed_job(marker: Path, job_id: str = "planted") -> Job:
    """A job hash written straight to Redis with pickle, payload in its data and its meta."""
    queue = get_queue_by_index(QUEUE_INDEX)
    job = Job.create(
        "os.system",
        args=[TouchOnUnpickle(marker)],
        connection=queue.connection,
        serializer=DefaultSerializer,
        id=job_id,
        origin=queue.name,
    )
    job.meta = {"payload": TouchOnUnpickle(marker)}
    job.save()
    queue.failed_job_registry.add(job, ttl=600)
    return job


def dashboard_urls(job_id: str) -> list[str]:
    """One URL of every dashboard page that takes at most a queue index and a job id."""
    urls = []
    model_admin = admin.site.get_model_admin(Dashboard)
    assert isinstance(model_admin, JobDashboardAdmin)
    for pattern in model_admin.get_urls():
        route = str(pattern.pattern)
        if "result_id" in route or "key>" in route or "scheduler" in route:
            continue
        kwargs = {}
        if "queue_index" in route:
            kwargs["queue_index"] = QUEUE_INDEX
        if "job_id" in route:
            kwargs["job_id"] = job_id
        urls.append(reverse(f"admin:{pattern.name}", kwargs=kwargs))
    return urls


def test_every_dashboard_page_refuses_staff_without_the_operator_permission(
    client, user_factory, clean_queues
):
    client.force_login(user_factory("staffer", is_staff=True, groups=("Auditor", "Approver")))

    urls = dashboard_urls("any-job")
    statuses = {url: client.get(url).status_code for url in urls}

    assert len(urls) >= 20
    assert set(statuses.values()) == {403}, statuses
    assert client.post(reverse("admin:django_rq_clear", args=[QUEUE_INDEX])).status_code == 403


def test_operator_and_superuser_reach_the_dashboard_and_only_they_see_its_link(
    client, user_factory, clean_queues
):
    operator = user_factory("operator", is_staff=True, groups=("Operator",))
    boss = user_factory("boss", is_staff=True, is_superuser=True)
    stager = user_factory("stager", is_staff=True, groups=("Stager",))
    home = reverse("admin:django_rq_home")

    for user in (operator, boss):
        client.force_login(user)
        assert client.get(home).status_code == 200
        assert reverse("admin:django_rq_dashboard_changelist") in client.get("/admin/").text
    client.force_login(stager)
    assert reverse("admin:django_rq_dashboard_changelist") not in client.get("/admin/").text
    assert client.get(reverse("admin:django_rq_dashboard_changelist")).status_code == 403


def test_django_rq_own_delete_failed_jobs_would_unpickle_the_planted_job(
    tmp_path, rf, user_factory, clean_queues
):
    """The attack this module closes: django-rq 4's view loads the failed jobs with pickle."""
    marker = tmp_path / "pwned"
    plant_pickled_failed_job(marker)
    request = rf.post("/")
    request.user = user_factory("boss", is_staff=True, is_superuser=True)
    request._messages = CookieStorage(request)
    request.current_app = "admin"

    django_rq_views.delete_failed_jobs(request, QUEUE_INDEX)

    assert marker.exists()


def test_no_dashboard_page_or_action_loads_a_planted_pickle(
    tmp_path, client, user_factory, clean_queues
):
    marker = tmp_path / "pwned"
    job = plant_pickled_failed_job(marker)
    client.force_login(user_factory("operator", is_staff=True, groups=("Operator",)))

    statuses = {url: client.get(url).status_code for url in dashboard_urls(job.id)}
    posts = [
        client.post(reverse("admin:django_rq_stop_job", args=[QUEUE_INDEX, job.id])),
        client.post(
            reverse("admin:django_rq_actions", args=[QUEUE_INDEX]),
            {"action": "stop", "job_ids": [job.id], "next_url": "https://elsewhere.example/"},
        ),
        client.post(
            reverse("admin:django_rq_confirm_action", args=[QUEUE_INDEX]),
            {"action": "delete", "_selected_action": [job.id]},
        ),
        client.post(reverse("admin:django_rq_delete_failed_jobs", args=[QUEUE_INDEX])),
    ]

    assert not marker.exists()
    assert 500 not in statuses.values(), statuses
    assert [p.status_code for p in posts] == [302, 302, 200, 302]
    assert posts[1]["Location"].startswith("/admin/")
    queue = get_queue_by_index(QUEUE_INDEX)
    assert queue.failed_job_registry.get_job_ids() == []
    assert not queue.connection.exists(job.key)
