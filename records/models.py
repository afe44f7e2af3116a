"""Staged data: guests with their children, tracking events, and the import runs that load them."""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper

from cdpstage.models import LeasedWork, TimeStampedModel


class Schema(models.TextChoices):
    GUEST = "guest", "Guests"
    SUBSCRIPTION = "subscription", "Subscriptions (of staged guests)"
    EXTENSION = "extension", "Extensions (of staged guests)"
    TRACKING = "tracking", "Tracking events"


class ReviewStatus(models.TextChoices):
    NEW = "new", "New"
    READY = "ready", "Ready"
    HELD = "held", "Held"
    INVALID = "invalid", "Invalid"


class DeliveryStatus(models.TextChoices):
    NOT_SENT = "not_sent", "Not sent"
    IN_BATCH = "in_batch", "In a batch"
    DELIVERED = "delivered", "Delivered"
    REJECTED = "rejected", "Rejected by CDP"
    # Sent, but CDP's answer about it is unknown (its error log could not be read or fetched):
    # never picked again as "not sent", which could apply it twice.
    UNCONFIRMED = "unknown", "Outcome unknown"


# Which review statuses a reviewer may move a record between; `invalid` is set and cleared only
# by validation (an edit that fixes the record puts it back to `new`).
REVIEW_TRANSITIONS: dict[str, frozenset[str]] = {
    ReviewStatus.NEW: frozenset({ReviewStatus.READY, ReviewStatus.HELD}),
    ReviewStatus.READY: frozenset({ReviewStatus.HELD, ReviewStatus.NEW}),
    ReviewStatus.HELD: frozenset({ReviewStatus.READY, ReviewStatus.NEW}),
    ReviewStatus.INVALID: frozenset(),
}


class StagedRecord(TimeStampedModel):
    """What every record that can go into a CDP batch file carries."""

    # The per-record `ref` written in the batch file; CDP's error log reports outcomes by it.
    ref = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    mode = models.CharField(max_length=20)
    # Indexes are declared in each model's Meta (composite, and without the `_like` pattern
    # copies `db_index=True` adds to text columns): every index costs on every staged row.
    review_status = models.CharField(
        max_length=10, choices=ReviewStatus.choices, default=ReviewStatus.NEW
    )
    # [{"field": "email", "code": "invalid_email", "message": "..."}]; never personal data.
    validation_errors = models.JSONField(default=list, blank=True)
    # No index of its own: the (import_run, source_row) index of each model leads with it.
    import_run = models.ForeignKey(
        "records.ImportRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    source_row = models.PositiveIntegerField(null=True, blank=True)
    # The canonical CDP `value` as minified JSON text: exactly the bytes the build writes.
    cdp_value = models.TextField(blank=True)
    value_hash = models.CharField(max_length=32, blank=True)
    delivery_status = models.CharField(
        max_length=10,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.NOT_SENT,
    )
    delivered_hash = models.CharField(max_length=32, blank=True)
    # The live batch holding this record (set by the batches app; records never import it).
    # While set, the record's content is frozen.
    locked_by_batch_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        abstract = True

    @property
    def is_locked(self) -> bool:
        return self.locked_by_batch_id is not None


class Guest(StagedRecord):
    """A guest profile to upsert into CDP, with its identifiers, subscriptions and extensions."""

    # "<provider>:<id>" of the highest-priority identifier (IdentityProvider.priority):
    # re-imports match on it and a batch file never holds two guests with the same key.
    # NULL, not "": a guest without identity must not collide with another in the unique index.
    identity_key = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001
    email = models.CharField(max_length=254, blank=True)
    title = models.CharField(max_length=20, blank=True)
    first_name = models.CharField(max_length=255, blank=True)
    last_name = models.CharField(max_length=255, blank=True)
    gender = models.CharField(max_length=10, blank=True)
    date_of_birth = models.DateField(null=True, blank=True)
    phone_numbers = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    street = ArrayField(models.CharField(max_length=255), default=list, blank=True)
    city = models.CharField(max_length=255, blank=True)
    state = models.CharField(max_length=255, blank=True)
    country = models.CharField(max_length=2, blank=True)
    post_code = models.CharField(max_length=20, blank=True)
    nationality = models.CharField(max_length=100, blank=True)
    language = models.CharField(max_length=2, blank=True)
    passport_number = models.CharField(max_length=50, blank=True)
    passport_expiry = models.DateField(null=True, blank=True)
    guest_type = models.CharField(max_length=20, default="customer")
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        permissions = [("view_pii", "Can see personal data unmasked")]
        indexes = [
            models.Index(fields=["review_status", "id"], name="guest_review_id"),
            models.Index(fields=["import_run", "source_row"], name="guest_import_row"),
            GinIndex(fields=["validation_errors"], name="guest_errors_gin"),
            # Subscription and extension files may link their rows to a guest by email; the
            # pattern operator class also serves the admin's prefix search (LIKE 'abc%') under
            # a non-C collation, and equality as before.
            models.Index(fields=["email"], name="guest_email", opclasses=["varchar_pattern_ops"]),
            # The admin's last-name prefix search, case-insensitive ("kel" finds "Kelly").
            models.Index(
                OpClass(Upper("last_name"), name="text_pattern_ops"), name="guest_last_name_prefix"
            ),
            models.Index(fields=["delivery_status"], name="guest_delivery"),
            models.Index(fields=["country"], name="guest_country"),
        ]
        constraints = [
            # ON CONFLICT (identity_key) in the import relies on this unique index.
            models.UniqueConstraint(fields=["identity_key"], name="guest_identity_key_unique"),
        ]

    def __str__(self) -> str:
        return f"Guest {self.pk}"


class Identifier(models.Model):
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="identifiers")
    position = models.PositiveSmallIntegerField(default=0)
    provider = models.CharField(max_length=100)
    identifier = models.CharField(max_length=255)
    expiry_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("guest", "position")
        # Pattern operator class on the id: exact and prefix (admin search) lookups both use it.
        indexes = [
            models.Index(
                fields=["provider", "identifier"],
                name="identifier_lookup",
                opclasses=["varchar_ops", "varchar_pattern_ops"],
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider} identifier"


class Subscription(models.Model):
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="subscriptions")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField(max_length=100)
    point_of_sale = models.CharField(max_length=255)
    channel = models.CharField(max_length=30)
    status = models.CharField(max_length=20)
    effective_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("guest", "position")

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"


