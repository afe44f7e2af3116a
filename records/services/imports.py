"""Import services: create and carry out import runs, and recompute staged records' values.

An import run is a row (the source of truth) plus a job that carries it out. The job and the
`stage_import` command both call import_run_execute: it claims the run with a conditional
UPDATE and a lease, stages the file in ONE transaction (all-or-nothing is a rollback), writes
progress and renews the lease on a second connection so the admin sees it while the data
transaction is open (a heartbeat thread renews it too while one long statement runs), and
finishes with a conditional UPDATE inside that transaction. Every status change goes through
import_run_transition (conditional UPDATE + audit event); leases are cdpstage.leases, the
same as batch work.
"""

from __future__ import annotations

import codecs
import logging
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone
from rq.timeouts import JobTimeoutException

from cdpstage.errors import ApplicationError
from cdpstage.leases import (
    LeaseLostError,
    lease_fence,
    lease_heartbeat,
    lease_renew,
    lease_until,
    lease_verdict,
)
from cdpstage.queueing import enqueue_after_commit
from records.importing import (
    DELIMITERS,
    REFUSED,
    Counts,
    ErrorReport,
    FileProblem,
    StageOptions,
    count_newlines,
    detect_format,
    open_source,
    stage_source,
)
from records.mapping.documents import (
    MappingDocument,
    MappingDocumentError,
    parse_document,
    to_json,
)
from records.models import (
    Guest,
    GuestMigration,
    GuestMode,
    ImportRun,
    ImportRunEvent,
    Mapping,
    Order,
    Schema,
    TrackingEvent,
)
from records.services.erasure import suppression_mark_invalid
from records.services.values import guests_refresh_values, tracking_refresh_values

logger = logging.getLogger(__name__)

__all__ = [
    "ImportProgress",
    "guests_refresh_values",
    "import_run_cancel",
    "import_run_crashed",
    "import_run_create",
    "import_run_execute",
    "import_run_fail",
    "import_run_start_mapped",
    "import_run_transition",
    "import_runs_reconcile",
    "tracking_refresh_values",
]

Status = ImportRun.Status
PROGRESS_DB_ALIAS = "progress"
JOB_FUNC = "records.jobs.import_run_execute"
ON_FAILURE = "records.jobs.on_import_failure"
QUEUE = "imports"
FLAT_FORMATS = (ImportRun.Format.CSV, ImportRun.Format.XLSX)
# A pending run whose job has not started after this long is enqueued again (Redis lost it,
# or the enqueue after commit failed).
PENDING_GRACE = timedelta(seconds=30)
# Reconcilers of every worker may run at once: one advisory lock lets one of them act.
RECONCILE_LOCK_KEY = 0x1D_0001


def job_id_for(run_id: int, attempt: int) -> str:
    """The deterministic job id of one attempt at an import run."""
    return f"importrun-{run_id}-a{attempt}"


def _transition_sources(target: str) -> list[str]:
    return [s for s, targets in ImportRun.TRANSITIONS.items() if target in targets]


# The run is this attempt's while it is running under it.
RUNNING_OWNED = {"status": ImportRun.Status.RUNNING}


