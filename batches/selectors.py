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
from django.db import connection
from django.db.models import CharField, Count, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Concat
from django.utils import timezone

from batches.cdpcodes import BY_KEY, CodeGroup, code_group
from batches.models import (
    BATCH_FINAL_STATUSES,
    BATCHFILE_FINAL_STATUSES,
    Batch,
    BatchEvent,
    BatchFile,
    BatchItem,
    BatchSchema,
)
from batches.services.allowance import allowance_notes
from batches.services.building import SCHEMAS
from records.masking import can_view_pii, mask_email, mask_identity_key, mask_message, mask_value
from records.models import Guest, GuestMigration, Order, ReviewStatus, TrackingEvent
from records.services import lifecycle

__all__ = [
    "BatchProgress",
    "DeliveryRow",
    "RejectedRow",
    "RejectionGroup",
    "ResendPreview",
    "batch_detail",
    "batch_events",
    "batch_files",
    "batch_progress",
    "batch_sample_lines",
    "batch_rejected_items",
    "batch_rejected_rows",
    "batch_rejection_groups",
    "batch_resend_preview",
    "delivery_history",
    "latest_rejection",
    "refs_rejected_for",
    "rejection_group_choices",
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
                # The line's own schema: a batch of guest deletions sends "guest" lines.
                record["value"] = mask_value(record["value"], record.get("schema") or schema)
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
        # Guest migrations waiting for CDP's daily allowance (batches.services.allowance).
        "waiting": allowance_notes(batch),
        "files": files,
    }


# The staged records of each batch schema the rejected-records table names (erasure requests
# carry no personal data to name them by).
RECORD_MODELS = {
    "guest": Guest,
    "tracking": TrackingEvent,
    "order": Order,
    "migration": GuestMigration,
}


# -- rejected records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RejectionGroup:
    """The batch's rejected records of one kind of CDP answer: how many, under which codes."""

    group: CodeGroup
    count: int
    # (code, CDP's message, records) as they came in the log.
    answers: tuple[tuple[str, str, int], ...]


def _rejection_answers(batch: Batch) -> list[tuple[str, str, int]]:
    """(code, message, records) of the batch's rejected items: CDP's messages are generic, so
    there are a handful of pairs however many records were rejected."""
    return list(
        BatchItem.objects.filter(file__batch=batch, outcome=BatchItem.Outcome.REJECTED)
        .values_list("code", "message")
        .annotate(n=Count("id"))
        .order_by("-n", "code", "message")
    )


def batch_rejection_groups(batch: Batch, *, user: AbstractBaseUser) -> list[RejectionGroup]:
    """The batch's rejected records grouped by what CDP's answer means, largest group first.
    CDP's messages may quote a record's value: masked without view_pii."""
    show_pii = can_view_pii(user)
    grouped: dict[str, list[tuple[str, str, int]]] = {}
    for code, message, count in _rejection_answers(batch):
        shown = message if show_pii else mask_message(message)
        grouped.setdefault(code_group(code, message).key, []).append((code, shown, count))
    groups = [
        RejectionGroup(BY_KEY[key], sum(n for _, _, n in answers), tuple(answers))
        for key, answers in grouped.items()
    ]
    return sorted(groups, key=lambda g: -g.count)


def batch_rejected_items(batch: Batch, *, group: str = "") -> QuerySet[BatchItem]:
    """The batch's rejected items in file and line order; `group` (a cdpcodes key) keeps the
    items whose code and message fall in that group."""
    items = BatchItem.objects.filter(
        file__batch=batch, outcome=BatchItem.Outcome.REJECTED
    ).select_related("file")
    if group:
        pairs = [
            Q(code=code, message=message)
            for code, message, _ in _rejection_answers(batch)
            if code_group(code, message).key == group
        ]
        if not pairs:
            return items.none()
        condition = pairs[0]
        for pair in pairs[1:]:
            condition |= pair
        items = items.filter(condition)
    return items.order_by("file__sequence", "file_id", "line")


