"""The reconciler: re-enqueue batch work whose job was lost, and keep files flowing.

Run by every worker during its maintenance pass (cdpstage/worker.py), so it must be cheap and
idempotent; one pass at a time cluster-wide (a PostgreSQL advisory lock, try-only).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from batches.models import BATCHFILE_IN_FLIGHT_STATUSES, Batch, BatchFile
from batches.services.building import batch_build_failed
from batches.services.dispatch import SENDING, batchfiles_dispatch
from batches.services.failures import batchfile_fail
from batches.services.outcomes import batch_refresh
from batches.services.scheduling import QUEUE, retry_delay, schedule_build, schedule_file_step
from batches.services.transitions import batch_event_create
from cdpstage.leases import lease_fence, lease_verdict

logger = logging.getLogger(__name__)

__all__ = ["RECONCILE_LOCK", "batches_reconcile"]

RECONCILE_LOCK = 0x43445052
# Rows looked at per pass; the next pass takes the rest.
PASS_LIMIT = 100
# An unclaimed row younger than this may still be waiting for its after-commit enqueue.
ENQUEUE_GRACE = timedelta(seconds=15)


def _verdict(row: Batch | BatchFile, now) -> tuple[str, bool] | None:
    """Whether a waiting or working row needs its step enqueued again (cdpstage.leases)."""
    return lease_verdict(
        claimed=row.claimed_at is not None,
        lease_until=row.lease_until,
        updated_at=row.updated_at,
        job_id=row.job_id,
        queue=QUEUE,
        now=now,
        grace=ENQUEUE_GRACE,
    )


def _working_files() -> Q:
    return Q(status__in=BATCHFILE_IN_FLIGHT_STATUSES) | Q(
        status=BatchFile.Status.PENDING, dispatched_at__isnull=False
    )


def _requeue_build(batch: Batch, reason: str, *, failed: bool) -> None:
    failures = batch.failures + (1 if failed else 0)
    if failures >= int(settings.CDP_MAX_ATTEMPTS):
        batch_build_failed(
            batch_id=batch.pk,
            attempt=batch.attempt,
            message=f"The build did not finish after {failures} attempts ({reason}).",
        )
        return
    # A first loss (a worker killed or stopped) is redone at once, so the work resumes within
    # a lease and a pass; back-off only for a build that keeps dying.
    delay = retry_delay(failures - 1) if failed and failures > 1 else 0.0
    if schedule_build(batch_id=batch.pk, expected_attempt=batch.attempt, delay=delay):
        Batch.objects.filter(pk=batch.pk).update(failures=failures)
        batch_event_create(
            batch_id=batch.pk,
            kind="note",
            actor_label="reconciler",
            message=f"Build re-enqueued: {reason}.",
        )


def _requeue_file(batch_file: BatchFile, reason: str, *, failed: bool) -> None:
    failures = batch_file.failures + (1 if failed else 0)
    if failures >= int(settings.CDP_MAX_ATTEMPTS):
        batchfile_fail(
            batch_file=batch_file,
            attempt=batch_file.attempt,
            message=f"Gave up after {failures} attempts ({reason}).",
        )
        return
    step = (
        "upload"
        if batch_file.status in (BatchFile.Status.PENDING, BatchFile.Status.ALLOCATED)
        else "poll"
    )
    if schedule_file_step(
        file_id=batch_file.pk,
        step=step,
        expected_attempt=batch_file.attempt,
        fields={"failures": failures, "last_error": reason},
    ):
        batch_event_create(
            batch_id=batch_file.batch_id,
            file_id=batch_file.pk,
            kind="note",
            actor_label="reconciler",
            message=f"{step.capitalize()} re-enqueued: {reason}.",
        )


def batches_reconcile() -> dict[str, int]:
    """One reconciliation pass; returns what it did (counts), or {} if another pass runs."""
    done = {"builds": 0, "files": 0, "dispatched": 0}
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RECONCILE_LOCK])
            if not cursor.fetchone()[0]:
                return {}
        # Rows due for some time: a lease that ran out, or a job that should have run.
        stale = Q(lease_until__lt=now) | Q(
            claimed_at__isnull=True, updated_at__lt=now - ENQUEUE_GRACE
        )
        for batch in Batch.objects.filter(
            stale, status__in=(Batch.Status.DRAFT, Batch.Status.BUILDING)
        ).order_by("lease_until")[:PASS_LIMIT]:
            verdict = _verdict(batch, now)
            if verdict:
                if batch.claimed_at is not None:
                    lease_fence(Batch, batch.pk, batch.attempt)
                _requeue_build(batch, verdict[0], failed=verdict[1])
                done["builds"] += 1
        for batch_file in BatchFile.objects.filter(
            stale, _working_files(), batch__status__in=SENDING
        ).order_by("lease_until")[:PASS_LIMIT]:
            verdict = _verdict(batch_file, now)
            if verdict:
                if batch_file.claimed_at is not None:
                    lease_fence(BatchFile, batch_file.pk, batch_file.attempt)
                _requeue_file(batch_file, verdict[0], failed=verdict[1])
                done["files"] += 1
    # Batches whose files all ended but that did not finish (a crash between the two).
    for batch_id in Batch.objects.filter(status__in=SENDING).values_list("pk", flat=True)[
        :PASS_LIMIT
    ]:
        batch_refresh(batch_id=batch_id)
    done["dispatched"] = batchfiles_dispatch()
    if any(done.values()):
        logger.info("Batch reconciler: %s", done)
    return done
