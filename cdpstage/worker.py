"""The RQ worker and job classes every CDP Stage worker runs: only the project's job functions,
a short maintenance cadence and our reconcilers."""

import inspect
import logging
from importlib import import_module
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string
from rq import Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.scripts import release_lock
from rq.serializers import JSONSerializer
from rq.utils import as_text, now, utcparse

logger = logging.getLogger(__name__)

# A scheduler renews its queue lock and its heartbeat every second; one silent this long is
# dead or stopped (SIGSTOP, a frozen host), although its lock would hold for 61 s more.
SCHEDULER_SILENT_SECONDS = 10

# RQ logs these at INFO on every maintenance pass (every RQ_MAINTENANCE_INTERVAL seconds, on
# every worker): at INFO they bury what matters (the demo passwords, job lines) in noise.
MAINTENANCE_MESSAGES = (
    "Worker %s: cleaning registries for queue: %s",
    "Worker %s: cleaning group registries",
)


class MaintenanceNoiseFilter(logging.Filter):
    """Demote RQ's per-pass maintenance INFO lines to DEBUG (shown at DJANGO_LOG_LEVEL=DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "rq.worker" or record.msg not in MAINTENANCE_MESSAGES:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().getEffectiveLevel() <= logging.DEBUG


class JobRefusedError(Exception):
    """A job names a function that is not one of CDP Stage's jobs; it is never imported."""


def job_function(dotted_name: str | None, *, job_id: str) -> Any:
    """The function `dotted_name` names, if it is a public function of one of RQ_JOB_MODULES.

    Redis is a trust boundary: anyone who can write to it can enqueue `os.system`. The name is
    checked before anything is imported (importing a module runs its code), and the function
    must be defined in that module, not imported into it (`records.jobs.import_module`).
    """
    module_name, _, name = (dotted_name or "").rpartition(".")
    if module_name in settings.RQ_JOB_MODULES and name.isidentifier() and not name.startswith("_"):
        func = getattr(import_module(module_name), name, None)
        if inspect.isfunction(func) and func.__module__ == module_name:
            return func
    logger.error("Job %s refused: %r is not a CDP Stage job function", job_id, dotted_name)
    raise JobRefusedError(
        f"Job {job_id} refused: {dotted_name!r} is not a CDP Stage job function "
        f"(allowed: the public functions of {', '.join(settings.RQ_JOB_MODULES)})."
    )


class CdpStageJob(Job):
    """An RQ job that resolves its function and callbacks through the allow-list, and sends no
    webhooks (a job hash may name any URL; CDP Stage never registers one).

    The check sits where RQ imports the function, so a refused job fails like any other: its
    reason in the failed registry and the worker log, the worker going on with the next job.
    """

    @property
    def func(self) -> Any:
        if self.instance is not None:
            # A bound method of a pickled/decoded object: never one of ours.
            raise JobRefusedError(f"Job {self.id} refused: it names a method of an object.")
        return job_function(self.func_name, job_id=self.id)

    @property
    def success_callback(self) -> Any:
        return self._allowed_callback(self._success_callback_name)

    @property
    def failure_callback(self) -> Any:
        return self._allowed_callback(self._failure_callback_name)

    @property
    def stopped_callback(self) -> Any:
        return self._allowed_callback(self._stopped_callback_name)

    def _allowed_callback(self, dotted_name: str | None) -> Any:
        return job_function(dotted_name, job_id=self.id) if dotted_name else None

    def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
        del status, exc_string  # RQ's signature; nothing is sent, so neither is used
        if self.webhooks:
            logger.warning("Job %s: its webhooks are ignored", self.id)


class CdpStageWorker(Worker):
    """An RQ worker that also runs the app's reconcilers during its maintenance passes.

    Why here and not in RQ's cron: RQ's cron always pickles (our queues are JSON) and has no
    leader election; maintenance already runs on every worker of every host, and each
    reconciler is idempotent and takes its own database lock, so running it on every worker is
    safe. django-rq's `rqworker` has no `--maintenance-interval` option, hence the override.
    Its jobs are CdpStageJob: only the project's job functions run.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("maintenance_interval", settings.RQ_MAINTENANCE_INTERVAL)
        # Whatever `--job-class` or `--serializer` say (rqworker defaults to pickle): the
        # allow-list and JSON are not options a command line can drop.
        kwargs["job_class"] = CdpStageJob
        kwargs["serializer"] = JSONSerializer
        super().__init__(*args, **kwargs)

    @property
    def dequeue_timeout(self) -> int:
        # An idle worker runs maintenance only when its blocking dequeue returns (worker_ttl -
        # 15 s): return every maintenance interval, so the reconcilers run that often.
        return max(1, min(super().dequeue_timeout, int(self.maintenance_interval)))

    def run_maintenance_tasks(self) -> None:
        self.release_dead_scheduler_locks()
        super().run_maintenance_tasks()
        run_reconcilers()

    def release_dead_scheduler_locks(self) -> None:
        """Free a queue's scheduler lock whose holder stopped beating, so this worker's
        scheduler takes it in this pass (RQ would wait out the lock's 61 s, then a pass).

        Scheduled work (the next poll, a retry) depends on it: with the holder killed or
        stopped, nothing moves it to its queue. The release is RQ's own compare-and-delete, so
        a holder that beat in the meantime keeps its lock; a stopped one that wakes up finds
        the lock taken and drops it (RQScheduler.heartbeat).
        """
        if self.scheduler is None:
            return
        for queue in self.queues:
            key = RQScheduler.get_locking_key(queue.name)
            holder = self.connection.get(key)
            if holder is None:
                continue
            holder = as_text(holder)
            if holder == self.scheduler.name:
                continue
            beat = self.connection.hget(SCHEDULER_KEY_TEMPLATE % holder, "last_heartbeat")
            if beat is None:
                continue  # starting (its lock is taken before its first beat) or expired
            silent = (now() - utcparse(as_text(beat))).total_seconds()
            if silent > SCHEDULER_SILENT_SECONDS and release_lock(self.connection, key, holder):
                logger.warning(
                    "Scheduler %s of queue %s silent for %.0f s: its lock released",
                    holder,
                    queue.name,
                    silent,
                )


def run_reconcilers() -> None:
    """Run every configured reconciler; one failing must not stop the worker or the others."""
    close_old_connections()
    try:
        for path in settings.RECONCILERS:
            try:
                import_string(path)()
            except StopRequested:
                # SIGTERM arrived during maintenance: let the worker shut down as RQ intends.
                raise
            except Exception:
                logger.exception("Reconciler %s failed", path)
    finally:
        # The worker forks a work horse per job: never let a child inherit this socket.
        connections.close_all()
