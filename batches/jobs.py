"""Background jobs for batches (queue "batches"): plain functions taking ids, safe to run twice.

Each job claims its row for its own attempt (batches.services.scheduling) and returns
quietly when the row moved on; the work itself lives in the services. While a job runs, a
heartbeat renews its lease (cdpstage.leases), however long the step. Enqueued only through
cdpstage.queueing.enqueue_after_commit with ids like `batchfile-9-upload-a3`.
"""

from __future__ import annotations

import logging
from typing import Any

from batches import services
from batches.models import Batch, BatchFile
from cdpstage.queueing import run_failure_callback

logger = logging.getLogger(__name__)


def batch_build(batch_id: int, attempt: int) -> None:
    """Build a batch's files from its selected records."""
    with services.lease_heartbeat(Batch, batch_id, attempt):
        services.batch_build(batch_id=batch_id, attempt=attempt)


def batchfile_upload(file_id: int, attempt: int) -> None:
    """Allocate a file's batch ref at CDP and upload its bytes."""
    with services.lease_heartbeat(BatchFile, file_id, attempt):
        services.batchfile_upload_step(file_id=file_id, attempt=attempt)


def batchfile_poll(file_id: int, attempt: int) -> None:
    """Poll a file's status at CDP; apply the outcomes when it is final."""
    with services.lease_heartbeat(BatchFile, file_id, attempt):
        services.batchfile_poll_step(file_id=file_id, attempt=attempt)


def reconcile_batches() -> None:
    """Re-enqueue batch work stuck past its lease or whose job was lost; start the next files."""
    services.batches_reconcile()


def on_job_failure(job: Any, connection: Any, exc_type: type, value: Any, traceback: Any) -> None:
    """RQ's on_failure callback: an unexpected exception (or a dead worker) ended a job.

    Only the exception's class is recorded (its text may quote data); the traceback is in the
    worker log. The row is retried with back-off, or failed after CDP_MAX_ATTEMPTS.
    """
    error = getattr(exc_type, "__name__", "error")
    try:
        kind = job.func_name.rsplit(".", 1)[-1]
        row_id, attempt = int(job.args[0]), int(job.args[1])
    except (AttributeError, IndexError, TypeError, ValueError):
        logger.exception("Job %s failed and its arguments are unreadable", getattr(job, "id", "?"))
        return
    logger.error("Job %s failed with %s", job.id, error)

    def record() -> None:
        if kind == "batch_build":
            services.batch_build_crashed(batch_id=row_id, attempt=attempt, error=error)
        elif kind in ("batchfile_upload", "batchfile_poll"):
            services.batchfile_job_crashed(file_id=row_id, attempt=attempt, error=error)

    run_failure_callback(record, job_id=job.id)
