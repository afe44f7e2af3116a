"""Give every record of a file its outcome (from CDP's status and error log), and derive the
batch's status and counts from its files.
"""

from __future__ import annotations

import tempfile
import uuid
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from batches.client import CdpClient, CdpError, CdpPermanentError, parse_error_log
from batches.models import Batch, BatchFile, BatchItem, BatchSchema
from batches.services.building import SCHEMAS, records_release
from batches.services.dispatch import SENDING, batchfiles_dispatch
from batches.services.notify import batch_notify
from batches.services.transitions import (
    batch_event_create,
    batch_transition,
    batchfile_transition,
    cdp_call_recorder,
)
from cdpstage.errors import ApplicationError
from records.services import lifecycle
from records.services.erasure import deletions_apply_outcomes

__all__ = ["batch_refresh", "batchfile_log_fetch"]


MAX_FILE_ERRORS_KEPT = 20


def download_error_log(batch_file: BatchFile, client: CdpClient, log_url: str) -> str:
    """Fetch CDP's error log into storage, streamed; returns its storage name."""
    name = f"batches/batch-{batch_file.batch_id:06d}/logs/{batch_file.batch_ref}.log.gz"
    with tempfile.TemporaryFile() as temporary:
        client.download_log(log_url, temporary)
        temporary.seek(0)
        return default_storage.save(name, File(temporary, name=name))


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
    client = CdpClient.from_settings(on_call=cdp_call_recorder(batch_file.batch_id, batch_file.pk))
    try:
        status = client.status(str(batch_file.batch_ref))
        if status.code != "error" or not status.log_url:
            raise CdpPermanentError(
                f"CDP now reports the file as {status.code[:20]!r} with no error log to fetch."
            )
        log_name = download_error_log(batch_file, client, status.log_url)
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
        # The items first, while the file is still log_unavailable (the only time an unknown
        # outcome may be resolved), then the file with the summary in one UPDATE (batches
        # migration 0011); someone who resolved it meanwhile makes this roll back.
        summary = apply_error_log(batch_file, log_name, awaiting=BatchItem.Outcome.UNKNOWN)
        won = batchfile_transition(
            file_id=batch_file.pk,
            target=BatchFile.Status.ERROR,
            sources=(BatchFile.Status.LOG_UNAVAILABLE,),
            actor=user,
            actor_label=actor_label,
            message="CDP's error log fetched again; outcomes taken from it.",
            fields={
                **summary,
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
        apply_record_outcomes(batch_file, released=True)
        batch_recount(batch_file.batch_id, user=user, actor_label=actor_label)
    return summary["message"]


def apply_error_log(
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


def apply_record_outcomes(batch_file: BatchFile, *, released: bool = False) -> None:
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


def file_finished(batch_id: int) -> None:
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


def batch_recount(
    batch_id: int, *, user: AbstractBaseUser | None = None, actor_label: str = ""
) -> None:
    """Recount a finished batch's outcomes after a late error log resolved some of them.

    The batch is rewritten only if a count changed: a finished batch takes no other change
    (batches migration 0011), so a log that resolved nothing leaves the batch as it was.
    """
    counts, message = _batch_outcomes(batch_id)
    Batch.objects.filter(pk=batch_id).exclude(**counts).update(
        message=message, updated_at=timezone.now(), **counts
    )
    batch_event_create(
        batch_id=batch_id,
        kind="note",
        actor=user,
        actor_label=actor_label,
        message=f"Outcomes recounted from CDP's error log: {message}",
        data=counts,
    )
