"""Background jobs for import runs, the reconciler that recovers lost ones, and the scheduled
retention purge."""

import logging
from typing import Any

import django_rq
from django.conf import settings

from cdpstage.queueing import run_failure_callback
from records.importing.pipeline import import_process_tuning
from records.services.imports import import_run_crashed, import_runs_reconcile
from records.services.imports import import_run_execute as execute_run
from records.services.retention import records_purge, retention_cutoff

logger = logging.getLogger(__name__)


def import_run_execute(import_run_id: int, attempt: int) -> str:
    """Carry out one attempt at an import run (safe to run twice: the claim guards it)."""
    with import_process_tuning():  # a worker's work horse: the process is the job's
        run = execute_run(import_run_id=import_run_id, attempt=attempt)
    return run.status if run is not None else "skipped"


def on_import_failure(
    job: Any, connection: Any, exc_type: type, value: Any, traceback: Any
) -> None:
    """RQ's on_failure callback: the import job died (database gone, worker killed, a bug).

    Only the exception's class is recorded (its text may quote data). A run left running is
    handed to the reconciler at once instead of after its lease.
    """
    error = getattr(exc_type, "__name__", "error")
    try:
        run_id, attempt = int(job.args[0]), int(job.args[1])
    except (AttributeError, IndexError, TypeError, ValueError):
        logger.exception("Job %s failed and its arguments are unreadable", getattr(job, "id", "?"))
        return
    logger.error("Job %s failed with %s", job.id, error)
    run_failure_callback(
        lambda: import_run_crashed(import_run_id=run_id, attempt=attempt, error=error),
        job_id=job.id,
    )


def reconcile_import_runs() -> None:
    """Re-enqueue import runs stuck pending or past their lease; fail those that keep dying."""
    done = import_runs_reconcile()
    if done.get("requeued") or done.get("failed"):
        logger.info(
            "Import runs reconciled: %s re-enqueued, %s given up",
            done.get("requeued", 0),
            done.get("failed", 0),
        )


# The Redis key whose holder runs the scheduled purge; it expires after RETENTION_RUN_INTERVAL,
# so one worker of all hosts purges per interval and a dead one does not block the next.
RETENTION_KEY = "cdpstage:retention:scheduled-purge"


def purge_expired_records() -> None:
    """The scheduled retention run (RETENTION_DELIVERED_DAYS; off when 0), at most once per
    RETENTION_RUN_INTERVAL across every worker."""
    days = settings.RETENTION_DELIVERED_DAYS
    if days <= 0:
        return
    connection = django_rq.get_connection("imports")
    if not connection.set(RETENTION_KEY, "1", nx=True, ex=settings.RETENTION_RUN_INTERVAL):
        return
    records_purge(cutoff=retention_cutoff(days))
