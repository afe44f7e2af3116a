"""CDP's daily ceiling for guest migrations: CDP recommends migrating at most 200,000 guest
profiles a day, so migration files go out within CDP_MIGRATION_DAILY_LIMIT records a day.

A day is a UTC calendar day (CDP does not say which day it counts in; UTC is the one a
tenant in any region can read off the same clock). What the day has used is counted from the
database, never from a worker's memory, so every dispatcher on every host sees the same
figure (the dispatcher holds its advisory lock while it counts and chooses): the records of
migration files uploaded since the day began (a file CDP found `corrupted` was not processed
and does not count), plus those of files dispatched and not uploaded yet (on their way), plus
those a resumed upload found already at CDP, by the day they were dispatched.
A file that does not fit what is left waits, still pending, and the reconciler's dispatch on
every worker's maintenance pass sends it once the day has turned. A build cuts migration
batches into files of at most one day's allowance, so every file fits some day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q, Sum
from django.utils import timezone

from batches.models import Batch, BatchFile, BatchSchema

__all__ = [
    "Allowance",
    "allowance_notes",
    "allowance_summary",
    "file_record_cap",
    "migration_allowance",
    "within_allowance",
]

# The batch schemas the daily ceiling applies to.
LIMITED_SCHEMAS = frozenset({BatchSchema.MIGRATION})


@dataclass(frozen=True)
class Allowance:
    """Today's migration allowance: the limit, what is used, and when it resets."""

    limit: int
    used: int
    resets_at: datetime

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)


def _limit() -> int:
    return max(int(settings.CDP_MIGRATION_DAILY_LIMIT), 1)


def day_start(now: datetime) -> datetime:
    """Midnight UTC of the day `now` falls in."""
    utc = now.astimezone(UTC)
    return utc.replace(hour=0, minute=0, second=0, microsecond=0)


def migration_allowance(*, now: datetime | None = None) -> Allowance:
    """What today's allowance is and how much of it migration files have used."""
    now = now or timezone.now()
    start = day_start(now)
    uploaded_today = Q(uploaded_at__gte=start, uploaded_at__lte=now)
    # On its way: dispatched, its bytes not up yet.
    on_its_way = Q(
        uploaded_at__isnull=True,
        dispatched_at__isnull=False,
        status__in=(BatchFile.Status.PENDING, BatchFile.Status.ALLOCATED),
    )
    # Bytes a resumed upload found already at CDP (no upload time of ours): by the day it was
    # dispatched. A ref given up on, or replaced, before its upload counts nothing.
    found_at_cdp = Q(
        uploaded_at__isnull=True, dispatched_at__gte=start, dispatched_at__lte=now
    ) & ~Q(status__in=(BatchFile.Status.FAILED, BatchFile.Status.SUPERSEDED))
    counted = (
        BatchFile.objects.filter(batch__schema__in=LIMITED_SCHEMAS)
        .exclude(status=BatchFile.Status.CORRUPTED)
        .filter(uploaded_today | on_its_way | found_at_cdp)
    )
    used = counted.aggregate(n=Sum("record_count"))["n"] or 0
    return Allowance(limit=_limit(), used=used, resets_at=start + timedelta(days=1))


def file_record_cap(schema: str) -> int | None:
    """The most records a built file of `schema` may hold (None: no cap but its size)."""
    return _limit() if schema in LIMITED_SCHEMAS else None


def within_allowance(
    candidates: Iterable[tuple[int, int, str, int]], free: int, *, now: datetime | None = None
) -> list[tuple[int, int]]:
    """(file id, batch id) of the first `free` candidates that may go now.

    `candidates`: (file id, batch id, batch schema, records), in sending order. Files of a
    limited schema go while they fit what is left today; from the first that does not, the
    later ones wait too (a batch's files go in order). Other files are not held back by them.
    """
    chosen: list[tuple[int, int]] = []
    allowance: Allowance | None = None
    left = 0
    waiting = False
    for file_id, batch_id, schema, records in candidates:
        if len(chosen) >= free:
            break
        if schema in LIMITED_SCHEMAS:
            if waiting:
                continue
            if allowance is None:
                allowance = migration_allowance(now=now)
                left = allowance.left
            if records > left:
                waiting = True
                continue
            left -= records
        chosen.append((file_id, batch_id))
    return chosen


def allowance_summary(*, now: datetime | None = None) -> str:
    """The ceiling and what is left of it today, as the approver reads it before sending."""
    allowance = migration_allowance(now=now)
    return (
        f"CDP takes at most {allowance.limit:,} guest migrations a day "
        f"(CDP_MIGRATION_DAILY_LIMIT): {allowance.left:,} left today, until "
        f"{allowance.resets_at:%Y-%m-%d %H:%M} UTC; files beyond it wait for the next day."
    )


def allowance_notes(batch: Batch, *, now: datetime | None = None) -> list[str]:
    """What the batch page and batch_status say about files waiting for the allowance."""
    if batch.schema not in LIMITED_SCHEMAS or batch.status not in (
        Batch.Status.UPLOADING,
        Batch.Status.PROCESSING,
    ):
        return []
    waiting = list(
        BatchFile.objects.filter(
            batch=batch, status=BatchFile.Status.PENDING, dispatched_at__isnull=True
        )
        .order_by("sequence", "id")
        .values_list("record_count", flat=True)
    )
    if not waiting:
        return []
    allowance = migration_allowance(now=now)
    if waiting[0] <= allowance.left:
        return []  # the next one fits: it goes as soon as CDP has room (one file at a time)
    files, records = len(waiting), sum(waiting)
    return [
        f"{files:,} file{'s' if files != 1 else ''} ({records:,} guest migration"
        f"{'s' if records != 1 else ''}) waiting for "
        f"tomorrow's allowance, {allowance.left:,} left today: CDP recommends at most "
        f"{allowance.limit:,} guest migrations a day (CDP_MIGRATION_DAILY_LIMIT); the allowance "
        f"resets at {allowance.resets_at:%Y-%m-%d %H:%M} UTC and they go out then by themselves."
    ]
