"""Send batch files to CDP, follow them to a final status, and give every record its outcome.

One file at a time by default (CDP_MAX_IN_FLIGHT): CDP advises confirming each batch before
the next (cdp-batch-api.md section 1.4). A file goes pending -> allocated -> uploaded ->
processing -> success | error | corrupted | failed. No HTTP call runs inside a database
transaction; every step ends by scheduling the next one under a new attempt, or by a
terminal transition, both conditional on still owning the row.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from batches.client import (
    REMOTE_STATUSES,
    BatchStatus,
    CdpCall,
    CdpClient,
    CdpConflictError,
    CdpError,
    CdpPermanentError,
    CdpTransientError,
    CdpUploadExpiredError,
    CdpUrlRefusedError,
    parse_error_log,
)
from batches.models import (
    BATCHFILE_IN_FLIGHT_STATUSES,
    Batch,
    BatchEvent,
    BatchFile,
    BatchItem,
    BatchSchema,
)
from batches.services.allowance import within_allowance
from batches.services.building import SCHEMAS, records_release
from batches.services.scheduling import (
    LeaseLostError,
    batchfile_claim,
    retry_delay,
    schedule_file_step,
)
from batches.services.transitions import batch_event_create, batch_transition, batchfile_transition
from cdpstage.errors import ApplicationError
from records.services import lifecycle
from records.services.erasure import deletions_apply_outcomes

logger = logging.getLogger(__name__)

__all__ = [
    "DISPATCH_LOCK",
    "batch_notify",
    "batch_refresh",
    "batchfile_fail",
    "batchfile_job_crashed",
    "batchfile_log_fetch",
    "batchfile_poll_step",
    "batchfile_upload_step",
    "batchfiles_dispatch",
]

SENDING = (Batch.Status.UPLOADING, Batch.Status.PROCESSING)
# Arbitrary keys for PostgreSQL advisory locks ("CDPD", "CDPR").
DISPATCH_LOCK = 0x43445044
# An upload location with less than this left counts as expired. Kept small: the URL was
# just handed out, and one that runs out mid-upload is refused by S3 with "Request has
# expired", which sends the file under a new ref as well.
UPLOAD_URL_MARGIN = timedelta(seconds=1)
# A file CDP still calls `uploading` this long after our upload succeeded never registered.
STUCK_UPLOADING = timedelta(hours=1)
# A file is sent under at most this many refs (expired URLs, `corrupted`) before we give up.
MAX_REFS_PER_FILE = 5
MAX_FILE_ERRORS_KEPT = 20
LOG_UNAVAILABLE_ITEM_MESSAGE = (
    "CDP's error log of this file could not be fetched; whether this record was applied is unknown."
)
REACHED_CDP_ITEM_MESSAGE = (
    "The file reached CDP before we gave up on it; whether this record was applied is unknown."
)
NO_LOG_MESSAGE = (
    "CDP reported an error for the whole file and gave no log; the file may not have been readable."
)


class ChecksumMismatchError(Exception):
    """The stored file no longer matches the checksum the approver approved."""


def _poll_delay(poll_number: int) -> float:
    intervals = settings.CDP_POLL_INTERVALS or [5]
    return float(intervals[min(max(poll_number, 1), len(intervals)) - 1])


def _recorder(batch_id: int, file_id: int) -> Callable[[CdpCall], None]:
    """Record each CDP call as an audit event (committed at once: the call did happen)."""

    def record(call: CdpCall) -> None:
        batch_event_create(
            batch_id=batch_id,
            file_id=file_id,
            kind=BatchEvent.Kind.CDP_CALL,
            actor_label="worker",
            method=call.method,
            path=call.path,
            http_status=call.http_status,
            duration_ms=call.duration_ms,
            message=call.error,
            # Scheme and host too: where the bytes went (the path alone would not say).
            data={"target": call.target, "origin": call.origin},
        )

    return record


# -- dispatch ------------------------------------------------------------------------------


def batchfiles_dispatch() -> int:
    """Start the next pending files while fewer than CDP_MAX_IN_FLIGHT are at CDP."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            # Serialise dispatchers (request, jobs, every worker's reconciler).
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK])
        in_flight = (
            BatchFile.objects.filter(batch__status__in=SENDING)
            .filter(
                Q(status__in=BATCHFILE_IN_FLIGHT_STATUSES)
                | Q(status=BatchFile.Status.PENDING, dispatched_at__isnull=False)
            )
            .count()
        )
        free = max(int(settings.CDP_MAX_IN_FLIGHT), 1) - in_flight
        if free <= 0:
            return 0
        # Guest migrations go within CDP's daily allowance (counted under this lock).
        chosen = within_allowance(
            BatchFile.objects.filter(
                status=BatchFile.Status.PENDING,
                dispatched_at__isnull=True,
                batch__status__in=SENDING,
            )
            .order_by("batch__sent_at", "batch_id", "sequence", "id")
            .values_list("pk", "batch_id", "batch__schema", "record_count")
            .iterator(),
            free,
            now=now,
        )
        for file_id, batch_id in chosen:
            BatchFile.objects.filter(pk=file_id).update(dispatched_at=now, updated_at=now)
            batch_event_create(
                batch_id=batch_id, file_id=file_id, kind="note", message="Queued for upload."
            )
            schedule_file_step(file_id=file_id, step="upload")
    return len(chosen)


