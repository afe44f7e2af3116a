"""The worker: reconcilers run in maintenance (one failing does not stop the others), and only
the project's job functions run at all."""

import logging
from datetime import timedelta

import django_rq
import pytest
from rq import Callback
from rq.exceptions import StopRequested
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import now, utcformat

from batches.jobs import batch_build, on_job_failure
from cdpstage.worker import (
    CdpStageWorker,
    JobRefusedError,
    MaintenanceNoiseFilter,
    job_function,
    run_reconcilers,
)
from tests.processes import run_worker_burst

# run_reconcilers closes the process's database connections (a worker must not hand its
# socket to a forked work horse): allowed only outside a test transaction.
pytestmark = pytest.mark.django_db(transaction=True)

CALLS: list[str] = []


def reconciler_ok() -> None:
    CALLS.append("ok")


def reconciler_broken() -> None:
    CALLS.append("broken")
    raise RuntimeError("boom")


def reconciler_stopped() -> None:
    raise StopRequested()


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_run_reconcilers_goes_on_after_a_failing_one(settings, caplog):
    settings.RECONCILERS = [f"{__name__}.reconciler_broken", f"{__name__}.reconciler_ok"]

    run_reconcilers()

    assert CALLS == ["broken", "ok"]
    assert "Reconciler tests.cdpstage.test_worker.reconciler_broken failed" in caplog.text


def test_run_reconcilers_lets_a_shutdown_request_through(settings):
    # A SIGTERM during maintenance must stop the worker, not be logged as a failure.
    settings.RECONCILERS = [f"{__name__}.reconciler_stopped", f"{__name__}.reconciler_ok"]

    with pytest.raises(StopRequested):
        run_reconcilers()

    assert CALLS == []


def test_maintenance_lines_hidden_at_info_shown_at_debug():
    """RQ's every-pass "cleaning registries" lines: not at INFO (they bury the rest), at DEBUG."""
    noise = logging.LogRecord(
        "rq.worker", logging.INFO, __file__, 1, "Worker %s: cleaning group registries", ("w",), None
    )
    job = logging.LogRecord(
        "rq.worker", logging.INFO, __file__, 1, "%s: %s", ("imports", "job"), None
    )
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        assert MaintenanceNoiseFilter().filter(noise) is False
        assert MaintenanceNoiseFilter().filter(job) is True
        root.setLevel(logging.DEBUG)
        assert MaintenanceNoiseFilter().filter(noise) is True
        assert noise.levelname == "DEBUG"
    finally:
        root.setLevel(level)


@pytest.mark.parametrize(
    "dotted_name",
    [
        "os.system",
        "records.jobs.execute_run",  # imported into a job module, not one of its jobs
        "records.jobs.logging.getLogger",
        "records.jobs._private",
        "records.jobs",
        "",
    ],
)
def test_job_function_refuses_anything_but_a_job_module_function(dotted_name):
    with pytest.raises(JobRefusedError, match="not a CDP Stage job function"):
        job_function(dotted_name, job_id="j1")


def test_job_function_resolves_the_project_jobs():
    assert job_function("batches.jobs.batch_build", job_id="j1") is batch_build
    assert job_function("batches.jobs.on_job_failure", job_id="j1") is on_job_failure


def test_job_callbacks_go_through_the_allow_list(clean_queues):
    queue = django_rq.get_queue("imports")
    job = queue.create_job(
        "records.jobs.reconcile_import_runs",
        on_failure=Callback("os.system"),
        on_success=Callback("batches.jobs.on_job_failure"),
    )

    with pytest.raises(JobRefusedError):
        job.failure_callback  # noqa: B018 (the property resolves the function)
    assert job.success_callback is on_job_failure


def test_a_worker_refuses_and_reports_a_job_naming_os_system(tmp_path, clean_queues):
    """A JSON job naming `os.system`, as anyone who can write to Redis can enqueue it."""
    marker = tmp_path / "pwned"
    queue = django_rq.get_queue("imports")
    job = queue.enqueue("os.system", f"touch {marker}", job_id="planted-os-system")

    result = run_worker_burst("imports")

    assert not marker.exists()
    assert "Job planted-os-system refused: 'os.system' is not a CDP Stage job function" in (
        result.stdout + result.stderr
    )
    assert queue.failed_job_registry.get_job_ids() == ["planted-os-system"]
    job.refresh()
    assert "JobRefusedError" in job.latest_result().exc_string


def _worker_with_scheduler(queue_name: str) -> CdpStageWorker:
    queue = django_rq.get_queue("imports")
    worker = CdpStageWorker([queue_name], connection=queue.connection, maintenance_interval=10)
    worker.scheduler = RQScheduler([queue_name], connection=queue.connection)
    return worker


@pytest.mark.parametrize(("silent", "released"), [(30, True), (2, False)])
def test_a_silent_schedulers_lock_is_released_a_beating_ones_is_kept(silent, released):
    worker = _worker_with_scheduler("lock-probe")
    redis = worker.connection
    lock = RQScheduler.get_locking_key("lock-probe")
    beat = now() - timedelta(seconds=silent)
    redis.set(lock, "other-scheduler", ex=61)
    redis.hset(SCHEDULER_KEY_TEMPLATE % "other-scheduler", "last_heartbeat", utcformat(beat))
    try:
        worker.release_dead_scheduler_locks()
        assert (redis.get(lock) is None) is released
    finally:
        redis.delete(lock, SCHEDULER_KEY_TEMPLATE % "other-scheduler")


def test_an_idle_worker_wakes_up_for_every_maintenance_pass():
    worker = _worker_with_scheduler("lock-probe")
    assert worker.worker_ttl - 15 > 10
    assert worker.dequeue_timeout == 10
