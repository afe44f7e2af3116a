"""Retention: clear the personal data of records CDP already holds, keep what the audit needs.

A record is purged once its current value was delivered (delivery status delivered and value
hash = delivered hash: nothing of it is waiting to be sent), it is in no live batch, and its
last delivery is older than the retention period. Purging blanks the person's columns and the
stored CDP value and deletes the guest's identifiers, subscriptions and extensions; the ref,
the hashes, the statuses, the delivery time and the batches' items and events stay, so an
auditor can still tell what was sent when and what CDP said. A purged record is read-only and
never selected again (its value hash equals its delivered hash).

Files hold personal data too: import sources and error reports of runs finished before the
cutoff are deleted from storage, and so are the NDJSON files (and CDP error logs) of batches
that ended before it; their rows, checksums and counts stay.

Work is done in chunks of ids, each its own short transaction, so a purge of millions of rows
never holds one long lock and can be interrupted and run again (it is idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from records.models import (
    DeliveryStatus,
    Extension,
    Guest,
    GuestMigration,
    Identifier,
    ImportRun,
    Order,
    Subscription,
    TrackingEvent,
)
from records.selectors import in_live_batch

logger = logging.getLogger(__name__)

__all__ = [
    "PURGED_COLUMNS",
    "PurgeResult",
    "purge_records",
    "records_purge",
    "retention_cutoff",
]

CHUNK = 5_000

# Per model: the columns a purge resets, with the value they get. Everything that describes
# the person; lifecycle columns (ref, statuses, hashes, lock, source row) are kept.
PURGED_COLUMNS: dict[type, dict[str, object]] = {
    Guest: {
        "identity_key": None,
        "email": "",
        "title": "",
        "first_name": "",
        "last_name": "",
        "gender": "",
        "date_of_birth": None,
        "phone_numbers": [],
        "street": [],
        "city": "",
        "state": "",
        "country": "",
        "post_code": "",
        "nationality": "",
        "language": "",
        "passport_number": "",
        "passport_expiry": None,
        "first_seen": None,
        "last_seen": None,
        "cdp_value": "",
    },
    TrackingEvent: {
        "guest_identity_key": "",
        "identifiers": [],
        "uotr": "",
        "utms": {},
        "feedback": {},
        "cdp_value": "",
    },
    # The people of an order; its reference, amounts and items describe no one and stay.
    Order: {
        "contact": {},
        "contact_identity_key": "",
        "consumers": [],
        "cdp_value": "",
    },
    # A migration is its two guests' identifiers: once delivered, only ref and hashes stay.
    GuestMigration: {
        "from_identity_key": None,
        "to_identity_key": None,
        "migrate_from": [],
        "migrate_to": [],
        "cdp_value": "",
    },
}
GUEST_CHILDREN = (Identifier, Subscription, Extension)


@dataclass
class PurgeResult:
    cutoff: datetime
    dry_run: bool
    records: dict[str, int] = field(default_factory=dict)
    import_files: int = 0
    batch_files: int = 0

    def summary(self) -> str:
        verb = "Would purge" if self.dry_run else "Purged"
        kinds = ", ".join(f"{count} {name}" for name, count in self.records.items())
        return (
            f"{verb} the personal data of {kinds} delivered before {self.cutoff:%Y-%m-%d %H:%M} "
            f"UTC, {self.import_files} import file(s) and {self.batch_files} batch file(s)."
        )


def retention_cutoff(days: int, *, now: datetime | None = None) -> datetime:
    if days < 0:
        raise ValueError("The retention period cannot be negative.")
    return (now or timezone.now()) - timedelta(days=days)


def purgeable(model: type[Guest] | type[TrackingEvent] | type[Order], cutoff: datetime):
    """Records whose delivered value is older than `cutoff` and not waiting to be sent again."""
    delivered = model.objects.filter(
        purged_at__isnull=True, delivery_status=DeliveryStatus.DELIVERED, delivered_at__lt=cutoff
    )
    unchanged = delivered.exclude(delivered_hash="").filter(value_hash=F("delivered_hash"))
    return in_live_batch(unchanged, present=False)


def records_purge(*, cutoff: datetime, dry_run: bool = False) -> PurgeResult:
    """Purge what the retention period allows (see the module docstring); idempotent."""
    result = PurgeResult(cutoff=cutoff, dry_run=dry_run)
    for model in (Guest, TrackingEvent, Order, GuestMigration):
        result.records[model._meta.verbose_name_plural] = _purge_records(model, cutoff, dry_run)
    result.import_files = _purge_import_files(cutoff, dry_run)
    result.batch_files = _purge_batch_files(cutoff, dry_run)
    # Counts only: which records were purged is in their own purged_at column.
    logger.info("Retention: %s", result.summary())
    return result


def _purge_records(model, cutoff: datetime, dry_run: bool) -> int:
    selection = purgeable(model, cutoff)
    if dry_run:
        return selection.count()
    return purge_records(model, selection)


def purge_records(model, selection) -> int:
    """Clear the personal data of the records of `selection`, in short chunked transactions.

    Also used by erasure for the guests of a person who asked to be deleted. Rows another
    transaction holds at that moment (a build taking them) are skipped and left for next time.
    """
    purged = 0
    last_id = 0
    while True:
        ids = list(
            selection.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:CHUNK]
        )
        if not ids:
            return purged
        last_id = ids[-1]
        with transaction.atomic():
            # Re-checked inside the transaction: a build may have taken a record meanwhile.
            rows = selection.filter(pk__in=ids).select_for_update(skip_locked=True)
            locked_ids = list(rows.values_list("pk", flat=True))
            if model is Guest:
                for child in GUEST_CHILDREN:
                    child.objects.filter(guest_id__in=locked_ids).delete()
            purged += model.objects.filter(pk__in=locked_ids).update(
                **PURGED_COLUMNS[model], purged_at=timezone.now()
            )


def _delete_stored(file_field) -> bool:
    """Delete a FileField's object from storage; True if there was one."""
    if not file_field.name:
        return False
    storage = file_field.storage
    if storage.exists(file_field.name):
        storage.delete(file_field.name)
        return True
    return False


def _purge_import_files(cutoff: datetime, dry_run: bool) -> int:
    runs = ImportRun.objects.filter(finished_at__lt=cutoff, files_purged_at__isnull=True).order_by(
        "pk"
    )
    if dry_run:
        return runs.count()
    count = 0
    for run in runs.iterator(chunk_size=500):
        for file_field in (run.source_file, run.error_report):
            _delete_stored(file_field)
        ImportRun.objects.filter(pk=run.pk).update(files_purged_at=timezone.now())
        count += 1
    return count


def _purge_batch_files(cutoff: datetime, dry_run: bool) -> int:
    """Delete the stored NDJSON files and error logs of batches that ended before `cutoff`.

    The BatchFile rows are the audit record (checksum, size, counts, status) and are never
    changed; only the stored objects go. Read through the batches app's table by name so the
    records app does not import it (batches depends on records, not the other way round).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT f.file, f.error_log FROM batches_batchfile f"
            " JOIN batches_batch b ON b.id = f.batch_id"
            " WHERE b.finished_at < %s AND (f.file <> '' OR f.error_log <> '')",
            [cutoff],
        )
        names = [name for row in cursor.fetchall() for name in row if name]
    present = [name for name in names if default_storage.exists(name)]
    if not dry_run:
        for name in present:
            default_storage.delete(name)
    return len(present)
