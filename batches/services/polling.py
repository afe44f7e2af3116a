"""Follow an uploaded file at CDP until it reaches a final status: success, error (its log
gives each record's outcome), corrupted or failed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from batches.client import (
    REMOTE_STATUSES,
    BatchStatus,
    CdpClient,
    CdpError,
    CdpPermanentError,
    CdpTransientError,
    CdpUrlRefusedError,
)
from batches.models import BatchFile, BatchItem
from batches.services.failures import batchfile_fail, resend_under_new_ref, retry_later
from batches.services.outcomes import (
    apply_error_log,
    apply_record_outcomes,
    batch_refresh,
    download_error_log,
    file_finished,
)
from batches.services.scheduling import (
    LeaseLostError,
    batchfile_claim,
    poll_delay,
    require_lease,
    retry_delay,
    schedule_file_step,
)
from batches.services.transitions import batch_event_create, batchfile_transition, cdp_call_recorder

logger = logging.getLogger(__name__)

__all__ = ["batchfile_poll_step"]


# A file CDP still calls `uploading` this long after our upload succeeded never registered.
STUCK_UPLOADING = timedelta(hours=1)


LOG_UNAVAILABLE_ITEM_MESSAGE = (
    "CDP's error log of this file could not be fetched; whether this record was applied is unknown."
)


NO_LOG_MESSAGE = (
    "CDP reported an error for the whole file and gave no log; the file may not have been readable."
)


def batchfile_poll_step(*, file_id: int, attempt: int) -> None:
    """Ask CDP for the file's status; on a final one apply the outcomes, else poll again later."""
    batch_file = batchfile_claim(
        file_id=file_id,
        attempt=attempt,
        statuses=(BatchFile.Status.UPLOADED, BatchFile.Status.PROCESSING),
    )
    if batch_file is None:
        logger.info("File %s poll attempt %s: nothing to do", file_id, attempt)
        return
    try:
        client = CdpClient.from_settings(on_call=cdp_call_recorder(batch_file.batch_id, file_id))
        status = client.status(str(batch_file.batch_ref))
        observed = {
            "remote_status": status.code[:20],
            "status_json": status.raw,
            "stats": status.stats,
            "polls": batch_file.polls + 1,
            "failures": 0,
            "last_error": "",
        }
        if status.code == "success":
            _finish_success(batch_file, attempt, observed)
        elif status.code == "error":
            _finish_error(batch_file, attempt, status, client, observed)
        elif status.code == "corrupted":
            resend_under_new_ref(
                batch_file,
                attempt,
                BatchFile.Status.CORRUPTED,
                "CDP reported the file corrupted (its MD5 or size did not match); it is re-sent "
                "under a new batch ref.",
                observed,
            )
        else:
            _still_processing(batch_file, attempt, status, observed)
    except LeaseLostError:
        logger.warning("File %s poll attempt %s lost its lease; stopping", file_id, attempt)
    except CdpTransientError as exc:
        retry_later(batch_file, attempt, "poll", exc.message, exc.retry_after)
    except CdpPermanentError as exc:
        batchfile_fail(batch_file=batch_file, attempt=attempt, message=exc.message)


def _still_processing(
    batch_file: BatchFile, attempt: int, status: BatchStatus, observed: dict[str, Any]
) -> None:
    if (
        status.code == "uploading"
        and batch_file.uploaded_at is not None
        and timezone.now() - batch_file.uploaded_at > STUCK_UPLOADING
    ):
        resend_under_new_ref(
            batch_file,
            attempt,
            BatchFile.Status.SUPERSEDED,
            "CDP never registered the uploaded file; it is re-sent under a new batch ref.",
            observed,
        )
        return
    if status.code not in REMOTE_STATUSES:
        batch_event_create(
            batch_id=batch_file.batch_id,
            file_id=batch_file.pk,
            kind="note",
            message=f"CDP reported an unknown status {status.code[:20]!r}; still polling.",
        )
    with transaction.atomic():
        if status.code != "uploading" and batch_file.status == BatchFile.Status.UPLOADED:
            changed = batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.PROCESSING,
                attempt=attempt,
                message=f"CDP is processing the file ({status.code}).",
                fields=observed,
            )
        else:
            changed = bool(
                BatchFile.objects.filter(pk=batch_file.pk, attempt=attempt).update(
                    updated_at=timezone.now(), **observed
                )
            )
        require_lease(changed, batch_file, attempt)
        schedule_file_step(
            file_id=batch_file.pk,
            step="poll",
            delay=poll_delay(observed["polls"] + 1),
            expected_attempt=attempt,
        )
    batch_refresh(batch_id=batch_file.batch_id)