# -- upload --------------------------------------------------------------------------------


def _verify_stored(batch_file: BatchFile) -> None:
    """Stream the stored file and check it against the approved checksum and size."""
    if not batch_file.approved_md5:
        raise ChecksumMismatchError("This file was never approved; nothing was sent.")
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with default_storage.open(batch_file.file.name, "rb") as stored:
        for chunk in iter(lambda: stored.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != batch_file.approved_md5 or batch_file.md5 != batch_file.approved_md5:
        raise ChecksumMismatchError(
            "The stored file no longer matches the checksum that was approved; nothing was sent."
        )
    if size != batch_file.size:
        raise ChecksumMismatchError(
            "The stored file no longer has the size that was approved; nothing was sent."
        )


def _owned(changed: bool, batch_file: BatchFile, attempt: int) -> None:
    if not changed:
        raise LeaseLostError(f"File {batch_file.pk} attempt {attempt} no longer owns the file.")


def _upload(batch_file: BatchFile, attempt: int, client: CdpClient) -> None:
    ref = str(batch_file.batch_ref)
    if batch_file.status == BatchFile.Status.PENDING:
        allocated = client.allocate(ref, checksum=batch_file.md5, size=batch_file.size)
        _owned(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.ALLOCATED,
                attempt=attempt,
                message="Upload location allocated.",
                fields={
                    "remote_status": allocated.status_code,
                    "upload_expires_at": allocated.location_expiry,
                    "status_json": allocated.raw,
                    "failures": 0,
                },
            ),
            batch_file,
            attempt,
        )
        remote, location, expiry = (
            allocated.status_code,
            allocated.location_url,
            allocated.location_expiry,
        )
    else:
        # A previous attempt allocated the ref and died: ask CDP where the file stands before
        # sending anything, so bytes that already arrived are not sent twice.
        status = client.status(ref)
        remote, location, expiry = status.code, status.location_url, status.location_expiry
        if remote == "uploading" and not location:
            # The status reply had no upload location: allocation is an idempotent PUT.
            allocated = client.allocate(ref, checksum=batch_file.md5, size=batch_file.size)
            remote, location, expiry = (
                allocated.status_code,
                allocated.location_url,
                allocated.location_expiry,
            )
    if remote != "uploading":
        # The bytes are already at CDP (or it gave up on them): follow the status from here.
        _owned(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.UPLOADED,
                attempt=attempt,
                message=f"CDP already holds the file (status {remote}); not uploading again.",
                fields={"remote_status": remote, "failures": 0},
            ),
            batch_file,
            attempt,
        )
        schedule_file_step(file_id=batch_file.pk, step="poll", expected_attempt=attempt)
        return
    if expiry is not None and expiry - timezone.now() < UPLOAD_URL_MARGIN:
        raise CdpUploadExpiredError(
            "The upload location had expired (or was about to); the file must be sent under a "
            "new batch ref."
        )
    _verify_stored(batch_file)
    with default_storage.open(batch_file.file.name, "rb") as body:
        client.upload(location, body, md5_hex=batch_file.approved_md5, size=batch_file.size)
    _owned(
        batchfile_transition(
            file_id=batch_file.pk,
            target=BatchFile.Status.UPLOADED,
            attempt=attempt,
            message=f"Uploaded {batch_file.size} bytes.",
            fields={"uploaded_at": timezone.now(), "failures": 0, "last_error": ""},
        ),
        batch_file,
        attempt,
    )
    schedule_file_step(
        file_id=batch_file.pk, step="poll", delay=_poll_delay(1), expected_attempt=attempt
    )


