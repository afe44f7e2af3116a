"""Enqueueing and claims for batch work: the database row decides what runs, the queue only wakes.

Every (re-)enqueue bumps the row's `attempt`, names the job after it
(`batch-7-build-a2`, `batchfile-9-upload-a3`, `batchfile-9-poll-a4`) and sets `lease_until`
to the moment the job must have started by; a job claims its row only for its own attempt
and only once (`claimed_at` is NULL until then), then holds the lease while it works. The
reconciler re-enqueues a row whose lease ran out under the next attempt, so a job lost with a
killed worker or a flushed Redis is redone and a stale duplicate can never claim the row
(docs/design/rq-crash-semantics.md section 8). The lease itself (claim, renewal, expiry) is
cdpstage.leases, shared with import runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches.models import BATCH_FINAL_STATUSES, BATCHFILE_FINAL_STATUSES, Batch, BatchFile
from cdpstage.leases import LeaseLostError, lease_claim, lease_renew, lease_seconds, lease_until
from cdpstage.leases import lease_heartbeat as _heartbeat
from cdpstage.queueing import enqueue_after_commit

logger = logging.getLogger(__name__)

QUEUE = "batches"
ON_FAILURE = "batches.jobs.on_job_failure"
FILE_STEPS = {"upload": "batches.jobs.batchfile_upload", "poll": "batches.jobs.batchfile_poll"}

__all__ = [
    "LeaseLostError",
    "batch_claim",
    "batchfile_claim",
    "lease_heartbeat",
    "renew_lease",
    "lease_seconds",
    "retry_delay",
    "schedule_build",
    "schedule_file_step",
]


# Work is scheduled, claimed and renewed only on rows that have not finished: a finished
# batch or file never changes again (batches migration 0011), not even its lease.
OPEN_STATUSES = {
    Batch: [status for status in Batch.Status.values if status not in BATCH_FINAL_STATUSES],
    BatchFile: [
        status for status in BatchFile.Status.values if status not in BATCHFILE_FINAL_STATUSES
    ],
}


def _claimed(model: type[Batch] | type[BatchFile]) -> dict:
    """The row is this attempt's once its job claimed it, while it has not finished."""
    return {"claimed_at__isnull": False, "status__in": OPEN_STATUSES[model]}


def retry_delay(failures: int, retry_after: float | None = None) -> float:
    """Back-off before retry number `failures` (1-based), never sooner than Retry-After."""
    intervals = settings.CDP_RETRY_INTERVALS or [5]
    delay = float(intervals[min(max(failures, 1), len(intervals)) - 1])
    return max(delay, float(retry_after or 0))


def schedule_build(
    *, batch_id: int, delay: float = 0.0, expected_attempt: int | None = None
) -> int | None:
    """Enqueue the build of a batch under its next attempt; None if `expected_attempt` is stale
    or the batch has finished."""
    with transaction.atomic():
        rows = Batch.objects.select_for_update().filter(
            pk=batch_id, status__in=OPEN_STATUSES[Batch]
        )
        if expected_attempt is not None:
            rows = rows.filter(attempt=expected_attempt)
        current = rows.values_list("attempt", flat=True).first()
        if current is None:
            return None
        attempt = current + 1
        job_id = f"batch-{batch_id}-build-a{attempt}"
        now = timezone.now()
        Batch.objects.filter(pk=batch_id).update(
            attempt=attempt,
            job_id=job_id,
            claimed_at=None,
            lease_until=lease_until(now=now, delay=delay),
            updated_at=now,
        )
        enqueue_after_commit(
            QUEUE,
            "batches.jobs.batch_build",
            batch_id,
            attempt,
            job_id=job_id,
            delay_seconds=delay,
            on_failure=ON_FAILURE,
        )
    return attempt


def schedule_file_step(
    *,
    file_id: int,
    step: str,
    delay: float = 0.0,
    expected_attempt: int | None = None,
    fields: dict | None = None,
) -> int | None:
    """Enqueue `step` ("upload" or "poll") of a file under its next attempt.

    With `expected_attempt`, only if the row is still at that attempt (the caller owns it); never
    for a finished file (None).
    `fields` are saved in the same UPDATE (e.g. the failure count).
    """
    with transaction.atomic():
        rows = BatchFile.objects.select_for_update().filter(
            pk=file_id, status__in=OPEN_STATUSES[BatchFile]
        )
        if expected_attempt is not None:
            rows = rows.filter(attempt=expected_attempt)
        current = rows.values_list("attempt", flat=True).first()
        if current is None:
            return None
        attempt = current + 1
        job_id = f"batchfile-{file_id}-{step}-a{attempt}"
        now = timezone.now()
        BatchFile.objects.filter(pk=file_id).update(
            attempt=attempt,
            job_id=job_id,
            claimed_at=None,
            lease_until=lease_until(now=now, delay=delay),
            updated_at=now,
            **(fields or {}),
        )
        enqueue_after_commit(
            QUEUE,
            FILE_STEPS[step],
            file_id,
            attempt,
            job_id=job_id,
            delay_seconds=delay,
            on_failure=ON_FAILURE,
        )
    return attempt


def batch_claim(*, batch_id: int, attempt: int) -> bool:
    """Claim a batch's build for `attempt`; False if another attempt owns it or it ran."""
    return lease_claim(
        Batch.objects.filter(
            pk=batch_id,
            attempt=attempt,
            claimed_at__isnull=True,
            status__in=(Batch.Status.DRAFT, Batch.Status.BUILDING),
        ),
        claimed_at=timezone.now(),
    )


def batchfile_claim(*, file_id: int, attempt: int, statuses: tuple[str, ...]) -> BatchFile | None:
    """Claim a file for `attempt` if it is in one of `statuses` and its batch is being sent."""
    claimed = lease_claim(
        BatchFile.objects.filter(
            pk=file_id,
            attempt=attempt,
            claimed_at__isnull=True,
            status__in=statuses,
            batch__status__in=(Batch.Status.UPLOADING, Batch.Status.PROCESSING),
        ),
        claimed_at=timezone.now(),
    )
    if not claimed:
        return None
    return BatchFile.objects.select_related("batch").get(pk=file_id)


def renew_lease(model: type[Batch] | type[BatchFile], pk: int, attempt: int, **fields) -> None:
    """Push the lease forward (and save `fields`); LeaseLostError if we no longer own the row."""
    lease_renew(model, pk, attempt, owned=_claimed(model), **fields)


@contextmanager
def lease_heartbeat(model: type[Batch] | type[BatchFile], pk: int, attempt: int) -> Iterator[None]:
    """Keep this attempt's lease on a batch or file alive while the block runs (a build, an
    upload, a poll writing outcomes)."""
    with _heartbeat(model, pk, attempt, owned=_claimed(model)):
        yield


def poll_delay(poll_number: int) -> float:
    """Seconds until the n-th poll of a file (CDP_POLL_INTERVALS, the last one repeating)."""
    intervals = settings.CDP_POLL_INTERVALS or [5]
    return float(intervals[min(max(poll_number, 1), len(intervals)) - 1])


def require_lease(changed: bool, batch_file: BatchFile, attempt: int) -> None:
    """Stop the step (LeaseLostError) when its conditional UPDATE found the file taken over."""
    if not changed:
        raise LeaseLostError(f"File {batch_file.pk} attempt {attempt} no longer owns the file.")
