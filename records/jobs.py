"""Background jobs for import runs, and the reconciler that recovers lost ones."""

import logging

from records.importing.pipeline import import_process_tuning
from records.services.imports import import_run_execute as execute_run
from records.services.imports import import_runs_reconcile

logger = logging.getLogger(__name__)


def import_run_execute(import_run_id: int, attempt: int) -> str:
    """Carry out one attempt at an import run (safe to run twice: the claim guards it)."""
    with import_process_tuning():  # a worker's work horse: the process is the job's
        run = execute_run(import_run_id=import_run_id, attempt=attempt)
    return run.status if run is not None else "skipped"


def reconcile_import_runs() -> None:
    """Re-enqueue import runs stuck pending or past their lease; fail those that keep dying."""
    done = import_runs_reconcile()
    if done.get("requeued") or done.get("failed"):
        logger.info(
            "Import runs reconciled: %s re-enqueued, %s given up",
            done.get("requeued", 0),
            done.get("failed", 0),
        )
