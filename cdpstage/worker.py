"""The RQ worker class every CDP Stage worker runs: short maintenance cadence + our reconcilers."""

import logging

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils.module_loading import import_string
from rq import Worker
from rq.exceptions import StopRequested

logger = logging.getLogger(__name__)

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


class CdpStageWorker(Worker):
    """An RQ worker that also runs the app's reconcilers during its maintenance passes.

    Why here and not in RQ's cron: RQ's cron always pickles (our queues are JSON) and has no
    leader election; maintenance already runs on every worker of every host, and each
    reconciler is idempotent and takes its own database lock, so running it on every worker is
    safe. django-rq's `rqworker` has no `--maintenance-interval` option, hence the override.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("maintenance_interval", settings.RQ_MAINTENANCE_INTERVAL)
        super().__init__(*args, **kwargs)

    def run_maintenance_tasks(self) -> None:
        super().run_maintenance_tasks()
        run_reconcilers()


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
