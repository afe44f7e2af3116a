"""Shared bits of the batch commands: look up users and batches, wait for a status."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.management.base import CommandError
from django.db import connections
from django.db.utils import InterfaceError, OperationalError

from batches.models import Batch
from batches.selectors import batch_progress
from cdpstage.commandline import get_user

__all__ = ["ACTOR_LABEL", "follow", "get_batch", "get_user"]

ACTOR_LABEL = "command line"
# Exit statuses of `--wait`, for cron and scripts (docs/batches.md).
EXIT_DELIVERED = 0
EXIT_NOT_DELIVERED = 1
EXIT_TIMED_OUT = 2
EXIT_ERROR = 3
# How long a command waits for the database to come back before it gives up with one line.
RECONNECT_SECONDS = 120.0
DATABASE_ERRORS = (OperationalError, InterfaceError)


def get_batch(batch_id: int) -> Batch:
    """The batch `batch_id`, or a CommandError."""
    try:
        return Batch.objects.select_related("created_by", "approved_by").get(pk=batch_id)
    except Batch.DoesNotExist:
        raise CommandError(f"There is no batch {batch_id}.") from None


def follow(
    batch: Batch,
    *,
    until: Callable[[Batch], bool],
    timeout: float,
    report: Callable[[str], None],
    interval: float = 2.0,
) -> Batch:
    """Poll the batch row until `until(batch)`, reporting each change of status or progress.

    A database blip (restart, failover, a terminated connection) is reported in one line and
    waited out for up to RECONNECT_SECONDS; the work itself goes on in the workers either way.
    Timed out: CommandError with EXIT_TIMED_OUT; database gone for good: EXIT_ERROR.
    """

    deadline = time.monotonic() + timeout
    last = ""
    lost_since: float | None = None
    while True:
        try:
            batch.refresh_from_db()
            progress = batch_progress(batch)
        except DATABASE_ERRORS as exc:
            connections.close_all()  # the next query opens a new connection
            now = time.monotonic()
            if lost_since is None:
                lost_since = now
                report(f"Lost the database connection ({type(exc).__name__}); reconnecting…")
            elif now - lost_since > RECONNECT_SECONDS:
                raise CommandError(
                    f"The database has been unreachable for {RECONNECT_SECONDS:.0f} s. Batch "
                    f"{batch.pk} carries on in the background; follow it again with "
                    f"batch_status {batch.pk} or batch_send {batch.pk} --wait.",
                    returncode=EXIT_ERROR,
                ) from None
            time.sleep(interval)
            continue
        if lost_since is not None:
            report("Reconnected to the database.")
            lost_since = None
        line = batch.get_status_display()
        if progress.counts:
            line = f"{line}: {progress.counts}"
        if line != last:
            report(line)
            last = line
        if until(batch):
            return batch
        if time.monotonic() > deadline:
            raise CommandError(
                f"Batch {batch.pk} is still {batch.get_status_display().lower()} after "
                f"{timeout:.0f} s; it carries on in the background (see batch_status).",
                returncode=EXIT_TIMED_OUT,
            )
        time.sleep(interval)
