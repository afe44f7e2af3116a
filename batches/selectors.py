"""Reads used by the admin, the commands and the records pages: delivery history, progress,
sample lines for the approver."""

from __future__ import annotations

import gzip
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files.storage import default_storage
from django.db.models import Count, QuerySet
from django.utils import timezone

from batches.models import (
    BATCH_FINAL_STATUSES,
    BATCHFILE_FINAL_STATUSES,
    Batch,
    BatchEvent,
    BatchFile,
    BatchItem,
)
from records.masking import can_view_pii, mask_value

__all__ = [
    "BatchProgress",
    "DeliveryRow",
    "batch_detail",
    "batch_events",
    "batch_files",
    "batch_progress",
    "batch_sample_lines",
    "delivery_history",
]


@dataclass(frozen=True)
class DeliveryRow:
    """One time a record was in a file: which batch, file, ref, line, and what became of it."""

    batch_id: int
    batch_status: str
    created_by: str
    approved_by: str
    sent_at: datetime | None
    file_id: int
    file_sequence: int
    batch_ref: str
    file_status: str
    line: int
    outcome: str
    outcome_display: str
    code: str
    message: str
    finished_at: datetime | None


def delivery_history(ref: uuid.UUID | str) -> list[DeliveryRow]:
    """Every file the record with this `ref` went into, newest first (ids, codes, no PII)."""
    items = (
        BatchItem.objects.filter(record_ref=ref)
        # One query for the item, its file, the batch and both people.
        .select_related(
            "file", "file__batch", "file__batch__created_by", "file__batch__approved_by"
        )
        .order_by("-file_id")
    )
    rows = []
    for item in items:
        batch_file, batch = item.file, item.file.batch
        rows.append(
            DeliveryRow(
                batch_id=batch.pk,
                batch_status=batch.get_status_display(),
                created_by=batch.created_by.get_username(),
                approved_by=batch.approved_by.get_username() if batch.approved_by else "",
                sent_at=batch.sent_at,
                file_id=batch_file.pk,
                file_sequence=batch_file.sequence,
                batch_ref=str(batch_file.batch_ref),
                file_status=batch_file.get_status_display(),
                line=item.line,
                outcome=item.outcome,
                outcome_display=item.get_outcome_display(),
                code=item.code,
                message=item.message,
                finished_at=batch_file.finished_at,
            )
        )
    return rows


def batch_files(batch: Batch) -> QuerySet[BatchFile]:
    """The batch's files in order, each ref it was sent under included."""
    return BatchFile.objects.filter(batch=batch).order_by("sequence", "id")


def batch_events(batch: Batch) -> QuerySet[BatchEvent]:
    """The batch's audit timeline, oldest first."""
    return BatchEvent.objects.filter(batch=batch).select_related("actor", "file").order_by("id")


@dataclass(frozen=True)
class BatchProgress:
    """What the progress bar shows: a phase, done / total, a rate and an ETA."""

    phase: str
    done: int
    total: int
    unit: str
    rate: float | None
    eta_seconds: float | None
    finished: bool

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else (100 if self.finished else 0)

    @property
    def counts(self) -> str:
        """ "done/total unit", or "" while the total is not known yet (a build that has not
        selected its records): "0/0 records" would read as an empty batch."""
        if not self.total and not self.finished:
            return ""
        return f"{self.done}/{self.total} {self.unit}"


def batch_progress(batch: Batch) -> BatchProgress:
    """Build progress in records, upload progress in files, from the rows (cheap queries)."""
    finished = batch.status in BATCH_FINAL_STATUSES
    if batch.status in (Batch.Status.DRAFT, Batch.Status.BUILDING):
        done, total, unit = batch.records_written, batch.records_total, "records"
        started = batch.build_started_at
    elif batch.status in (Batch.Status.UPLOADING, Batch.Status.PROCESSING) or (
        finished and batch.sent_at
    ):
        current = BatchFile.objects.filter(batch=batch, next__isnull=True)
        counts = dict(current.values_list("status").annotate(n=Count("id")).order_by())
        total = sum(counts.values())
        done = sum(n for status, n in counts.items() if status in BATCHFILE_FINAL_STATUSES)
        unit, started = "files", batch.sent_at
    else:
        done = total = batch.records_total
        unit, started = "records", batch.build_started_at
    rate = eta = None
    if started and done and not finished:
        elapsed = (timezone.now() - started).total_seconds()
        if elapsed > 0:
            rate = done / elapsed
            eta = (total - done) / rate if rate else None
    phase = batch.get_status_display()
    return BatchProgress(phase, done, total, unit, rate, eta, finished)


def batch_sample_lines(
    batch_file: BatchFile, *, user: AbstractBaseUser, count: int = 3
) -> list[str]:
    """The first `count` lines of a stored file as sent, personal data masked unless the user
    may see it (`records.view_pii`). Reads only the start of the file."""
    lines: list[str] = []
    if not batch_file.file:
        return lines
    schema = batch_file.batch.schema
    show_pii = can_view_pii(user)
    with (
        default_storage.open(batch_file.file.name, "rb") as stored,
        gzip.GzipFile(fileobj=stored) as text,
    ):
        for raw in text:
            if len(lines) >= count:
                break
            record: dict[str, Any] = orjson.loads(raw)
            if not show_pii and isinstance(record.get("value"), dict):
                record["value"] = mask_value(record["value"], schema)
            lines.append(orjson.dumps(record).decode())
    return lines


def batch_detail(batch: Batch) -> dict[str, Any]:
    """Everything the batch page and `batch_status --json` show (no personal data)."""
    files = []
    for batch_file in batch_files(batch):
        files.append(
            {
                "id": batch_file.pk,
                "sequence": batch_file.sequence,
                "batch_ref": str(batch_file.batch_ref),
                "previous_ref": str(batch_file.previous.batch_ref)
                if batch_file.previous_id
                else None,
                "status": batch_file.status,
                "remote_status": batch_file.remote_status,
                "records": batch_file.record_count,
                "size": batch_file.size,
                "md5": batch_file.md5,
                "approved_md5": batch_file.approved_md5,
                "message": batch_file.message,
                "stats": batch_file.stats,
            }
        )
    progress = batch_progress(batch)
    return {
        "id": batch.pk,
        "schema": batch.schema,
        "status": batch.status,
        "note": batch.note,
        "created_by": batch.created_by.get_username(),
        "approved_by": batch.approved_by.get_username() if batch.approved_by else None,
        "records": batch.records_total,
        "delivered": batch.records_delivered,
        "rejected": batch.records_rejected,
        "not_delivered": batch.records_failed,
        "unconfirmed": batch.records_unconfirmed,
        "message": batch.message,
        "progress": {
            "done": progress.done,
            "total": progress.total,
            "unit": progress.unit,
            "counts": progress.counts,
            "eta_seconds": progress.eta_seconds,
        },
        "validation_summary": batch.validation_summary,
        "files": files,
    }
