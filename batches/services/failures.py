"""When a file step fails: retry later, send the file under a new ref, or give up on it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from batches.models import BatchFile, BatchItem
from batches.services.outcomes import apply_record_outcomes, batch_refresh, file_finished
from batches.services.scheduling import require_lease, retry_delay, schedule_file_step
from batches.services.transitions import batch_event_create, batchfile_transition

__all__ = ["batchfile_fail", "batchfile_job_crashed"]


# A file is sent under at most this many refs (expired URLs, `corrupted`) before we give up.
MAX_REFS_PER_FILE = 5


REACHED_CDP_ITEM_MESSAGE = (
    "The file reached CDP before we gave up on it; whether this record was applied is unknown."
)


def retry_later(
    batch_file: BatchFile, attempt: int, step: str, reason: str, retry_after: float | None
) -> None:
    """Schedule `step` again with back-off, or fail the file after CDP_MAX_ATTEMPTS."""
    failures = batch_file.failures + 1
    limit = int(settings.CDP_MAX_ATTEMPTS)
    if failures >= limit:
        batchfile_fail(
            batch_file=batch_file,
            attempt=attempt,
            message=f"Gave up after {failures} attempts. Last problem: {reason}",
        )
        return
    delay = retry_delay(failures, retry_after)
    with transaction.atomic():
        scheduled = schedule_file_step(
            file_id=batch_file.pk,
            step=step,
            delay=delay,
            expected_attempt=attempt,
            fields={"failures": failures, "last_error": reason[:1000]},
        )
        if scheduled is not None:
            batch_event_create(
                batch_id=batch_file.batch_id,
                file_id=batch_file.pk,
                kind="note",
                message=f"{reason} Next try in {delay:.0f} s ({failures} of {limit}).",
                data={"failures": failures, "delay_seconds": delay},
            )


def batchfile_fail(*, batch_file: BatchFile, attempt: int | None, message: str) -> bool:
    """Our side gives up on a file: it fails with a readable reason.

    Its records are not delivered if the bytes never reached CDP; once they did (uploaded,
    processing), CDP may have applied them, so their outcome is unknown, not "not delivered".
    """
    with transaction.atomic():
        reached_cdp = BatchFile.objects.filter(
            Q(status__in=(BatchFile.Status.UPLOADED, BatchFile.Status.PROCESSING))
            | Q(uploaded_at__isnull=False),
            pk=batch_file.pk,
        ).exists()
        won = batchfile_transition(
            file_id=batch_file.pk,
            target=BatchFile.Status.FAILED,
            attempt=attempt,
            message=message,
            fields={
                "message": message,
                "last_error": message[:1000],
                "finished_at": timezone.now(),
                "lease_until": None,
            },
        )
        if won and reached_cdp:
            BatchItem.objects.filter(
                file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING
            ).update(outcome=BatchItem.Outcome.UNKNOWN, message=REACHED_CDP_ITEM_MESSAGE)
            apply_record_outcomes(batch_file)
        elif won:
            BatchItem.objects.filter(
                file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING
            ).update(outcome=BatchItem.Outcome.FAILED, message=message[:500])
    if won:
        file_finished(batch_file.batch_id)
    return won


def _ref_count(batch_file: BatchFile) -> int:
    """How many refs this file's bytes have been sent under, this one included."""
    count, previous = 1, batch_file.previous_id
    while previous is not None and count <= MAX_REFS_PER_FILE:
        count += 1
        previous = BatchFile.objects.values_list("previous_id", flat=True).get(pk=previous)
    return count


def resend_under_new_ref(
    batch_file: BatchFile,
    attempt: int,
    final_status: str,
    reason: str,
    observed: dict[str, Any] | None = None,
) -> None:
    """End this ref with `final_status` and send the same bytes under a new ref (new row)."""
    if _ref_count(batch_file) >= MAX_REFS_PER_FILE:
        batchfile_fail(
            batch_file=batch_file,
            attempt=attempt,
            message=f"{reason} The file was already sent under {MAX_REFS_PER_FILE} refs; "
            "giving up.",
        )
        return
    now = timezone.now()
    with transaction.atomic():
        require_lease(
            batchfile_transition(
                file_id=batch_file.pk,
                target=final_status,
                attempt=attempt,
                message=reason,
                fields={
                    **(observed or {}),
                    "message": reason,
                    "finished_at": now,
                    "lease_until": None,
                },
            ),
            batch_file,
            attempt,
        )
        successor = BatchFile.objects.create(
            batch_id=batch_file.batch_id,
            sequence=batch_file.sequence,
            previous=batch_file,
            file=batch_file.file.name,
            md5=batch_file.md5,
            size=batch_file.size,
            record_count=batch_file.record_count,
            approved_md5=batch_file.approved_md5,
            # It takes over its predecessor's place in flight.
            dispatched_at=now,
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO batches_batchitem"
                " (file_id, line, record_ref, record_id, value_hash, outcome, code, message)"
                " SELECT %(new)s, line, record_ref, record_id, value_hash, %(pending)s, '', ''"
                " FROM batches_batchitem WHERE file_id = %(old)s ORDER BY line",
                {"new": successor.pk, "old": batch_file.pk, "pending": BatchItem.Outcome.PENDING},
            )
        BatchItem.objects.filter(file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING).update(
            outcome=BatchItem.Outcome.RESENT,
            message=f"Re-sent under batch ref {successor.batch_ref}.",
        )
        batch_event_create(
            batch_id=batch_file.batch_id,
            file_id=successor.pk,
            kind="note",
            message=f"Re-send of ref {batch_file.batch_ref} under new ref {successor.batch_ref}.",
            data={"previous_ref": str(batch_file.batch_ref), "reason": reason[:300]},
        )
        schedule_file_step(file_id=successor.pk, step="upload")
    batch_refresh(batch_id=batch_file.batch_id)


def batchfile_job_crashed(*, file_id: int, attempt: int, error: str) -> None:
    """An upload/poll job died unexpectedly: retry with back-off, or fail after the limit."""
    batch_file = (
        BatchFile.objects.select_related("batch").filter(pk=file_id, attempt=attempt).first()
    )
    if batch_file is None or batch_file.is_finished or not batch_file.batch.is_sending:
        return
    step = (
        "upload"
        if batch_file.status in (BatchFile.Status.PENDING, BatchFile.Status.ALLOCATED)
        else "poll"
    )
    retry_later(
        batch_file,
        attempt,
        step,
        f"The {step} job stopped unexpectedly ({error}); see the worker log.",
        None,
    )
