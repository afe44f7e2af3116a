"""Batches and their files, items and audit events: what was sent to CDP, when, by whom, and
what CDP said about every record.

Status changes go only through `batches.services.batch_transition` /
`batchfile_transition` (a conditional UPDATE plus an audit event in one transaction), following
the maps below. Rows are never deleted; a PostgreSQL trigger (migration 0002) refuses
DELETE everywhere, any UPDATE of an event, and UPDATEs of the columns that define what was
built and sent.
"""

import uuid

from django.conf import settings
from django.db import models

from cdpstage.models import LeasedWork, TimeStampedModel


class BatchSchema(models.TextChoices):
    """The record kinds a batch can carry (a subset of records.models.Schema)."""

    GUEST = "guest", "Guests"
    TRACKING = "tracking", "Tracking events"
    ORDER = "order", "Orders"
    # Sent as schema "guest" in mode delete / gdpr_delete (records.models.GuestDeletion).
    GUEST_DELETION = "guest_deletion", "Guest deletions (erasure requests)"
    # Schema "migration", mode "guest" (records.models.GuestMigration); sent within the daily
    # allowance CDP_MIGRATION_DAILY_LIMIT (batches.services.allowance).
    MIGRATION = "migration", "Guest migrations"


class Batch(TimeStampedModel, LeasedWork):
    """The approval unit: ready records of one schema, built into 1..n files, approved, sent.

    The LeasedWork fields belong to the build job; each file has its own for upload and polls.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft (waiting to be built)"
        BUILDING = "building", "Building"
        BUILT = "built", "Built, waiting for approval"
        APPROVED = "approved", "Approved, not sent yet"
        UPLOADING = "uploading", "Uploading"
        PROCESSING = "processing", "Processing at CDP"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIALLY_FAILED = "partially_failed", "Partially failed"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    schema = models.CharField(max_length=20, choices=BatchSchema.choices)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.DRAFT, db_index=True
    )
    note = models.CharField(max_length=200, blank=True, help_text="What this batch is for.")
    # False: a delta send (records CDP has with exactly this value are left out). True: a
    # full send, e.g. after CDP lost data.
    include_unchanged = models.BooleanField(
        "full send",
        default=False,
        help_text="Also send records CDP already has with exactly their current value.",
    )
    # PROTECT: a user who created or approved a batch is deactivated, never deleted, so the
    # audit trail keeps its names.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A re-send of the records another batch failed to deliver.
    resend_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="resends"
    )
    # Build progress and result.
    build_started_at = models.DateTimeField(null=True, blank=True)
    built_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Set once the records are locked for this batch (the selection is never redone).
    selected_at = models.DateTimeField(null=True, blank=True)
    records_total = models.PositiveIntegerField(default=0)
    records_written = models.PositiveIntegerField(default=0)
    file_count = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(default=0)
    # What the approver sees besides the files: records of the schema by why they were or were
    # not selected (counts only).
    validation_summary = models.JSONField(default=dict, blank=True)
    # Outcome counts, filled when the batch ends.
    records_delivered = models.PositiveIntegerField(default=0)
    records_rejected = models.PositiveIntegerField(default=0)
    records_failed = models.PositiveIntegerField(default=0)
    # Records whose outcome nobody knows (CDP's error log could not be read or fetched):
    # never counted as failed, never re-sent as undelivered (they may well have been applied).
    records_unconfirmed = models.PositiveIntegerField(default=0)
    # A re-send that also takes the records of unknown outcome: an explicit, warned choice,
    # refused for insert-mode schemas (tracking), where a second copy is a duplicate event.
    resend_unconfirmed = models.BooleanField(default=False)
    # A readable sentence about the final state (why it failed, what to do).
    message = models.TextField(blank=True)
    # Lease bookkeeping besides LeasedWork: when the current attempt's job claimed the row
    # (NULL: enqueued, not yet running) and consecutive failed attempts.
    claimed_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("-id",)
        verbose_name_plural = "batches"
        permissions = [
            ("approve_batch", "Can approve a batch built by someone else"),
            ("send_batch", "Can send an approved batch to CDP"),
        ]
        constraints = [
            # Four eyes in the database too: the service refuses it, and so does a raw UPDATE.
            models.CheckConstraint(
                condition=models.Q(approved_by__isnull=True)
                | ~models.Q(approved_by=models.F("created_by")),
                name="batch_approver_is_not_creator",
            ),
        ]

    def __str__(self) -> str:
        return f"Batch {self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in BATCH_FINAL_STATUSES

    @property
    def is_sending(self) -> bool:
        return self.status in (self.Status.UPLOADING, self.Status.PROCESSING)


BATCH_FINAL_STATUSES = frozenset(
    {
        Batch.Status.SUCCEEDED,
        Batch.Status.PARTIALLY_FAILED,
        Batch.Status.FAILED,
        Batch.Status.CANCELLED,
    }
)

# DESIGN.md section 5. building -> building: a new attempt re-claims a build whose worker died.
# processing -> uploading: a file came back corrupted and is re-sent under a new ref.
BATCH_TRANSITIONS: dict[str, frozenset[str]] = {
    Batch.Status.DRAFT: frozenset(
        {Batch.Status.BUILDING, Batch.Status.FAILED, Batch.Status.CANCELLED}
    ),
    Batch.Status.BUILDING: frozenset(
        {Batch.Status.BUILDING, Batch.Status.BUILT, Batch.Status.FAILED, Batch.Status.CANCELLED}
    ),
    Batch.Status.BUILT: frozenset({Batch.Status.APPROVED, Batch.Status.CANCELLED}),
    Batch.Status.APPROVED: frozenset({Batch.Status.UPLOADING, Batch.Status.CANCELLED}),
    Batch.Status.UPLOADING: frozenset(
        {
            Batch.Status.PROCESSING,
            Batch.Status.SUCCEEDED,
            Batch.Status.PARTIALLY_FAILED,
            Batch.Status.FAILED,
        }
    ),
    Batch.Status.PROCESSING: frozenset(
        {
            Batch.Status.UPLOADING,
            Batch.Status.SUCCEEDED,
            Batch.Status.PARTIALLY_FAILED,
            Batch.Status.FAILED,
        }
    ),
    Batch.Status.SUCCEEDED: frozenset(),
    Batch.Status.PARTIALLY_FAILED: frozenset(),
    Batch.Status.FAILED: frozenset(),
    Batch.Status.CANCELLED: frozenset(),
}


class BatchFile(TimeStampedModel, LeasedWork):
    """One CDP batch: one gzip NDJSON file sent under one `batch_ref`.

    `batch_ref` is generated with the row and never regenerated: a retry of the same bytes
    re-uses it (allocation is an idempotent PUT). When CDP needs a new ref (upload URL
    expired, file `corrupted`), a new row is created for the same stored bytes with
    `previous` pointing here, so the old ref stays in the audit trail with its final state.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ALLOCATED = "allocated", "Upload location allocated"
        UPLOADED = "uploaded", "Uploaded"
        PROCESSING = "processing", "Processing at CDP"
        SUCCESS = "success", "Success"
        ERROR = "error", "Error (see the log)"
        CORRUPTED = "corrupted", "Corrupted (re-sent under a new ref)"
        FAILED = "failed", "Failed (we gave up)"
        SUPERSEDED = "superseded", "Replaced by a new ref"
        # CDP said `error` but its log could not be fetched: outcomes unknown until it is
        # fetched again (batches.services.batchfile_log_fetch), which moves the file to `error`.
        LOG_UNAVAILABLE = "log_unavailable", "Error, outcomes unknown (log unavailable)"

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="files")
    # 1-based position in the batch; a re-send under a new ref keeps the number.
    sequence = models.PositiveIntegerField()
    previous = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="next"
    )
    batch_ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    file = models.FileField(max_length=300)
    md5 = models.CharField("MD5 (hex)", max_length=32)
    size = models.BigIntegerField("size (bytes)")
    record_count = models.PositiveIntegerField()
    # The checksum the approver approved; the upload re-verifies the stored bytes against it.
    approved_md5 = models.CharField(max_length=32, blank=True)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    # CDP's own status code (uploading, file_uploaded, processing, success, error, corrupted).
    remote_status = models.CharField(max_length=20, blank=True)
    upload_expires_at = models.DateTimeField(null=True, blank=True)
    # The last status reply as CDP sent it, minus the query strings of pre-signed URLs.
    status_json = models.JSONField(null=True, blank=True)
    stats = models.JSONField(null=True, blank=True)
    error_log = models.FileField(max_length=300, blank=True)
    # Log lines that name no record (`"ref":"null"`): count and the first few, as sent.
    file_error_count = models.PositiveIntegerField(default=0)
    file_errors = models.JSONField(default=list, blank=True)
    message = models.TextField(blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    uploaded_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    polls = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # Consecutive failed attempts (transient CDP faults, crashed jobs); reset by progress.
    failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ("batch", "sequence", "id")
        indexes = [models.Index(fields=["batch", "sequence"], name="batchfile_batch_seq")]

    def __str__(self) -> str:
        return f"File {self.sequence} of batch {self.batch_id} ({self.batch_ref})"

    @property
    def is_finished(self) -> bool:
        return self.status in BATCHFILE_FINAL_STATUSES


BATCHFILE_FINAL_STATUSES = frozenset(
    {
        BatchFile.Status.SUCCESS,
        BatchFile.Status.ERROR,
        BatchFile.Status.CORRUPTED,
        BatchFile.Status.FAILED,
        BatchFile.Status.SUPERSEDED,
        BatchFile.Status.LOG_UNAVAILABLE,
    }
)
# Statuses in which a file's ref is at CDP and counts against CDP_MAX_IN_FLIGHT.
BATCHFILE_IN_FLIGHT_STATUSES = frozenset(
    {BatchFile.Status.ALLOCATED, BatchFile.Status.UPLOADED, BatchFile.Status.PROCESSING}
)

# allocated -> success/error/...: a resumed upload finds the file already processed at CDP.
# log_unavailable -> error: CDP's log, fetched again later, gave the records their outcomes.
BATCHFILE_TRANSITIONS: dict[str, frozenset[str]] = {
    BatchFile.Status.PENDING: frozenset(
        {BatchFile.Status.ALLOCATED, BatchFile.Status.FAILED, BatchFile.Status.SUPERSEDED}
    ),
    BatchFile.Status.ALLOCATED: frozenset(
        {
            BatchFile.Status.UPLOADED,
            BatchFile.Status.PROCESSING,
            BatchFile.Status.SUCCESS,
            BatchFile.Status.ERROR,
            BatchFile.Status.LOG_UNAVAILABLE,
            BatchFile.Status.CORRUPTED,
            BatchFile.Status.FAILED,
            BatchFile.Status.SUPERSEDED,
        }
    ),
    BatchFile.Status.UPLOADED: frozenset(
        {
            BatchFile.Status.PROCESSING,
            BatchFile.Status.SUCCESS,
            BatchFile.Status.ERROR,
            BatchFile.Status.LOG_UNAVAILABLE,
            BatchFile.Status.CORRUPTED,
            BatchFile.Status.FAILED,
            BatchFile.Status.SUPERSEDED,
        }
    ),
    BatchFile.Status.PROCESSING: frozenset(
        {
            BatchFile.Status.SUCCESS,
            BatchFile.Status.ERROR,
            BatchFile.Status.LOG_UNAVAILABLE,
            BatchFile.Status.CORRUPTED,
            BatchFile.Status.FAILED,
            BatchFile.Status.SUPERSEDED,
        }
    ),
    BatchFile.Status.SUCCESS: frozenset(),
    BatchFile.Status.ERROR: frozenset(),
    BatchFile.Status.CORRUPTED: frozenset(),
    BatchFile.Status.FAILED: frozenset(),
    BatchFile.Status.SUPERSEDED: frozenset(),
    BatchFile.Status.LOG_UNAVAILABLE: frozenset({BatchFile.Status.ERROR}),
}


class BatchItem(models.Model):
    """One record in one file at one line, and what became of it: the auditor's join."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        REJECTED = "rejected", "Rejected by CDP"
        FAILED = "failed", "Not delivered (the file failed)"
        # CDP could not read some lines, or its error log could not be fetched: the record may
        # or may not have been applied. Resolved to delivered/rejected only by a log fetched
        # later (migration 0006 allows exactly that change).
        UNKNOWN = "unknown", "Unconfirmed (outcome unknown)"
        RESENT = "resent", "Re-sent under a new ref"

    # No separate index on file: the unique (file, line) constraint leads with it. No database
    # foreign key either: its trigger checked every item at COMMIT, 0.5-0.7 s of a 200,000-
    # record build here, and protects nothing the code does not: items are written only with
    # their files (building, re-send under a new ref), and neither is ever deleted (the audit
    # trigger of migration 0002 refuses DELETE).
    file = models.ForeignKey(
        BatchFile,
        on_delete=models.PROTECT,
        related_name="items",
        db_index=False,
        db_constraint=False,
    )
    line = models.PositiveIntegerField()
    # The record's `ref` as written in the file (CDP's log reports outcomes by it) and its
    # primary key in its table (records.Guest or records.TrackingEvent per the batch schema).
    record_ref = models.UUIDField(db_index=True)
    record_id = models.BigIntegerField()
    # MD5 of the value sent: becomes the record's delivered_hash when delivered.
    value_hash = models.CharField(max_length=32)
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    code = models.CharField(max_length=10, blank=True)
    message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ("file", "line")
        constraints = [
            models.UniqueConstraint(fields=["file", "line"], name="batchitem_file_line"),
        ]

    def __str__(self) -> str:
        return f"Line {self.line} of file {self.file_id}"


class BatchEvent(models.Model):
    """Append-only audit: every transition and every call to CDP.

    Never a secret (no URL query strings, no auth) and never personal data.
    """

    class Kind(models.TextChoices):
        TRANSITION = "transition", "Status change"
        CDP_CALL = "cdp_call", "Call to CDP"
        NOTE = "note", "Note"

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="events")
    file = models.ForeignKey(
        BatchFile, null=True, blank=True, on_delete=models.PROTECT, related_name="events"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Who: a user, or a label for the machine ("worker", "command line", "reconciler").
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=50, blank=True)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    # CDP calls: method, path without query string, HTTP status (null: no answer), duration.
    method = models.CharField(max_length=10, blank=True)
    path = models.CharField(max_length=300, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"Event {self.pk} of batch {self.batch_id}"