def _finish_success(batch_file: BatchFile, attempt: int, observed: dict[str, Any]) -> None:
    with transaction.atomic():
        require_lease(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.SUCCESS,
                attempt=attempt,
                message=f"CDP processed all {batch_file.record_count} records.",
                fields={**observed, "finished_at": timezone.now(), "lease_until": None},
            ),
            batch_file,
            attempt,
        )
        BatchItem.objects.filter(file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING).update(
            outcome=BatchItem.Outcome.DELIVERED
        )
        apply_record_outcomes(batch_file)
    file_finished(batch_file.batch_id)


def _finish_error(
    batch_file: BatchFile,
    attempt: int,
    status: BatchStatus,
    client: CdpClient,
    observed: dict[str, Any],
) -> None:
    # Outside the transaction: a failed download is retried with the poll, which asks CDP
    # for the status again and so gets a freshly signed log URL (an expired signature is a
    # 403 from S3: permanent for that URL, not for the log).
    log_name = ""
    if status.log_url:
        try:
            log_name = download_error_log(batch_file, client, status.log_url)
        except CdpUrlRefusedError:
            raise  # a new link would point at the same host: the poll step fails the file
        except CdpError as exc:
            _log_not_fetched(batch_file, attempt, exc.message, observed)
            return
    with transaction.atomic():
        # The items first, so the summary goes in the UPDATE that ends the file (a finished
        # file never changes: batches migration 0011); a lost attempt rolls them back.
        if log_name:
            summary = apply_error_log(batch_file, log_name)
        else:
            BatchItem.objects.filter(
                file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING
            ).update(outcome=BatchItem.Outcome.FAILED, message=NO_LOG_MESSAGE[:500])
            summary = {"message": NO_LOG_MESSAGE}
        require_lease(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.ERROR,
                attempt=attempt,
                message="CDP reported errors; outcomes taken from its log."
                if log_name
                else NO_LOG_MESSAGE,
                fields={
                    **observed,
                    **summary,
                    "error_log": log_name,
                    "finished_at": timezone.now(),
                    "lease_until": None,
                },
            ),
            batch_file,
            attempt,
        )
        apply_record_outcomes(batch_file)
    file_finished(batch_file.batch_id)


def _counts_text(stats: dict[str, Any] | None) -> str:
    """CDP's own counts from a status reply ("3803 applied, 423 failed"), or ""."""
    stats = stats or {}
    parts = [
        f"{stats[key]} {label}"
        for key, label in (("successCount", "applied"), ("errorCount", "failed"))
        if isinstance(stats.get(key), int)
    ]
    return f" (CDP's counts: {', '.join(parts)})" if parts else ""


def _log_not_fetched(
    batch_file: BatchFile, attempt: int, reason: str, observed: dict[str, Any]
) -> None:
    """CDP said `error` but its log did not come: ask again with a fresh link, then stop guessing.

    After CDP_MAX_ATTEMPTS the file ends `log_unavailable`: CDP applied some of its records
    (its counts say how many) and only the log says which, so none is marked delivered or not
    delivered, and none is offered for re-send; batchfile_log_fetch tries again later.
    """
    failures = batch_file.failures + 1
    limit = int(settings.CDP_MAX_ATTEMPTS)
    seen = {**observed, "failures": failures, "last_error": reason[:1000]}
    if failures < limit:
        delay = retry_delay(failures)
        with transaction.atomic():
            if schedule_file_step(
                file_id=batch_file.pk,
                step="poll",
                delay=delay,
                expected_attempt=attempt,
                fields=seen,
            ):
                batch_event_create(
                    batch_id=batch_file.batch_id,
                    file_id=batch_file.pk,
                    kind="note",
                    message=f"CDP's error log could not be fetched ({reason}). Asking CDP for a "
                    f"fresh link in {delay:.0f} s ({failures} of {limit}).",
                    data={"failures": failures, "delay_seconds": delay},
                )
        return
    message = (
        f"CDP reported errors, but its error log could not be fetched after {failures} "
        f"attempts ({reason}). The outcomes of the {batch_file.record_count} records are "
        f"unknown{_counts_text(observed.get('stats'))}; none is counted as delivered or as not "
        "delivered. Fetch the log again later: “Fetch CDP's error log again” on the batch page, "
        f"or manage.py batch_fetch_log {batch_file.batch_id}."
    )
    with transaction.atomic():
        require_lease(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.LOG_UNAVAILABLE,
                attempt=attempt,
                message=message,
                fields={
                    **seen,
                    "message": message,
                    "finished_at": timezone.now(),
                    "lease_until": None,
                },
            ),
            batch_file,
            attempt,
        )
        BatchItem.objects.filter(file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING).update(
            outcome=BatchItem.Outcome.UNKNOWN, message=LOG_UNAVAILABLE_ITEM_MESSAGE
        )
        apply_record_outcomes(batch_file)
    file_finished(batch_file.batch_id)
