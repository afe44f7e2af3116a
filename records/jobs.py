"""Background jobs for import runs, and the reconciler that recovers lost ones."""

import logging
from typing import Any

from cdpstage.queueing import run_failure_callback
from records.services.imports import import_run_crashed, import_runs_reconcile
from records.services.imports import import_run_execute as execute_run

logger = logging.getLogger(__name__)


def import_run_execute(import_run_id: int, attempt: int) -> str:
    """Carry out one attempt at an import run (safe to run twice: the claim guards it)."""
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