@dataclass(frozen=True)
class RejectedRow:
    """One rejected record as the batch page and its CSV show it (masked without view_pii)."""

    record_id: int
    record_ref: str
    record_label: str
    file_sequence: int
    batch_ref: str
    line: int
    code: str
    group: CodeGroup
    message: str


def _record_labels(schema: str, record_ids: list[int], *, show_pii: bool) -> dict[int, str]:
    """How each record is named: a guest by email (or identity key), an event by its type and
    guest identity; masked unless the user may see personal data."""
    if schema not in RECORD_MODELS:
        return {}
    if schema == "guest":
        rows = Guest.objects.filter(pk__in=record_ids).values_list("pk", "email", "identity_key")
        labels = {}
        for pk, email, key in rows:
            if email:
                labels[pk] = email if show_pii else mask_email(email)
            else:
                labels[pk] = (key if show_pii else mask_identity_key(key)) or f"guest {pk}"
        return labels
    if schema == "order":
        # The order's own reference (not personal), and whose it is (masked).
        rows = Order.objects.filter(pk__in=record_ids).values_list(
            "pk", "reference_id", "contact_identity_key"
        )
        return {
            pk: f"Order {reference} of {key if show_pii else mask_identity_key(key)}"
            for pk, reference, key in rows
        }
    if schema == "migration":
        mask = (lambda key: key) if show_pii else mask_identity_key
        rows = GuestMigration.objects.filter(pk__in=record_ids).values_list(
            "pk", "from_identity_key", "to_identity_key"
        )
        return {pk: f"{mask(source)} → {mask(target)}" for pk, source, target in rows}
    rows = TrackingEvent.objects.filter(pk__in=record_ids).values_list(
        "pk", "type", "guest_identity_key"
    )
    return {
        pk: f"{kind} of {key if show_pii else mask_identity_key(key)}" for pk, kind, key in rows
    }


def batch_rejected_rows(
    batch: Batch, items: QuerySet[BatchItem] | list[BatchItem], *, user: AbstractBaseUser
) -> list[RejectedRow]:
    """Rows for these rejected items (one query for their records' labels)."""
    items = list(items)
    show_pii = can_view_pii(user)
    labels = _record_labels(batch.schema, [item.record_id for item in items], show_pii=show_pii)
    return [
        RejectedRow(
            record_id=item.record_id,
            record_ref=str(item.record_ref),
            record_label=labels.get(item.record_id, "(no longer staged)"),
            file_sequence=item.file.sequence,
            batch_ref=str(item.file.batch_ref),
            line=item.line,
            code=item.code,
            group=code_group(item.code, item.message),
            message=item.message if show_pii else mask_message(item.message),
        )
        for item in items
    ]


def rejection_group_choices() -> list[tuple[str, str]]:
    """(key, title) of the kinds of rejection CDP has given, for the record lists' filter."""
    pairs = BatchItem.objects.filter(outcome=BatchItem.Outcome.REJECTED).values_list(
        "code", "message"
    )
    keys = {code_group(code, message).key for code, message in pairs.distinct()}
    return [(key, BY_KEY[key].title) for key in BY_KEY if key in keys]


def refs_rejected_for(group: str) -> QuerySet:
    """The refs of records CDP rejected with an answer of this kind (a subquery)."""
    pairs = BatchItem.objects.filter(outcome=BatchItem.Outcome.REJECTED).values_list(
        "code", "message"
    )
    condition = Q(pk__in=[])
    for code, message in pairs.distinct():
        if code_group(code, message).key == group:
            condition |= Q(code=code, message=message)
    return BatchItem.objects.filter(condition, outcome=BatchItem.Outcome.REJECTED).values(
        "record_ref"
    )


def latest_rejection() -> Subquery:
    """CDP's latest rejection ("400 Validation error") of the record at OuterRef("ref")."""
    return Subquery(
        BatchItem.objects.filter(record_ref=OuterRef("ref"), outcome=BatchItem.Outcome.REJECTED)
        .order_by("-id")
        .annotate(answer=Concat("code", Value(" "), "message", output_field=CharField()))
        .values("answer")[:1]
    )