class Extension(models.Model):
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="extensions")
    name = models.CharField(max_length=4, default="ext")  # ext, ext1 ... ext5
    key = models.CharField(max_length=20, default="default")
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("guest", "name")
        constraints = [
            models.UniqueConstraint(fields=["guest", "name"], name="extension_one_per_name")
        ]

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


class TrackingEvent(StagedRecord):
    """A tracking event (schema `tracking`); the field set follows cdp-batch-api.md section 3.3."""

    service_identifier = models.CharField(max_length=255)
    occurred_at = models.DateTimeField(null=True, blank=True)
    channel = models.CharField(max_length=50, blank=True)
    type = models.CharField(max_length=50, blank=True)
    uotr = models.CharField(max_length=255, blank=True)
    utms = models.JSONField(default=dict, blank=True)
    feedback = models.JSONField(default=dict, blank=True)
    # The guest it belongs to, as "<provider>:<id>" (not a foreign key: the guest may live only
    # in CDP, not in staging).
    guest_identity_key = models.CharField(max_length=300, blank=True)
    identifiers = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [
            models.Index(fields=["review_status", "id"], name="tracking_review_id"),
            GinIndex(fields=["validation_errors"], name="tracking_errors_gin"),
            models.Index(fields=["delivery_status"], name="tracking_delivery"),
            models.Index(fields=["guest_identity_key"], name="tracking_guest_identity"),
        ]
        constraints = [
            # Events have no identity: a rerun of an import run (its worker was killed) must
            # not add a row twice, so inserts are ON CONFLICT (import_run, source_row) DO NOTHING.
            models.UniqueConstraint(
                fields=["import_run", "source_row"], name="tracking_one_per_import_row"
            )
        ]

    def __str__(self) -> str:
        return f"Tracking event {self.pk}"


