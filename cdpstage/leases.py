"""Leases on work rows: claim, heartbeat renewal, expiry, "is its job alive", reconcile verdict.

One mechanism for every piece of background work (import runs, batch builds, file uploads and
polls). The row is the source of truth (docs/design/rq-crash-semantics.md section 8): a job claims
its row for its own attempt with a conditional UPDATE that sets `lease_until`, renews the
lease from a heartbeat thread while it works (whatever the step's length: a COPY, an upload,
outcomes written for 100,000 records), and the reconcilers re-enqueue a row whose lease ran
out under the next attempt. Leases are short (CDP_LEASE_SECONDS, 30 s by default) and renewed
every third of that, so a dead worker's work resumes within a lease plus one maintenance
pass; a stopped but living worker (SIGSTOP) stops renewing too and is treated the same way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Model, QuerySet
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

logger = logging.getLogger(__name__)

__all__ = [
    "DEAD_JOB_STATUSES",
    "LeaseLostError",
    "job_status",
    "lease_claim",
    "lease_fence",
    "lease_heartbeat",
    "lease_renew",
    "lease_seconds",
    "lease_until",
    "lease_verdict",
]

# RQ statuses after which a job will never run (again) by itself.
DEAD_JOB_STATUSES = frozenset(
    {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}
)


class LeaseLostError(Exception):
    """This job no longer owns its row (its lease ran out and a newer attempt took the work)."""


def lease_seconds() -> int:
    return max(3, int(settings.CDP_LEASE_SECONDS))


def lease_until(*, now: datetime | None = None, delay: float = 0.0) -> datetime:
    """When a lease taken now (for work starting `delay` seconds from now) runs out."""
    return (now or timezone.now()) + timedelta(seconds=delay + lease_seconds())


def lease_claim(rows: QuerySet, **fields: Any) -> bool:
    """Claim the row `rows` selects (filtered on id, attempt and claimable state) with a lease.

    One conditional UPDATE: of two racing claimers exactly one updates the row.
    """
    now = timezone.now()
    return bool(rows.update(lease_until=lease_until(now=now), updated_at=now, **fields))


def lease_renew(
    model: type[Model],
    pk: int,
    attempt: int,
    *,
    owned: dict[str, Any],
    using: str = DEFAULT_DB_ALIAS,
    **fields: Any,
) -> None:
    """Push the lease forward (and save `fields`); LeaseLostError if the attempt lost the row.

    `owned` are the conditions under which the row is still this attempt's (e.g. claimed, or
    still running).
    """
    now = timezone.now()
    renewed = (
        model._default_manager.using(using)
        .filter(pk=pk, attempt=attempt, **owned)
        .update(lease_until=lease_until(now=now), updated_at=now, **fields)
    )
    if not renewed:
        raise LeaseLostError(f"{model.__name__} {pk} attempt {attempt} lost its lease.")


@contextmanager
def lease_heartbeat(
    model: type[Model], pk: int, attempt: int, *, owned: dict[str, Any]
) -> Iterator[None]:
    """Renew the lease from a thread every third of a lease while the block runs.

    The thread has its own database connection (Django's are per thread), so renewals are
    committed at once even while the worker holds a long transaction, and closes it. It stops
    quietly when the row is no longer this attempt's (the block finds out by itself through
    its own conditional UPDATEs).
    """
    stop = threading.Event()
    interval = lease_seconds() / 3
    _name_session(_session_name(model, pk, attempt))

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    lease_renew(model, pk, attempt, owned=owned)
                except LeaseLostError:
                    logger.info("%s %s attempt %s: lease gone", model.__name__, pk, attempt)
                    return
                except Exception:
                    # A database blip: the next beat tries again; the lease has 2 more beats.
                    logger.warning(
                        "Lease renewal of %s %s failed", model.__name__, pk, exc_info=True
                    )
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"lease-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
        _name_session("")


def _session_name(model: type[Model], pk: int, attempt: int) -> str:
    """The application_name of the sessions an attempt works in (visible in pg_stat_activity)."""
    return f"cdpstage {model._meta.label_lower} {pk} a{attempt}"[:63]


def _name_session(name: str) -> None:
    """Name this thread's database session after the attempt working in it ('' resets it)."""
    try:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            if name:
                cursor.execute("SELECT set_config('application_name', %s, false)", [name])
            else:
                cursor.execute("RESET application_name")
    except DatabaseError:
        # A dead connection names nothing; the job finds out through its own statements.
        logger.warning("Could not name the database session %r", name, exc_info=True)


def lease_fence(model: type[Model], pk: int, attempt: int) -> int:
    """Terminate the database sessions of an attempt that lost its lease; how many.

    A killed worker's sessions end with its process, a stopped one's (SIGSTOP, a frozen host)
    stay open, holding its transaction's locks and uncommitted rows. Terminating them rolls
    that work back at once. Needs the same database role as the workers (or
    pg_signal_backend); without it the next attempt waits for those locks instead.
    """
    try:
        with transaction.atomic(), connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = %s "
                "AND pid <> pg_backend_pid()",
                [_session_name(model, pk, attempt)],
            )
            ended = cursor.fetchone()[0]
    except DatabaseError:
        logger.warning(
            "Could not end the sessions of %s %s attempt %s",
            model.__name__,
            pk,
            attempt,
            exc_info=True,
        )
        return 0
    if ended:
        logger.warning(
            "%s %s attempt %s: ended %s database session(s) of the stale attempt",
            model.__name__,
            pk,
            attempt,
            ended,
        )
    return ended


def job_status(queue: str, job_id: str) -> str | None:
    """RQ's status of the job with this id, or None when RQ does not have it (or cannot read it)."""
    if not job_id:
        return None
    try:
        job = Job.fetch(
            job_id, connection=django_rq.get_connection(queue), serializer=JSONSerializer
        )
    except NoSuchJobError:
        return None
    return job.get_status(refresh=False)


def lease_verdict(
    *,
    claimed: bool,
    lease_until: datetime | None,
    updated_at: datetime,
    job_id: str,
    queue: str,
    now: datetime,
    grace: timedelta,
) -> tuple[str, bool] | None:
    """Whether a waiting or working row must be enqueued again: (reason, counts as a failure).

    A claimed row whose lease ran out lost its worker (killed, stopped, cut off). An unclaimed
    row is waiting for its job: if RQ no longer has it (flushed Redis, lost enqueue) it is
    re-enqueued at once; a scheduled job past its lease may have no live scheduler and is
    re-enqueued too (not a failure); a job still queued is left alone, however long the queue.
    `grace` covers the moment between a commit and its after-commit enqueue.
    """
    if claimed:
        if lease_until is not None and lease_until < now:
            return "its lease expired", True
        return None
    if updated_at > now - grace:
        return None
    status = job_status(queue, job_id)
    if status is None or status in DEAD_JOB_STATUSES:
        return "its job was lost", True
    if status == JobStatus.SCHEDULED and lease_until is not None and lease_until < now:
        return "its scheduled job is overdue", False
    return None