# -- re-send --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResendPreview:
    """What "Re-send" would take from a batch that ended with undelivered records, and what it
    leaves out (batches.services.building's RESEND_CANDIDATE decides; these are its counts)."""

    not_delivered: int  # the file failed, or CDP could not say (unknown), or never answered
    cdp_side: int  # rejected with a 5xx: CDP's own failure, re-sent as they are
    fixed: int  # rejected, and changed since (fixed)
    unfixed: int  # rejected and unchanged: left out until fixed
    not_ready: int  # would qualify, but are not ready now (held, invalid, in another batch)

    @property
    def takes(self) -> int:
        return self.not_delivered + self.cdp_side + self.fixed - self.not_ready


def batch_resend_preview(batch: Batch) -> ResendPreview:
    """Counts of the batch's undelivered records by what a re-send does with them."""
    model = RECORD_MODELS.get(batch.schema)
    if model is None:  # erasure requests are not re-sent this way
        return ResendPreview(0, 0, 0, 0, 0)
    from_table = model._meta.db_table
    sql = f"""
        SELECT
          count(*) FILTER (WHERE i.outcome IN ('failed', 'unknown', 'pending')),
          count(*) FILTER (WHERE i.outcome = 'rejected' AND i.code LIKE '5%%'),
          count(*) FILTER (WHERE i.outcome = 'rejected' AND i.code NOT LIKE '5%%'
                           AND t.value_hash <> i.value_hash),
          count(*) FILTER (WHERE i.outcome = 'rejected' AND i.code NOT LIKE '5%%'
                           AND t.value_hash = i.value_hash),
          count(*) FILTER (WHERE (i.outcome IN ('failed', 'unknown', 'pending')
                                  OR i.code LIKE '5%%' OR t.value_hash <> i.value_hash)
                           AND NOT (t.review_status = %(ready)s
                                    AND t.validation_errors = '[]'::jsonb
                                    AND NOT EXISTS (SELECT 1 FROM records_batchmembership m
                                        WHERE m.live AND m.kind = %(kind)s
                                        AND m.record_id = t.id)))
        FROM batches_batchitem i
        JOIN batches_batchfile f ON f.id = i.file_id
        JOIN {from_table} t ON t.id = i.record_id
        WHERE f.batch_id = %(batch)s AND i.outcome <> 'delivered'
          AND NOT EXISTS (SELECT 1 FROM batches_batchfile n WHERE n.previous_id = f.id)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"batch": batch.pk, "ready": ReviewStatus.READY, "kind": batch.schema})
        not_delivered, cdp_side, fixed, unfixed, not_ready = cursor.fetchone()
    return ResendPreview(not_delivered, cdp_side, fixed, unfixed, not_ready)


# The create page counts at most this many candidates per kind and mode (the build takes all).
CANDIDATES_COUNT_CAP = 100_000


@dataclass(frozen=True)
class BatchCandidates:
    """What a new batch of one kind would take now (each count capped at the cap + 1)."""

    schema: str
    label: str
    changed: int  # a delta send: new and changed records
    everything: int  # a full send: delivered unchanged records too

    @property
    def capped(self) -> bool:
        return self.everything > CANDIDATES_COUNT_CAP


def batch_candidates() -> list[BatchCandidates]:
    """Per kind of record, how many a delta and a full send would take (the build's own
    eligibility rule, lifecycle.eligible_sql); counting stops past CANDIDATES_COUNT_CAP."""
    rows = []
    with connection.cursor() as cursor:
        for schema, label in BatchSchema.choices:
            spec = SCHEMAS[schema]
            counts = []
            for include_unchanged in (False, True):
                eligible = lifecycle.eligible_sql(
                    model=spec.model, include_unchanged=include_unchanged
                )
                cursor.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {spec.table} t WHERE {eligible}"
                    " LIMIT %s) c",
                    [CANDIDATES_COUNT_CAP + 1],
                )
                counts.append(cursor.fetchone()[0])
            rows.append(BatchCandidates(schema, label, *counts))
    return rows
