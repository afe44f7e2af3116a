"""Staged data: guests with their children, tracking events, and the import runs that load them."""

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.functions import RandomUUID
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models.functions import Upper

from cdpstage.models import LeasedWork, TimeStampedModel


class Schema(models.TextChoices):
    GUEST = "guest", "Guests"
    SUBSCRIPTION = "subscription", "Subscriptions (of staged guests)"
    EXTENSION = "extension", "Extensions (of staged guests)"
    TRACKING = "tracking", "Tracking events"
    ORDER = "order", "Orders"
    MIGRATION = "migration", "Guest migrations"


class GuestMode(models.TextChoices):
    """How CDP is asked to apply a staged guest: the value is the envelope's `mode`.

    CDP documents guest `insert` as not supported (cdp-batch-api.md section 3.1, S-GUEST;
    BX15 too), so the app never writes it: a guest meant to be new only goes in mode
    `create`, which the error-log page lists among the supported modes and answers with 409
    when the identity already exists (section 1.5, S-LOG). Which guests may go as an insert
    is decided in records.rules.modes.
    """

    UPSERT = "upsert", "Upsert"
    INSERT = "create", "Insert (sent as create)"


GUEST_MODE_HELP = (
    "Upsert (the default) updates the guest CDP has with this identity, or creates it. Insert "
    "creates a new guest only: CDP refuses it (409) when a guest with one of its identifiers "
    "exists, and a guest CDP already has cannot be inserted again. CDP does not support mode "
    "'insert' for guests, so an insert goes to CDP as its documented mode 'create'."
)


class ReviewStatus(models.TextChoices):
    NEW = "new", "New"
    READY = "ready", "Ready"
    HELD = "held", "Held"
    INVALID = "invalid", "Invalid"


class BatchedKind(models.TextChoices):
    """The record kinds a batch carries (BatchMembership.kind, batches.models.BatchSchema)."""

    GUEST = Schema.GUEST.value, "Guests"
    TRACKING = Schema.TRACKING.value, "Tracking events"
    ORDER = Schema.ORDER.value, "Orders"
    GUEST_DELETION = "guest_deletion", "Guest deletions"
    MIGRATION = Schema.MIGRATION.value, "Guest migrations"


class DeliveryStatus(models.TextChoices):
    NOT_SENT = "not_sent", "Not sent"
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
    # The database default serves the import's COPY (a UUID made in C as each row arrives,
    # not one uuid4() call per row in Python); the admin and the factories use the Python one.
    ref = models.UUIDField(default=uuid.uuid4, db_default=RandomUUID(), unique=True, editable=False)
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
    # Which batch holds the record is not a column here: a build would rewrite every row it
    # takes (and all its indexes). It is a BatchMembership row (records.selectors reads it).
    # When CDP confirmed the delivered value (the retention period counts from here).
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Set when retention cleared the personal data (records.services.retention); read-only after.
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True

    @property
    def is_purged(self) -> bool:
        return self.purged_at is not None


