"""Shared bits of the batch commands: look up users and batches, wait for a status."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.management.base import CommandError

from batches.models import Batch
from batches.selectors import batch_progress
from cdpstage.commandline import get_user

__all__ = ["ACTOR_LABEL", "follow", "get_batch", "get_user"]

ACTOR_LABEL = "command line"


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
    """Poll the batch row until `until(batch)`, reporting each change of status or progress."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        batch.refresh_from_db()
        progress = batch_progress(batch)
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
                f"{timeout:.0f} s; it carries on in the background (see batch_status)."
            )
        time.sleep(interval)