def batchfile_upload_step(*, file_id: int, attempt: int) -> None:
    """Allocate the file's ref (if not yet) and upload its bytes; then schedule the first poll."""
    batch_file = batchfile_claim(
        file_id=file_id,
        attempt=attempt,
        statuses=(BatchFile.Status.PENDING, BatchFile.Status.ALLOCATED),
    )
    if batch_file is None:
        logger.info("File %s upload attempt %s: nothing to do", file_id, attempt)
        return
    try:
        client = CdpClient.from_settings(on_call=_recorder(batch_file.batch_id, file_id))
        _upload(batch_file, attempt, client)
    except LeaseLostError:
        logger.warning("File %s upload attempt %s lost its lease; stopping", file_id, attempt)
    except (CdpUploadExpiredError, CdpConflictError) as exc:
        _resend_under_new_ref(batch_file, attempt, BatchFile.Status.SUPERSEDED, exc.message)
    except CdpTransientError as exc:
        _retry_later(batch_file, attempt, "upload", exc.message, exc.retry_after)
    except CdpPermanentError as exc:
        batchfile_fail(batch_file=batch_file, attempt=attempt, message=exc.message)
    except ChecksumMismatchError as exc:
        batchfile_fail(batch_file=batch_file, attempt=attempt, message=str(exc))