class ImportRun(TimeStampedModel, LeasedWork):
    """One source file imported into staging, in the background or from the command line."""

    class Status(models.TextChoices):
        # Uploaded; its columns are being mapped in the admin (no job until they are).
        MAPPING = "mapping", "Waiting for its column mapping"
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Succeeded, bad rows skipped"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "Excel (XLSX)"
        JSON = "json", "JSON array"
        NDJSON = "ndjson", "NDJSON (one JSON object per line)"

    class OnError(models.TextChoices):
        ABORT = "abort", "All or nothing: import nothing if any row is bad"
        SKIP = "skip", "Skip bad rows and import the rest"

    TRANSITIONS = {
        Status.MAPPING: frozenset({Status.PENDING, Status.FAILED}),
        Status.PENDING: frozenset({Status.RUNNING, Status.FAILED}),
        # running -> running: a new attempt re-claims a run whose worker died (lease expired).
        Status.RUNNING: frozenset(
            {Status.RUNNING, Status.SUCCEEDED, Status.PARTIAL, Status.FAILED}
        ),
        Status.SUCCEEDED: frozenset(),
        Status.PARTIAL: frozenset(),
        Status.FAILED: frozenset(),
    }

    schema = models.CharField(max_length=20, choices=Schema.choices)
    format = models.CharField(max_length=10, choices=Format.choices)
    source_file = models.FileField(upload_to="imports/%Y/%m/")
    original_name = models.CharField(max_length=255)
    encoding = models.CharField(max_length=20, default="utf-8")
    delimiter = models.CharField(max_length=2, blank=True, help_text="Empty: detect.")
    # XLSX: the worksheet (empty: the only visible one) and header row (empty: detected).
    sheet = models.CharField(max_length=100, blank=True)
    header_row = models.PositiveIntegerField(null=True, blank=True)
    on_error = models.CharField(max_length=10, choices=OnError.choices, default=OnError.ABORT)
    ignore_unknown_columns = models.BooleanField(default=False)
    # The saved mapping applied to the file, and a copy of its document as used (the mapping
    # may change later; the run must still say how its rows were read).
    mapping = models.ForeignKey(
        "records.Mapping", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    mapping_version = models.PositiveIntegerField(null=True, blank=True)
    mapping_document = models.JSONField(null=True, blank=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    bytes_total = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    # An estimate taken before the rows are read (line count, or the sheet's row count), for
    # the progress bar; rows_read is exact.
    rows_total = models.PositiveIntegerField(default=0)
    rows_read = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0)
    rows_invalid = models.PositiveIntegerField(default=0)
    # Rows that could not be staged at all (skipped, or why nothing was imported).
    rows_bad = models.PositiveIntegerField(default=0)
    # A sentence for the whole file ("The file is empty.") when it was refused.
    message = models.TextField(blank=True)
    error_report = models.FileField(upload_to="import-errors/%Y/%m/", blank=True)

    class Meta:
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"Import run {self.pk} ({self.original_name})"

    @property
    def read_options(self) -> dict:
        """How its file is read: records.importing.open_source's keyword arguments."""
        return {
            "format": self.format,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "sheet": self.sheet,
            "header_row": self.header_row,
        }

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.PARTIAL, self.Status.FAILED}


class ImportRunEvent(models.Model):
    """Append-only audit of an import run's status changes (records.services.imports).

    Who (a user or a machine label), when, which attempt, from and to which status, and a
    sentence; never a cell value.
    """

    run = models.ForeignKey(ImportRun, on_delete=models.PROTECT, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=50, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ("id",)

    def __str__(self) -> str:
        return f"Event {self.pk} of import run {self.run_id}"


class IdentityProvider(TimeStampedModel):
    """A provider whose identifiers identify a guest (one of the tenant's identity rules).

    Data, not a deployment setting: a new source system's customer numbers become usable the
    moment an operator adds its provider here (or with `manage.py identity_providers add`).
    The priority orders them as CDP's ordered identity rules do: the guest's identity key is
    taken from its identifier whose provider has the lowest priority number.
    """

    name = models.CharField(
        max_length=100, unique=True, help_text="Exactly as written in identifiers, e.g. email."
    )
    priority = models.PositiveIntegerField(
        default=100, help_text="Lower numbers come first when a guest has several identifiers."
    )

    class Meta:
        ordering = ("priority", "name")

    def __str__(self) -> str:
        return self.name


class Mapping(TimeStampedModel):
    """A saved column mapping: how one source layout becomes CDP fields for one schema.

    `document` is the mapping as the JSON document of docs/mapping.md (the one definition the
    import applies); `header_fingerprint` identifies the layout it was made for, so a file of
    the same layout gets it preselected. Each save of a changed document adds one to `version`,
    and every import run keeps a copy of the document it used.
    """

    name = models.CharField(max_length=100, unique=True)
    schema = models.CharField(max_length=20, choices=Schema.choices)
    version = models.PositiveIntegerField(default=1)
    header_fingerprint = models.CharField(max_length=64, db_index=True)
    document = models.JSONField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"