def import_run_transition(
    *,
    import_run_id: int,
    target: str,
    attempt: int | None = None,
    sources: tuple[str, ...] | None = None,
    where: Q | None = None,
    fields: dict[str, Any] | None = None,
    message: str = "",
    actor: Any = None,
    actor_label: str = "",
) -> bool:
    """The only place an import run's status changes: conditional UPDATE + audit event.

    Allowed sources come from ImportRun.TRANSITIONS (narrowed by `sources`); `attempt` makes
    the change conditional on the caller still owning the run, `where` adds conditions.
    True when this caller won.
    """
    allowed = _transition_sources(target)
    if sources is not None:
        allowed = [status for status in allowed if status in sources]
    with transaction.atomic():
        current = (
            ImportRun.objects.filter(pk=import_run_id).values_list("status", "attempt").first()
        )
        if current is None or current[0] not in allowed:
            return False
        rows = ImportRun.objects.filter(pk=import_run_id, status=current[0])
        if attempt is not None:
            rows = rows.filter(attempt=attempt)
        if where is not None:
            rows = rows.filter(where)
        if not rows.update(status=target, updated_at=timezone.now(), **(fields or {})):
            return False
        ImportRunEvent.objects.create(
            run_id=import_run_id,
            actor=actor if actor is not None and actor.is_authenticated else None,
            actor_label=actor_label or ("" if actor is not None else "worker"),
            attempt=attempt if attempt is not None else current[1],
            from_status=current[0],
            to_status=target,
            message=message[:2000],
        )
    return True


# -- create ----------------------------------------------------------------------------------


@transaction.atomic
def import_run_create(
    *,
    uploaded_file: File,
    schema: str,
    format: str | None = None,
    encoding: str = "",
    delimiter: str = "",
    on_error: str = ImportRun.OnError.ABORT,
    ignore_unknown_columns: bool = False,
    guest_mode: str = GuestMode.UPSERT,
    sheet: str = "",
    header_row: int | None = None,
    mapping: MappingDocument | None = None,
    saved_mapping: Mapping | None = None,
    await_mapping: bool = False,
    user: Any = None,
    enqueue: bool = True,
) -> ImportRun:
    """Save an uploaded file to storage and create its import run (pending).

    With enqueue (the default) the run is carried out in the background by the `imports`
    queue once this transaction commits; the stage_import command passes enqueue=False and
    carries it out itself. The format is detected from the name and content when not given.
    `mapping` reads a flat file of another layout (`saved_mapping`: the saved one it came
    from); `await_mapping` leaves the run waiting for import_run_start_mapped (the admin's
    mapping step) instead.
    """
    if schema not in Schema.values:
        raise ApplicationError(f"Choose what the file holds: {', '.join(Schema.values)}.")
    if guest_mode not in GuestMode.values:
        raise ApplicationError("Choose upsert or insert for the guests of this file.")
    if on_error not in ImportRun.OnError.values:
        raise ApplicationError("Choose all-or-nothing or skip-bad-rows.")
    if delimiter not in DELIMITERS:
        raise ApplicationError("The delimiter must be a comma, semicolon, tab or pipe.")
    if encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ApplicationError(f"{encoding!r} is not an encoding this server knows.") from None
    name = os.path.basename(getattr(uploaded_file, "name", "") or "upload")
    head = _head(uploaded_file)
    detected = format or detect_format(name, head)
    if detected not in ImportRun.Format.values:
        raise ApplicationError(f"Choose the file format: {', '.join(ImportRun.Format.values)}.")
    if (mapping is not None or await_mapping) and detected not in FLAT_FORMATS:
        raise ApplicationError(
            "A column mapping applies to CSV and XLSX files; JSON and NDJSON files use CDP's "
            "own field names."
        )
    if mapping is not None and mapping.schema != schema:
        raise ApplicationError(f"This mapping is for {mapping.schema} files, not {schema}.")
    run = ImportRun(
        schema=schema,
        format=detected,
        original_name=name[:255],
        encoding=encoding,
        delimiter=delimiter,
        on_error=on_error,
        ignore_unknown_columns=ignore_unknown_columns,
        guest_mode=guest_mode,
        sheet=(sheet or "").strip()[:100],
        header_row=header_row,
        created_by=user if getattr(user, "pk", None) else None,
        bytes_total=getattr(uploaded_file, "size", None) or 0,
        attempt=1,
        status=Status.MAPPING if await_mapping else Status.PENDING,
        **_mapping_fields(mapping, saved_mapping),
    )
    run.source_file.save(name, uploaded_file, save=False)
    run.bytes_total = run.source_file.size
    run.save()
    if await_mapping:
        logger.info("Import run %s created (%s, %s), waiting for its mapping", run.pk, schema,
                    detected)  # fmt: skip
        return run
    run.job_id = job_id_for(run.pk, 1) if enqueue else ""
    run.save(update_fields=["job_id"])
    if enqueue:
        enqueue_after_commit(QUEUE, JOB_FUNC, run.pk, 1, job_id=run.job_id, on_failure=ON_FAILURE)
    logger.info("Import run %s created (%s, %s)", run.pk, schema, detected)
    return run