# -- poll ----------------------------------------------------------------------------------


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
        client = CdpClient.from_settings(on_call=_recorder(batch_file.batch_id, file_id))
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
            _resend_under_new_ref(
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
        _retry_later(batch_file, attempt, "poll", exc.message, exc.retry_after)
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
        _resend_under_new_ref(
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
        _owned(changed, batch_file, attempt)
        schedule_file_step(
            file_id=batch_file.pk,
            step="poll",
            delay=_poll_delay(observed["polls"] + 1),
            expected_attempt=attempt,
        )
    batch_refresh(batch_id=batch_file.batch_id)


def _finish_success(batch_file: BatchFile, attempt: int, observed: dict[str, Any]) -> None:
    with transaction.atomic():
        _owned(
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
        _apply_record_outcomes(batch_file)
    _file_finished(batch_file.batch_id)


def _download_log(batch_file: BatchFile, client: CdpClient, log_url: str) -> str:
    """Fetch CDP's error log into storage, streamed; returns its storage name."""
    name = f"batches/batch-{batch_file.batch_id:06d}/logs/{batch_file.batch_ref}.log.gz"
    with tempfile.TemporaryFile() as temporary:
        client.download_log(log_url, temporary)
        temporary.seek(0)
        return default_storage.save(name, File(temporary, name=name))


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
            log_name = _download_log(batch_file, client, status.log_url)
        except CdpUrlRefusedError:
            raise  # a new link would point at the same host: the poll step fails the file
        except CdpError as exc:
            _log_not_fetched(batch_file, attempt, exc.message, observed)
            return
    with transaction.atomic():
        _owned(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.ERROR,
                attempt=attempt,
                message="CDP reported errors; outcomes taken from its log."
                if log_name
                else NO_LOG_MESSAGE,
                fields={
                    **observed,
                    "error_log": log_name,
                    "finished_at": timezone.now(),
                    "lease_until": None,
                },
            ),
            batch_file,
            attempt,
        )
        if log_name:
            summary = _apply_error_log(batch_file, log_name)
        else:
            BatchItem.objects.filter(
                file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING
            ).update(outcome=BatchItem.Outcome.FAILED, message=NO_LOG_MESSAGE[:500])
            summary = {"message": NO_LOG_MESSAGE}
        BatchFile.objects.filter(pk=batch_file.pk).update(**summary)
        _apply_record_outcomes(batch_file)
    _file_finished(batch_file.batch_id)


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
        _owned(
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
        _apply_record_outcomes(batch_file)
    _file_finished(batch_file.batch_id)


def batchfile_log_fetch(
    *, batch_file: BatchFile, user: AbstractBaseUser | None = None, actor_label: str = ""
) -> str:
    """Fetch the error log of a `log_unavailable` file again and give its records their outcomes.

    CDP signs a new log URL with every status reply, so this asks for the status first. The
    records resolved are those still of unknown outcome; the batch's counts are recounted (its
    status stays: a final status never changes). Returns the file's new summary.
    """
    if batch_file.status != BatchFile.Status.LOG_UNAVAILABLE:
        raise ApplicationError(
            f"File {batch_file.sequence} of batch {batch_file.batch_id} is "
            f"{batch_file.get_status_display().lower()}: only a file whose error log could not "
            "be fetched needs it fetched again."
        )
    client = CdpClient.from_settings(on_call=_recorder(batch_file.batch_id, batch_file.pk))
    try:
        status = client.status(str(batch_file.batch_ref))
        if status.code != "error" or not status.log_url:
            raise CdpPermanentError(
                f"CDP now reports the file as {status.code[:20]!r} with no error log to fetch."
            )
        log_name = _download_log(batch_file, client, status.log_url)
    except CdpError as exc:
        batch_event_create(
            batch_id=batch_file.batch_id,
            file_id=batch_file.pk,
            kind="note",
            actor=user,
            actor_label=actor_label,
            message=f"CDP's error log could not be fetched again: {exc.message}",
        )
        raise ApplicationError(
            f"CDP's error log of file {batch_file.sequence} still cannot be fetched: "
            f"{exc.message} The outcomes stay unknown; try again later."
        ) from exc
    with transaction.atomic():
        won = batchfile_transition(
            file_id=batch_file.pk,
            target=BatchFile.Status.ERROR,
            sources=(BatchFile.Status.LOG_UNAVAILABLE,),
            actor=user,
            actor_label=actor_label,
            message="CDP's error log fetched again; outcomes taken from it.",
            fields={
                "error_log": log_name,
                "remote_status": status.code[:20],
                "status_json": status.raw,
                "stats": status.stats,
            },
        )
        if not won:
            raise ApplicationError(
                f"File {batch_file.sequence} of batch {batch_file.batch_id} was resolved by "
                "someone else meanwhile."
            )
        summary = _apply_error_log(batch_file, log_name, awaiting=BatchItem.Outcome.UNKNOWN)
        BatchFile.objects.filter(pk=batch_file.pk).update(**summary)
        _apply_record_outcomes(batch_file, released=True)
        _batch_recount(batch_file.batch_id, user=user, actor_label=actor_label)
    return summary["message"]


def _apply_error_log(
    batch_file: BatchFile, log_name: str, *, awaiting: str = BatchItem.Outcome.PENDING
) -> dict[str, Any]:
    """Join the log's lines to the file's items by record ref; returns the file's summary.

    Lines are streamed into a temporary table with COPY and applied with one UPDATE, so a log
    of a million lines costs no memory. Records the log does not name were applied (current
    docs: the log lists failures only), unless some lines could not be attributed to a record
    (`"ref":"null"`): then nobody knows which records those were, and the rest are `unknown`.
    `awaiting` is the outcome of the items the log resolves: pending, or unknown for a log
    fetched after the file ended.
    """
    file_errors: list[dict[str, str]] = []
    file_error_count = 0
    logged = 0
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE batch_log_lines"
            " (ref uuid, code varchar(10), message varchar(500), ok boolean) ON COMMIT DROP"
        )
        with (
            default_storage.open(log_name, "rb") as log,
            cursor.cursor.copy("COPY batch_log_lines (ref, code, message, ok) FROM STDIN") as copy,
        ):
            for line in parse_error_log(log):
                ref = None
                if line.ref is not None:
                    try:
                        ref = uuid.UUID(line.ref)
                    except ValueError:
                        ref = None
                if ref is None:
                    file_error_count += 1
                    if len(file_errors) < MAX_FILE_ERRORS_KEPT:
                        file_errors.append({"code": line.code, "message": line.message})
                    continue
                copy.write_row((ref, line.code, line.message, line.succeeded))
                logged += 1
        # A ref logged twice counts as failed if any of its lines failed (ORDER BY ok: false
        # first). One row per ref with a primary key, analysed: the join below then has an
        # index on both sides and true counts, so no plan re-scans the log per item.
        cursor.execute(
            "CREATE TEMPORARY TABLE batch_log_outcomes ON COMMIT DROP AS"
            " SELECT DISTINCT ON (ref) ref, code, message, ok FROM batch_log_lines"
            " ORDER BY ref, ok"
        )
        cursor.execute("ALTER TABLE batch_log_outcomes ADD PRIMARY KEY (ref)")
        cursor.execute("ANALYZE batch_log_outcomes")
        cursor.execute(
            "UPDATE batches_batchitem i SET outcome = CASE WHEN l.ok THEN %(delivered)s"
            " ELSE %(rejected)s END, code = l.code, message = l.message"
            " FROM batch_log_outcomes l"
            " WHERE i.file_id = %(file)s AND i.record_ref = l.ref AND i.outcome = %(awaiting)s",
            {
                "delivered": BatchItem.Outcome.DELIVERED,
                "rejected": BatchItem.Outcome.REJECTED,
                "awaiting": awaiting,
                "file": batch_file.pk,
            },
        )
        matched = cursor.rowcount
        cursor.execute("SELECT count(*) FROM batch_log_outcomes")
        strangers = cursor.fetchone()[0] - matched
    items = BatchItem.objects.filter(file_id=batch_file.pk, outcome=awaiting)
    # Items already unknown stay as they are (an outcome changes once, and only to a known one).
    unresolved = items.exclude(outcome=BatchItem.Outcome.UNKNOWN)
    if file_error_count:
        unresolved.update(
            outcome=BatchItem.Outcome.UNKNOWN,
            message=(
                f"CDP could not read {file_error_count} line(s) of this file; whether this "
                "record was applied is unknown."
            )[:500],
        )
    elif not logged:
        # `error` says at least one record failed, yet the log names none: nobody knows which.
        unresolved.update(
            outcome=BatchItem.Outcome.UNKNOWN,
            message="CDP reported an error but its log names no record; whether this record "
            "was applied is unknown.",
        )
    else:
        items.update(outcome=BatchItem.Outcome.DELIVERED)
    rejected = BatchItem.objects.filter(
        file_id=batch_file.pk, outcome=BatchItem.Outcome.REJECTED
    ).count()
    parts = [f"CDP rejected {rejected} of {batch_file.record_count} records"]
    if not logged and not file_error_count:
        parts.append("its log names no record, so the others are unconfirmed")
    if file_error_count:
        parts.append(f"{file_error_count} line(s) of the log name no record")
    if strangers > 0:
        parts.append(f"{strangers} log line(s) name records that are not in this file")
    return {
        "message": "; ".join(parts) + ".",
        "file_error_count": file_error_count,
        "file_errors": file_errors,
    }


def _apply_record_outcomes(batch_file: BatchFile, *, released: bool = False) -> None:
    """Write delivered / rejected / unconfirmed onto the records.

    They stay held until the batch ends; `released`: the batch ended, and only records still
    of unknown outcome take the outcome a log fetched later gave their item.
    """
    lifecycle.records_record_outcomes(
        model=SCHEMAS[batch_file.batch.schema].model,
        outcomes=(
            "SELECT record_id, outcome, value_hash FROM batches_batchitem"
            " WHERE file_id = %s AND outcome IN (%s, %s, %s)",
            [
                batch_file.pk,
                BatchItem.Outcome.DELIVERED,
                BatchItem.Outcome.REJECTED,
                BatchItem.Outcome.UNKNOWN,
            ],
        ),
        only_unconfirmed=released,
    )
    if batch_file.batch.schema == BatchSchema.GUEST_DELETION:
        # An erasure is done only when CDP has no matching guest left (records decides).
        deletions_apply_outcomes(
            outcomes=BatchItem.objects.filter(
                file=batch_file,
                outcome__in=(BatchItem.Outcome.DELIVERED, BatchItem.Outcome.REJECTED),
            ).values_list("record_id", "outcome", "code", "message")
        )


# -- failures, retries, new refs -----------------------------------------------------------


def _retry_later(
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
            _apply_record_outcomes(batch_file)
        elif won:
            BatchItem.objects.filter(
                file_id=batch_file.pk, outcome=BatchItem.Outcome.PENDING
            ).update(outcome=BatchItem.Outcome.FAILED, message=message[:500])
    if won:
        _file_finished(batch_file.batch_id)
    return won


def _ref_count(batch_file: BatchFile) -> int:
    """How many refs this file's bytes have been sent under, this one included."""
    count, previous = 1, batch_file.previous_id
    while previous is not None and count <= MAX_REFS_PER_FILE:
        count += 1
        previous = BatchFile.objects.values_list("previous_id", flat=True).get(pk=previous)
    return count


def _resend_under_new_ref(
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
        _owned(
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
    _retry_later(
        batch_file,
        attempt,
        step,
        f"The {step} job stopped unexpectedly ({error}); see the worker log.",
        None,
    )


# -- batch level ---------------------------------------------------------------------------


def _file_finished(batch_id: int) -> None:
    batch_refresh(batch_id=batch_id)
    batchfiles_dispatch()


def batch_refresh(*, batch_id: int) -> None:
    """Derive a sending batch's status from its current files; finish it when all are final."""
    status = Batch.objects.values_list("status", flat=True).get(pk=batch_id)
    if status not in SENDING:
        return
    current = set(
        BatchFile.objects.filter(batch_id=batch_id, next__isnull=True).values_list(
            "status", flat=True
        )
    )
    if current & {BatchFile.Status.PENDING, BatchFile.Status.ALLOCATED}:
        target = Batch.Status.UPLOADING
    elif current & {BatchFile.Status.UPLOADED, BatchFile.Status.PROCESSING}:
        target = Batch.Status.PROCESSING
    else:
        _batch_finish(batch_id)
        return
    if target != status:
        batch_transition(batch_id=batch_id, target=target, sources=(status,))


def _batch_finish(batch_id: int) -> None:
    """Every file is final: count the outcomes, end the batch, release its records, tell people."""
    with transaction.atomic():
        batch = Batch.objects.get(pk=batch_id)
        counts, message = _batch_outcomes(batch_id)
        if counts["records_delivered"] == sum(counts.values()):
            target = Batch.Status.SUCCEEDED
        elif counts["records_delivered"]:
            target = Batch.Status.PARTIALLY_FAILED
        else:
            target = Batch.Status.FAILED
        won = batch_transition(
            batch_id=batch_id,
            target=target,
            sources=SENDING,
            message=message,
            fields={"finished_at": timezone.now(), "message": message, **counts},
        )
        if won:
            records_release(batch_id=batch_id, schema=batch.schema)
            transaction.on_commit(lambda: batch_notify(batch_id=batch_id))


def _batch_outcomes(batch_id: int) -> tuple[dict[str, int], str]:
    """The batch's outcome counts (its live files' items) and the sentence that sums them up."""
    counts = dict(
        BatchItem.objects.filter(file__batch_id=batch_id, file__next__isnull=True)
        .values_list("outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    total = sum(counts.values())
    delivered = counts.get(BatchItem.Outcome.DELIVERED, 0)
    rejected = counts.get(BatchItem.Outcome.REJECTED, 0)
    unconfirmed = counts.get(BatchItem.Outcome.UNKNOWN, 0)
    failed = total - delivered - rejected - unconfirmed
    result = {
        "records_delivered": delivered,
        "records_rejected": rejected,
        "records_failed": failed,
        "records_unconfirmed": unconfirmed,
    }
    if delivered == total:
        return result, f"All {total} records were delivered."
    message = (
        f"{delivered} of {total} records delivered, {rejected} rejected by CDP, "
        f"{failed} not delivered"
    )
    if unconfirmed:
        message += (
            f", {unconfirmed} of unknown outcome (CDP may have applied them; they are not "
            "re-sent as undelivered)"
        )
    message += "."
    live = BatchFile.objects.filter(batch_id=batch_id, next__isnull=True)
    reason = (
        live.filter(status__in=(BatchFile.Status.FAILED, BatchFile.Status.LOG_UNAVAILABLE))
        .order_by("sequence")
        .values_list("message", flat=True)
        .first()
    )
    if reason:
        message += f" {reason}"
    return result, message


def _batch_recount(
    batch_id: int, *, user: AbstractBaseUser | None = None, actor_label: str = ""
) -> None:
    """Recount a finished batch's outcomes after a late error log resolved some of them."""
    counts, message = _batch_outcomes(batch_id)
    Batch.objects.filter(pk=batch_id).update(message=message, updated_at=timezone.now(), **counts)
    batch_event_create(
        batch_id=batch_id,
        kind="note",
        actor=user,
        actor_label=actor_label,
        message=f"Outcomes recounted from CDP's error log: {message}",
        data=counts,
    )


def batch_notify(*, batch_id: int) -> int:
    """Email the creator and the approver that a batch ended (counts only, no personal data)."""
    batch = Batch.objects.select_related("created_by", "approved_by").get(pk=batch_id)
    recipients = sorted(
        {
            user.email
            for user in (batch.created_by, batch.approved_by)
            if user is not None and user.email
        }
    )
    if not recipients:
        return 0
    body = (
        f"Batch {batch.pk} ({batch.schema}) ended: {batch.get_status_display()}.\n\n"
        f"{batch.message}\n\n"
        f"Delivered: {batch.records_delivered}\n"
        f"Rejected by CDP: {batch.records_rejected}\n"
        f"Not delivered: {batch.records_failed}\n"
        f"Outcome unknown: {batch.records_unconfirmed}\n\n"
        f"Details: {settings.SITE_URL}{reverse('admin:batches_batch_change', args=[batch.pk])}\n"
    )
    try:
        return send_mail(
            f"CDP Stage: batch {batch.pk} {batch.get_status_display().lower()}",
            body,
            None,
            recipients,
        )
    except Exception:
        # The batch has ended either way; a mail server problem must not undo that.
        logger.exception("Could not send the end-of-batch email for batch %s", batch_id)
        return 0
