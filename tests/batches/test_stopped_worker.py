"""A stuck-but-alive worker (SIGSTOP): its work resumes on another worker, and once it wakes up
(SIGCONT) it cannot overwrite what the new owner did.

A stopped worker keeps its RQ registration and its started-job entry until their TTLs, its
database sessions stay open (with the transaction it was in), and it no longer renews its
lease. The reconciler of the other worker sees the lease run out, ends the stale attempt's
sessions (cdpstage.leases.lease_fence: its uncommitted rows would otherwise block the next
attempt's writes for as long as it stays stopped) and enqueues the next attempt.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import time

import django_rq
import pytest
from django.core.files.base import ContentFile
from rq import Worker

from cdpstage.leases import LeaseLostError, lease_renew
from records.models import Guest, ImportRun
from records.services.imports import RUNNING_OWNED, import_run_create, import_run_transition
from tests.batches.conftest import descendants, wait_for
from tests.processes import running_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROWS = 30_000
LEASE_SECONDS = 5
# Issue 11: work of a dead or stuck worker resumes within a minute.
RESUME_BOUND = 60


def _guests_csv(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["identifiers.0.provider", "identifiers.0.id", "email", "firstName"])
    for i in range(rows):
        writer.writerow(["email", f"s{i}@example.com", f"s{i}@example.com", f"name{i}"])
    return out.getvalue().encode()


def _worker_running(job_id: str, workers: list) -> object:
    """Which of our worker processes runs the job `job_id` (by RQ's own registration)."""
    by_pid = {process.pid: process for process in workers}
    for worker in Worker.all(queue=django_rq.get_queue("imports")):
        if worker.get_current_job_id() == job_id and worker.pid in by_pid:
            return by_pid[worker.pid]
    return None


def _signal_all(process, sig: int) -> list[int]:
    """Send `sig` to the worker and everything it forked (horse, scheduler)."""
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        os.kill(pid, sig)
    return pids


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("clean_queues")
def test_stopped_import_worker_is_replaced_and_cannot_overwrite_the_new_attempt(
    stager, tmp_path, settings
):
    settings.CDP_LEASE_SECONDS = LEASE_SECONDS
    env = {"CDP_LEASE_SECONDS": str(LEASE_SECONDS), "RQ_MAINTENANCE_INTERVAL": "1"}
    with (
        running_worker("imports", tmp_path / "imports-1.log", **env) as first,
        running_worker("imports", tmp_path / "imports-2.log", **env) as second,
    ):
        run = import_run_create(
            uploaded_file=ContentFile(_guests_csv(ROWS), name="stopped.csv"),
            schema="guest",
            user=stager,
        )
        # Mid-step: attempt 1 is staging rows inside its transaction.
        wait_for(
            lambda: ImportRun.objects.filter(pk=run.pk, status="running", rows_read__gt=0).exists(),
            timeout=120,
            interval=0.05,
            what="attempt 1 to be staging rows",
        )
        run.refresh_from_db()
        stuck = wait_for(
            lambda: _worker_running(run.job_id, [first, second]), timeout=10, what="its worker"
        )
        # The work horse is the child in a process group of its own (the scheduler is not).
        horse = next(pid for pid in descendants(stuck.pid) if os.getpgid(pid) != stuck.pid)
        stopped_pids = _signal_all(stuck, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            # The other worker takes the run over and finishes it while the first is still
            # stopped (its open transaction no longer holds the rows it had written).
            wait_for(
                lambda: (
                    ImportRun.objects.filter(
                        pk=run.pk, attempt__gt=1, status="running", lease_until__isnull=False
                    ).exists()
                    or ImportRun.objects.get(pk=run.pk).is_finished
                ),
                timeout=2 * RESUME_BOUND,
                interval=0.25,
                what="another worker to resume the run",
            )
            resumed_after = time.monotonic() - stopped_at
            # What the stale attempt would get if it woke now: its renewal and its final
            # UPDATE are conditional on its attempt, and attempt 2 owns the run.
            taken = ImportRun.objects.get(pk=run.pk)
            assert (taken.status, taken.attempt) == ("running", 2)
            with pytest.raises(LeaseLostError):
                lease_renew(ImportRun, run.pk, 1, owned=RUNNING_OWNED)
            assert not import_run_transition(
                import_run_id=run.pk, target=ImportRun.Status.FAILED, attempt=1
            )
            wait_for(
                lambda: ImportRun.objects.get(pk=run.pk).is_finished,
                timeout=300,
                interval=0.5,
                what="the resumed run to finish",
            )
            done = ImportRun.objects.get(pk=run.pk)
            events = list(done.events.values_list("attempt", "from_status", "to_status"))
        finally:
            for pid in stopped_pids:
                os.kill(pid, signal.SIGCONT)
        assert resumed_after <= RESUME_BOUND, f"resumed only after {resumed_after:.1f} s"
        assert done.status == ImportRun.Status.SUCCEEDED, done.message
        assert done.attempt == 2
        assert Guest.objects.count() == ROWS

        # Awake again, attempt 1 carries on where it was stopped: its database session was
        # ended (its transaction rolled back), and every write it may still try is conditional
        # on owning the run. Once its work horse has ended, the run is as attempt 2 left it.
        wait_for(
            lambda: not _alive(horse), timeout=60, interval=0.25, what="the stale horse to end"
        )
        after = ImportRun.objects.get(pk=run.pk)
        assert (after.status, after.attempt, after.finished_at, after.rows_created) == (
            done.status,
            done.attempt,
            done.finished_at,
            done.rows_created,
        )
        assert list(after.events.values_list("attempt", "from_status", "to_status")) == events
        assert events[-1] == (2, "running", "succeeded")
        assert Guest.objects.count() == ROWS
        assert stuck.poll() is None, "the woken worker should carry on serving the queue"


def _alive(pid: int) -> bool:
    """Whether the process runs still (ended but not yet reaped by its parent counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