class Guest(StagedRecord):
    """A guest profile to upsert into CDP, with its identifiers, subscriptions and extensions.

    The CDP text columns of staged records (here, in the child tables and in TrackingEvent)
    have no length limit: how long a value may be is a CDP rule (records.rules), reported as a
    validation problem the steward fixes, and a row breaking it is staged as invalid, never
    refused by the database ("varchar" without a length costs nothing over varchar(n)).
    """

    # "<provider>:<id>" of the highest-priority identifier (IdentityProvider.priority):
    # re-imports match on it and a batch file never holds two guests with the same key.
    # NULL, not "": a guest without identity must not collide with another in the unique index.
    identity_key = models.CharField(null=True, blank=True)  # noqa: DJ001
    email = models.CharField(blank=True)
    title = models.CharField(blank=True)
    first_name = models.CharField(blank=True)
    last_name = models.CharField(blank=True)
    gender = models.CharField(blank=True)
    date_of_birth = models.DateField(null=True, blank=True)
    phone_numbers = ArrayField(models.CharField(), default=list, blank=True)
    street = ArrayField(models.CharField(), default=list, blank=True)
    city = models.CharField(blank=True)
    state = models.CharField(blank=True)
    country = models.CharField(blank=True)
    post_code = models.CharField(blank=True)
    nationality = models.CharField(blank=True)
    language = models.CharField(blank=True)
    passport_number = models.CharField(blank=True)
    passport_expiry = models.DateField(null=True, blank=True)
    guest_type = models.CharField(default="customer")
    mode = models.CharField(
        max_length=20,
        choices=GuestMode.choices,
        default=GuestMode.UPSERT,
        help_text=GUEST_MODE_HELP,
    )
    first_seen = models.DateTimeField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        permissions = [
            ("view_pii", "Can see personal data unmasked"),
            # The Reviewer's own: changing a record does not imply passing it (four eyes).
            ("review_guest", "Can mark ready, hold back or send back to new"),
        ]
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
    provider = models.CharField()
    identifier = models.CharField()
    expiry_date = models.DateTimeField(null=True, blank=True)
    # sha256("provider:id"), the suppression list's key (records.services.erasure
    # .identity_hash), kept by the database on every write (an import's COPY included), so the
    # build's suppression check is an index lookup instead of hashing every identifier.
    identity_hash = models.GeneratedField(
        expression=models.Func(
            "provider",
            "identifier",
            function="records_identity_hash",
            output_field=models.CharField(max_length=64),
        ),
        output_field=models.CharField(max_length=64),
        db_persist=True,
    )

    class Meta:
        ordering = ("guest", "position")
        indexes = [
            # Pattern operator class on the id: exact and prefix (admin search) lookups use it.
            models.Index(
                fields=["provider", "identifier"],
                name="identifier_lookup",
                opclasses=["varchar_ops", "varchar_pattern_ops"],
            ),
            models.Index(fields=["identity_hash"], name="identifier_identity_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} identifier"


class Subscription(models.Model):
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="subscriptions")
    position = models.PositiveSmallIntegerField(default=0)
    name = models.CharField()
    point_of_sale = models.CharField()
    channel = models.CharField()
    status = models.CharField()
    effective_date = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("guest", "position")

    def __str__(self) -> str:
        return f"{self.name} ({self.channel})"


class Extension(models.Model):
    guest = models.ForeignKey(Guest, on_delete=models.CASCADE, related_name="extensions")
    name = models.CharField(default="ext")  # ext, ext1 ... ext5
    key = models.CharField(default="default")
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

    service_identifier = models.CharField()
    occurred_at = models.DateTimeField(null=True, blank=True)
    channel = models.CharField(blank=True)
    type = models.CharField(blank=True)
    uotr = models.CharField(blank=True)
    utms = models.JSONField(default=dict, blank=True)
    feedback = models.JSONField(default=dict, blank=True)
    # The guest it belongs to, as "<provider>:<id>" (not a foreign key: the guest may live only
    # in CDP, not in staging).
    guest_identity_key = models.CharField(blank=True)
    identifiers = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-id",)
        permissions = [
            ("review_trackingevent", "Can mark ready, hold back or send back to new"),
        ]
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


class Order(StagedRecord):
    """An order to insert into CDP (schema `order`), with its items; cdp-batch-api.md 3.2.

    The contact and consumers are kept as their CDP objects (JSON): CDP resolves the order's
    guest from the contact's identifiers, and nothing here links them to staged guests.
    """

    # CDP's identity of an order, "<orderedAt>|<referenceId>" (records.rules.order_key):
    # unique, so a re-import updates the staged order and no batch can hold one order twice.
    # NULL while either part is missing (such an order is invalid).
    order_key = models.CharField(null=True, blank=True)  # noqa: DJ001
    reference_id = models.CharField(blank=True)
    channel = models.CharField(blank=True)
    point_of_sale = models.CharField(blank=True)
    status = models.CharField(blank=True)
    ordered_at = models.DateTimeField(null=True, blank=True)
    currency_code = models.CharField(blank=True)
    # A JSON number in the batch file; a double holds every such number exactly as parsed.
    price = models.FloatField(null=True, blank=True)
    payment_type = models.CharField(blank=True)
    card_type = models.CharField(blank=True)
    # {"firstName": ..., "identifiers": [...]}: personal data.
    contact = models.JSONField(default=dict, blank=True)
    # "<provider>:<id>" of the contact's highest-priority identifier, for search and display.
    contact_identity_key = models.CharField(blank=True)
    consumers = models.JSONField(default=list, blank=True)
    # At most one {"name": "ext", "key": "default", ...} (cdp-batch-api.md 3.2, S-OEXT).
    extensions = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("-id",)
        permissions = [
            ("review_order", "Can mark ready, hold back or send back to new"),
        ]
        indexes = [
            models.Index(fields=["review_status", "id"], name="order_review_id"),
            models.Index(fields=["import_run", "source_row"], name="order_import_row"),
            GinIndex(fields=["validation_errors"], name="order_errors_gin"),
            models.Index(fields=["delivery_status"], name="order_delivery"),
            models.Index(fields=["contact_identity_key"], name="order_contact_identity"),
            models.Index(fields=["reference_id"], name="order_reference"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["order_key"], name="order_key_unique"),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk}"


class OrderItem(models.Model):
    """One item of an order (cdp-batch-api.md 3.2 `orderItems[]`), in its value's order."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveSmallIntegerField(default=0)
    reference_id = models.CharField(blank=True)
    type = models.CharField(blank=True)
    product_id = models.CharField(blank=True)
    name = models.CharField(blank=True)
    description = models.CharField(blank=True)
    vendor = models.CharField(blank=True)
    ordered_at = models.DateTimeField(null=True, blank=True)
    quantity = models.FloatField(null=True, blank=True)
    price = models.FloatField(null=True, blank=True)
    currency_code = models.CharField(blank=True)
    original_price = models.FloatField(null=True, blank=True)
    original_currency_code = models.CharField(blank=True)
    status = models.CharField(blank=True)
    extensions = models.JSONField(default=list, blank=True)
    # Airline vertical only; CDP publishes no field rules for them, so kept as given.
    flight_segments = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ("order", "position")

    def __str__(self) -> str:
        return f"Order item {self.position}"


class BatchMembership(models.Model):
    """A record held by a batch: one narrow row per record, written by one INSERT ... SELECT.

    `live` is cleared when the batch ends; while set, the record is frozen (no edit, no
    re-import changes it) and no other batch may take it: the unique partial index lets a
    record be live in one batch at most, so two concurrent builds never share a record.
    `batch_id` is the batches app's Batch (not a foreign key: records never import batches).
    """

    pk = models.CompositePrimaryKey("batch_id", "kind", "record_id")
    batch_id = models.BigIntegerField()
    # The record's table: records.Guest, records.TrackingEvent, records.Order, ...
    kind = models.CharField(max_length=20, choices=BatchedKind.choices)
    record_id = models.BigIntegerField()
    live = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "record_id"],
                condition=models.Q(live=True),
                name="membership_one_live_batch",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.record_id} in batch {self.batch_id}"


class GuestMigration(StagedRecord):
    """A guest migration (schema `migration`, mode `guest`, cdp-batch-api.md section 3.1.4):
    CDP moves the entities of the guest matching `migrateFrom` (orders, browsing history,
    flow-execution history) to the guest matching `migrateTo`.

    Its own staged record, not a flavour of Guest: it names two CDP profiles by their
    identifiers, neither of which need be staged here, carries no guest data of its own, and
    is sent once (docs/migrations.md gives the reasons in full).
    """

    # [{"provider": ..., "id": ..., "expiryDate"?: ...}] of each side: personal data.
    migrate_from = models.JSONField(default=list, blank=True)
    migrate_to = models.JSONField(default=list, blank=True)
    # "<provider>:<id>" of each side's highest-priority identifier: a re-import of the same
    # migration updates it instead of staging it twice. NULL when a side has no identity.
    from_identity_key = models.CharField(null=True, blank=True)  # noqa: DJ001
    to_identity_key = models.CharField(null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ("-id",)
        permissions = [
            ("review_guestmigration", "Can mark ready, hold back or send back to new"),
        ]
        indexes = [
            models.Index(fields=["review_status", "id"], name="migration_review_id"),
            models.Index(fields=["import_run", "source_row"], name="migration_import_row"),
            GinIndex(fields=["validation_errors"], name="migration_errors_gin"),
            models.Index(fields=["delivery_status"], name="migration_delivery"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["from_identity_key", "to_identity_key"], name="migration_one_per_pair"
            )
        ]

    def __str__(self) -> str:
        return f"Guest migration {self.pk}"


class ErasureStatus(models.TextChoices):
    OPEN = "open", "Open (waiting to be sent)"
    AGAIN = "again", "Sent; CDP matched several guests, send again"
    DONE = "done", "Done: erased at CDP and suppressed here"


class GuestDeletion(StagedRecord):
    """A person's request to be erased: a `delete` or `gdpr_delete` guest record for CDP.

    It travels like any staged record (batch, approval by a second person, outcome per ref).
    CDP deletes only the first of several matching guests (cdp-batch-api.md section 3.1.5), so
    a request is sent again until CDP finds none. When it is done its identifiers are cleared
    (the hashes stay in SuppressedIdentity) and the matching staged guests are purged.
    """

    # [{"provider": "email", "id": "..."}]: personal data, cleared once the request is done.
    identifiers = models.JSONField(default=list, blank=True)
    # The hashes of the identifiers (records.services.erasure.identity_hash), kept for good.
    identity_hashes = ArrayField(models.CharField(max_length=64), default=list)
    erasure_status = models.CharField(
        max_length=10, choices=ErasureStatus.choices, default=ErasureStatus.OPEN
    )
    # How many times it went to CDP, and what CDP said last (CDP's message, no personal data).
    rounds = models.PositiveSmallIntegerField(default=0)
    erasure_message = models.CharField(max_length=300, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-id",)
        indexes = [models.Index(fields=["review_status", "id"], name="deletion_review_id")]

    def __str__(self) -> str:
        return f"Deletion request {self.pk}"


class SuppressedIdentity(models.Model):
    """An identity erased at the person's request: never staged as ready or sent again.

    Only a hash of "provider:id" (records.services.erasure.identity_hash): no personal data.
    """

    identity_hash = models.CharField(max_length=64, unique=True)
    deletion = models.ForeignKey(GuestDeletion, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "suppressed identities"

    def __str__(self) -> str:
        return f"Suppressed identity {self.identity_hash[:12]}…"


class ImportRun(TimeStampedModel, LeasedWork):
    """One source file imported into staging, in the background or from the command line."""

    class Status(models.TextChoices):
        # Uploaded; its columns are being mapped in the admin (no job until they are).
        MAPPING = "mapping", "Waiting for its column mapping"
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        PARTIAL = "partial", "Succeeded, refused rows skipped"
        FAILED = "failed", "Failed"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "Excel (XLSX)"
        JSON = "json", "JSON array"
        NDJSON = "ndjson", "NDJSON (one JSON object per line)"

    class OnError(models.TextChoices):
        ABORT = "abort", "All or nothing: import nothing if any row is refused"
        SKIP = "skip", "Skip refused rows and stage the rest"

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
    # As chosen (empty: detect), and as the reader found them when the file was opened: the
    # run page shows both, so "Detect" that picked the wrong delimiter is visible.
    encoding = models.CharField(max_length=20, default="utf-8")
    delimiter = models.CharField(max_length=2, blank=True, help_text="Empty: detect.")
    detected_encoding = models.CharField(max_length=20, blank=True)
    detected_delimiter = models.CharField(max_length=2, blank=True)
    # XLSX: the worksheet (empty: the only visible one) and header row (empty: detected).
    sheet = models.CharField(max_length=100, blank=True)
    header_row = models.PositiveIntegerField(null=True, blank=True)
    on_error = models.CharField(max_length=10, choices=OnError.choices, default=OnError.ABORT)
    ignore_unknown_columns = models.BooleanField(default=False)
    # Guests: the mode of rows that name none (a `mode` column or a batch line's mode wins).
    guest_mode = models.CharField(
        max_length=20,
        choices=GuestMode.choices,
        default=GuestMode.UPSERT,
        help_text=GUEST_MODE_HELP,
    )
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
    # Set when retention deleted the source file and error report from storage.
    files_purged_at = models.DateTimeField(null=True, blank=True)

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