def _mapping_fields(document: MappingDocument | None, saved: Mapping | None) -> dict[str, Any]:
    """The run's copy of the mapping it reads its file with (the saved one may change later)."""
    if document is None:
        return {"mapping": None, "mapping_version": None, "mapping_document": None}
    return {
        "mapping": saved,
        "mapping_version": saved.version if saved is not None else None,
        "mapping_document": to_json(document),
    }


@transaction.atomic
def import_run_start_mapped(
    *, import_run_id: int, mapping: MappingDocument, saved_mapping: Mapping | None = None
) -> ImportRun:
    """Start a run that waited for its mapping (the admin's mapping step) with this mapping."""
    run = ImportRun.objects.select_for_update().filter(pk=import_run_id).first()
    if run is None:
        raise ApplicationError("There is no such import run.")
    if run.status != Status.MAPPING:
        raise ApplicationError(f"Import run {run.pk} has already started.")
    if mapping.schema != run.schema:
        raise ApplicationError(f"This mapping is for {mapping.schema} files, not {run.schema}.")
    fields = _mapping_fields(mapping, saved_mapping)
    job_id = job_id_for(run.pk, run.attempt)
    updated = import_run_transition(
        import_run_id=run.pk,
        target=Status.PENDING,
        sources=(Status.MAPPING,),
        fields={"job_id": job_id, **fields},
        message="Columns mapped; queued.",
        actor_label="mapping",
    )
    if not updated:
        raise ApplicationError(f"Import run {run.pk} has already started.")
    enqueue_after_commit(QUEUE, JOB_FUNC, run.pk, run.attempt, job_id=job_id, on_failure=ON_FAILURE)
    logger.info("Import run %s: mapped, enqueued", run.pk)
    run.refresh_from_db()
    return run


def _head(uploaded_file: File) -> bytes:
    try:
        uploaded_file.seek(0)
        head = uploaded_file.read(64 * 1024)
        uploaded_file.seek(0)
    except (AttributeError, OSError, ValueError):
        return b""
    return head if isinstance(head, bytes) else head.encode()


# -- execute ---------------------------------------------------------------------------------


class ImportStopped(Exception):
    """An import failed on an unexpected error; its text names the type only (no data)."""


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """What a progress listener (the command) is told."""

    rows_read: int
    rows_total: int
    bytes_read: int
    bytes_total: int
    counts: Counts


class _ProgressWriter:
    """Writes rows/bytes read and renews the lease on a connection outside the data transaction.

    When the caller is already inside a transaction (tests), the
    run row is not visible to another connection, so progress goes through the same one.
    """

    def __init__(
        self,
        run: ImportRun,
        attempt: int,
        listener: Callable[[ImportProgress], None] | None,
    ) -> None:
        self.run_id = run.pk
        self.attempt = attempt
        self.rows_total = run.rows_total
        self.bytes_total = run.bytes_total
        self.listener = listener
        separate = PROGRESS_DB_ALIAS in settings.DATABASES and not connection.in_atomic_block
        self.alias = PROGRESS_DB_ALIAS if separate else DEFAULT_DB_ALIAS

    def write(self, **fields: Any) -> None:
        lease_renew(
            ImportRun, self.run_id, self.attempt, owned=RUNNING_OWNED, using=self.alias, **fields
        )

    def __call__(self, counts: Counts, bytes_read: int) -> None:
        self.write(rows_read=counts.read, bytes_read=bytes_read)
        if self.listener is not None:
            self.listener(
                ImportProgress(counts.read, self.rows_total, bytes_read, self.bytes_total, counts)
            )

    def close(self) -> None:
        if self.alias != DEFAULT_DB_ALIAS:
            connections[self.alias].close()


