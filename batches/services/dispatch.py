"""Start pending files while fewer than CDP_MAX_IN_FLIGHT are at CDP.

One file at a time by default: CDP advises confirming each batch before the next
(cdp-batch-api.md section 1.4).
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from batches.models import BATCHFILE_IN_FLIGHT_STATUSES, Batch, BatchFile
from batches.services.allowance import within_allowance
from batches.services.scheduling import schedule_file_step
from batches.services.transitions import batch_event_create

__all__ = ["DISPATCH_LOCK", "SENDING", "batchfiles_dispatch"]


SENDING = (Batch.Status.UPLOADING, Batch.Status.PROCESSING)


# Arbitrary keys for PostgreSQL advisory locks ("CDPD", "CDPR").
DISPATCH_LOCK = 0x43445044


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