class _RollBack(Exception):
    """Raised inside the data transaction to undo it (all-or-nothing with bad rows)."""

    def __init__(self, counts: Counts) -> None:
        super().__init__("roll back")
        self.counts = counts


def _claim(run_id: int, attempt: int) -> bool:
    now = timezone.now()
    return import_run_transition(
        import_run_id=run_id,
        target=Status.RUNNING,
        attempt=attempt,
        where=Q(status=Status.PENDING) | Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        message=f"Attempt {attempt} started.",
        fields={
            "lease_until": lease_until(now=now),
            "started_at": Coalesce("started_at", now),
            "finished_at": None,
            "rows_read": 0,
            "bytes_read": 0,
            "rows_created": 0,
            "rows_updated": 0,
            "rows_unchanged": 0,
            "rows_invalid": 0,
            "rows_bad": 0,
            "message": "",
        },
    )


def _finish(run_id: int, attempt: int, status: str, **fields: Any) -> bool:
    """The conditional UPDATE that ends a run; False when another attempt owns it now."""
    return import_run_transition(
        import_run_id=run_id,
        target=status,
        attempt=attempt,
        sources=(Status.RUNNING,),
        message=fields.get("message", ""),
        fields={"finished_at": timezone.now(), "lease_until": None, **fields},
    )


def _count_fields(counts: Counts) -> dict[str, int]:
    return {
        "rows_read": counts.read,
        "rows_created": counts.created,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_invalid": counts.invalid,
        "rows_bad": counts.bad,
    }


def _estimate_rows(run: ImportRun) -> int:
    if run.format not in (ImportRun.Format.CSV, ImportRun.Format.NDJSON):
        return 0
    with run.source_file.open("rb") as raw:
        lines = count_newlines(raw)
    return max(lines - 1, 0) if run.format == ImportRun.Format.CSV else lines


def import_run_execute(
    *,
    import_run_id: int,
    attempt: int,
    on_progress: Callable[[ImportProgress], None] | None = None,
) -> ImportRun | None:
    """Carry out one attempt at an import run; returns the finished run, or None when this
    attempt does not own the run (already done, or another attempt claimed it).

    Not atomic as a whole, on purpose: the claim and the progress must be visible to others
    while the data transaction is open. Nothing is written for a refused file, and in
    all-or-nothing mode nothing is written when any row is bad.
    """
    if not _claim(import_run_id, attempt):
        logger.info("Import run %s attempt %s: not claimable, skipping", import_run_id, attempt)
        return None
    run = ImportRun.objects.get(pk=import_run_id)
    logger.info("Import run %s attempt %s: started", run.pk, attempt)
    report = ErrorReport(max_lines=settings.IMPORT_REPORT_MAX_LINES)
    progress = _ProgressWriter(run, attempt, on_progress)
    counts = Counts()  # filled as rows are read, so a failure reports how far it got
    try:
        try:
            run.rows_total = _estimate_rows(run)
            progress.rows_total = run.rows_total
            progress.write(rows_total=run.rows_total)
            with lease_heartbeat(ImportRun, run.pk, attempt, owned=RUNNING_OWNED):
                _stage(run, attempt, report, progress, counts)
        except FileProblem as problem:
            report.add(None, "", problem.code, problem.message, severity=REFUSED)
            _end_failed(run, attempt, report, counts, problem.message)
        except _RollBack as rollback:
            counts = rollback.counts
            _end_failed(run, attempt, report, counts, _abort_message(counts, report))
        except LeaseLostError:
            logger.warning(
                "Import run %s attempt %s: cancelled or lease lost, rolled back", run.pk, attempt
            )
            return None
        except (OperationalError, InterfaceError):
            # The database went away: leave the run to its lease; the reconciler retries it.
            logger.exception("Import run %s attempt %s: database error", run.pk, attempt)
            raise
        except JobTimeoutException:
            _end_failed(
                run,
                attempt,
                report,
                counts,
                "The import took longer than the worker's job timeout and was stopped; nothing "
                f"was imported ({counts.read:,} rows had been read). Raise the timeout of the "
                "imports queue, or split the file.",
                last_error="JobTimeoutException",
            )
            raise
        except Exception as exc:
            # Exception texts can quote data (a database error shows the duplicate key), so
            # the log and RQ's failed-job registry get the type and the stack, not the text.
            logger.error(
                "Import run %s attempt %s: unexpected %s\n%s",
                run.pk,
                attempt,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            _end_failed(
                run,
                attempt,
                report,
                counts,
                "The import stopped on an unexpected error and nothing was imported; the "
                "details are in the worker's log.",
                last_error=type(exc).__name__,
            )
            raise ImportStopped(
                f"Import run {run.pk} stopped on {type(exc).__name__} (see the worker's log)."
            ) from None
    finally:
        report.close()
        progress.close()
    run.refresh_from_db()
    logger.info("Import run %s attempt %s: %s", run.pk, attempt, run.status)
    return run


def _stage(
    run: ImportRun, attempt: int, report: ErrorReport, progress: _ProgressWriter, counts: Counts
) -> None:
    options = StageOptions(
        schema=run.schema,
        on_error=run.on_error,
        ignore_unknown_columns=run.ignore_unknown_columns,
        guest_mode=run.guest_mode,
        mapping=_run_mapping(run),
    )
    with run.source_file.open("rb") as raw:
        source = open_source(raw, **run.read_options)
        try:
            if source.rows_estimate and not run.rows_total:
                run.rows_total = progress.rows_total = source.rows_estimate
            progress.write(
                rows_total=run.rows_total,
                detected_encoding=source.encoding,
                detected_delimiter=source.delimiter,
            )
            with transaction.atomic():
                stage_source(
                    source,
                    options=options,
                    import_run_id=run.pk,
                    report=report,
                    progress=progress,
                    counts=counts,
                )
                if counts.bad and run.on_error == ImportRun.OnError.ABORT:
                    raise _RollBack(counts)
                suppressed = _mark_suppressed(run)
                counts.invalid += suppressed
                status = Status.PARTIAL if counts.bad else Status.SUCCEEDED
                fields = _count_fields(counts)
                fields["bytes_read"] = run.bytes_total
                if not counts.read:
                    raise FileProblem("The file has no data rows.", code="no_rows")
                if report.lines:
                    fields["error_report"] = _save_report(run, report)
                fields["message"] = _success_message(counts)
                if suppressed:
                    fields["message"] += (
                        f" {suppressed:,} of them carry the identity of a person who asked to be "
                        "erased (suppressed)."
                    )
                if not _finish(run.pk, attempt, status, **fields):
                    raise LeaseLostError(f"Import run {run.pk} attempt {attempt} lost its lease.")
        finally:
            source.close()


def _mark_suppressed(run: ImportRun) -> int:
    """Records of this run that carry an erased person's identity become invalid."""
    model = {
        Schema.GUEST: Guest,
        Schema.TRACKING: TrackingEvent,
        Schema.ORDER: Order,
        Schema.MIGRATION: GuestMigration,
    }.get(run.schema)
    if model is None:
        # Subscription and extension files change guests through the refresh, which checks.
        return 0
    return suppression_mark_invalid(model, import_run_id=run.pk)


def _run_mapping(run: ImportRun) -> MappingDocument | None:
    if not run.mapping_document:
        return None
    try:
        return parse_document(run.mapping_document, schema=run.schema)
    except MappingDocumentError as exc:
        # Checked when the run was created; a document this version cannot read is the file's
        # problem, reported like any other.
        raise FileProblem(
            "The run's mapping cannot be used: " + exc.message, code="mapping"
        ) from None


def _save_report(run: ImportRun, report: ErrorReport) -> str:
    stem = os.path.splitext(os.path.basename(run.original_name))[0][:60] or "import"
    field = ImportRun._meta.get_field("error_report")
    name = field.generate_filename(run, f"import-{run.pk}-{stem}-errors.csv")
    return report.save(field.storage, name)


def _end_failed(
    run: ImportRun,
    attempt: int,
    report: ErrorReport,
    counts: Counts,
    message: str,
    last_error: str = "",
) -> None:
    fields: dict[str, Any] = _count_fields(counts)
    fields.update(rows_created=0, rows_updated=0, rows_unchanged=0, message=message)
    if last_error:
        fields["last_error"] = last_error
    if report.lines:
        fields["error_report"] = _save_report(run, report)
    if not _finish(run.pk, attempt, Status.FAILED, **fields):
        logger.warning(
            "Import run %s attempt %s: could not mark failed (lease lost)", run.pk, attempt
        )


def _abort_message(counts: Counts, report: ErrorReport) -> str:
    """Why nothing was imported, the refused row that blocked it first (not a row staged as
    invalid, which blocks nothing)."""
    blocking = report.first_refused
    first = f" Blocked by {blocking.as_sentence().rstrip('.')}." if blocking is not None else ""
    rows = "row" if counts.read == 1 else "rows"
    return (
        f"Nothing was imported: {counts.bad:,} of {counts.read:,} {rows} could not be "
        f"staged.{first} Fix them, or import again choosing to skip refused rows; the "
        "error report lists them."
    )


def _success_message(counts: Counts) -> str:
    parts = [
        f"{counts.created:,} created",
        f"{counts.updated:,} updated",
        f"{counts.unchanged:,} unchanged",
    ]
    text = f"{counts.read:,} rows read: {', '.join(parts)}."
    if counts.invalid:
        text += f" {counts.invalid:,} staged as invalid (see the error report)."
    if counts.bad:
        text += f" {counts.bad:,} refused rows skipped (see the error report)."
    return text


CANCELLABLE = (Status.MAPPING, Status.PENDING, Status.RUNNING)


def import_run_cancel(*, import_run_id: int, user: Any) -> ImportRun:
    """Stop a run that has not finished; nothing of it is imported.

    The run is marked failed at once. A running job notices at its next progress write (about
    every second: _ProgressWriter's conditional UPDATE matches no row) and rolls its data
    transaction back; a pending job finds nothing to claim. A run whose data transaction is
    already committing holds its row, so this waits, then finds it finished and says so.
    """
    who = user.get_username() if getattr(user, "pk", None) else "the command line"
    now = timezone.now()
    reason = f"Cancelled by {who} at {timezone.localtime(now):%H:%M:%S}; nothing was imported."
    if not import_run_transition(
        import_run_id=import_run_id,
        target=Status.FAILED,
        sources=CANCELLABLE,
        fields={"message": reason, "finished_at": now, "lease_until": None},
        message=reason,
        actor=user if getattr(user, "pk", None) else None,
        actor_label="" if getattr(user, "pk", None) else "command line",
    ):
        run = ImportRun.objects.filter(pk=import_run_id).first()
        if run is None:
            raise ApplicationError("There is no such import run.")
        raise ApplicationError(
            f"Import run {run.pk} has already finished ({run.get_status_display().lower()}); "
            "there is nothing to cancel."
        )
    logger.info("Import run %s cancelled by user %s", import_run_id, getattr(user, "pk", None))
    return ImportRun.objects.get(pk=import_run_id)


def import_run_fail(
    *,
    import_run_id: int,
    reason: str,
    attempt: int | None = None,
    actor: Any = None,
    actor_label: str = "",
) -> bool:
    """Mark a pending or running run failed with a readable reason (e.g. stopped by the user)."""
    return import_run_transition(
        import_run_id=import_run_id,
        target=Status.FAILED,
        attempt=attempt,
        message=reason,
        actor=actor,
        actor_label=actor_label,
        fields={
            "message": reason,
            "finished_at": timezone.now(),
            "lease_until": None,
        },
    )


def import_run_crashed(*, import_run_id: int, attempt: int, error: str) -> bool:
    """The run's job died while running it: expire its lease now, so the next reconciler pass
    (every RQ_MAINTENANCE_INTERVAL) retries it or gives up, instead of waiting out the lease."""
    now = timezone.now()
    expired = ImportRun.objects.filter(
        pk=import_run_id, attempt=attempt, status=Status.RUNNING
    ).update(lease_until=now, last_error=error[:1000], updated_at=now)
    return bool(expired)


# -- reconcile -------------------------------------------------------------------------------


@transaction.atomic
def import_runs_reconcile() -> dict[str, int]:
    """Re-enqueue import runs whose job was lost; give up on runs that keep dying.

    - pending for more than PENDING_GRACE with no live job: enqueue the next attempt;
    - running with an expired lease (its worker died): enqueue the next attempt, up to
      CDP_MAX_ATTEMPTS, then mark it failed with a readable reason.
    Safe to run from every worker at once: a transaction-level advisory lock lets one act.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RECONCILE_LOCK_KEY])
        if not cursor.fetchone()[0]:
            return {"skipped": 1}
    now = timezone.now()
    done = {"requeued": 0, "failed": 0}
    candidates = ImportRun.objects.filter(
        Q(status=Status.PENDING, updated_at__lt=now - PENDING_GRACE)
        | Q(status=Status.RUNNING, lease_until__lt=now)
    ).only("pk", "status", "attempt", "job_id", "lease_until", "updated_at")
    for run in candidates:
        # (A pending run without a job id was created by stage_import, which claims it at
        # once; still pending after the grace period means that process died: adopt it.)
        verdict = lease_verdict(
            claimed=run.status == Status.RUNNING,
            lease_until=run.lease_until if run.status == Status.RUNNING else None,
            updated_at=run.updated_at,
            job_id=run.job_id,
            queue=QUEUE,
            now=now,
            grace=PENDING_GRACE,
        )
        if verdict is None:
            continue  # queued behind other work: not lost
        if run.status == Status.RUNNING:
            lease_fence(ImportRun, run.pk, run.attempt)
        if run.attempt >= settings.CDP_MAX_ATTEMPTS:
            if import_run_transition(
                import_run_id=run.pk,
                target=Status.FAILED,
                attempt=run.attempt,
                sources=(run.status,),
                actor_label="reconciler",
                message=f"Given up: {verdict[0]}.",
                fields={
                    "finished_at": now,
                    "lease_until": None,
                    "message": (
                        f"The import stopped {run.attempt} times without finishing (its worker "
                        "was stopped or ran out of time) and was given up; nothing was "
                        "imported. Start a new import run."
                    ),
                },
            ):
                done["failed"] += 1
                logger.warning("Import run %s failed after %s attempts", run.pk, run.attempt)
            continue
        next_attempt = run.attempt + 1
        new_job = job_id_for(run.pk, next_attempt)
        if ImportRun.objects.filter(pk=run.pk, status=run.status, attempt=run.attempt).update(
            attempt=next_attempt, job_id=new_job, lease_until=None, updated_at=now
        ):
            enqueue_after_commit(
                QUEUE, JOB_FUNC, run.pk, next_attempt, job_id=new_job, on_failure=ON_FAILURE
            )
            done["requeued"] += 1
            logger.info(
                "Import run %s: re-enqueued as attempt %s (%s)", run.pk, next_attempt, verdict[0]
            )
    return done
