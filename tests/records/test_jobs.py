"""Background import runs: a real `rqworker --burst` against the real Redis and PostgreSQL,
progress visible while the data transaction is open, and the reconciler."""

import csv
import io
import threading

import psycopg
import pytest
from django.core.files.base import ContentFile
from django.db import connection

from cdpstage.errors import ApplicationError
from records import jobs
from records.importing import pipeline
from records.models import Guest, ImportRun
from records.services import imports as import_services
from records.services.imports import import_run_create, import_run_execute, job_id_for
from tests.processes import run_worker_burst

REAL_DB = pytest.mark.django_db(transaction=True, databases=["default", "progress"])


def guest_csv(rows: int, *, bad_every: int = 0) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["identifiers.0.provider", "identifiers.0.id", "email", "firstName", "country"])
    for i in range(rows):
        # Every bad_every-th row is staged invalid (country not ISO), the next one refused
        # (a cell too many).
        country = "XX" if bad_every and i % bad_every == 0 else "IE"
        refused = bad_every and i % bad_every == 1
        email = f"g{i}@example.com"
        writer.writerow(["email", email, email, f"name{i}", country, *(["x"] if refused else [])])
    return out.getvalue().encode()


def other_connection() -> psycopg.Connection:
    """A connection that sees only committed data, like the admin page in another request."""
    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"] or "127.0.0.1",
        port=s["PORT"] or 5432,
        user=s["USER"] or "postgres",
        dbname=s["NAME"],
        autocommit=True,
    )


@pytest.mark.integration
@REAL_DB
def test_background_run_through_real_worker(clean_queues, settings):
    settings.IMPORT_BATCH_ROWS = 500
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(3000, bad_every=100), name="guests.csv"),
        schema="guest",
        on_error="skip",
    )
    assert run.status == "pending"
    assert run.job_id == f"importrun-{run.pk}-a1"
    result = run_worker_burst("imports", CDP_IMPORT_BATCH_ROWS="500")
    assert result.returncode == 0, result.stderr[-3000:]
    run.refresh_from_db()
    assert run.status == "partial", (run.message, result.stderr[-3000:])
    assert run.rows_total == 3000
    assert run.rows_read == 3000
    assert run.bytes_read == run.bytes_total > 0
    assert (run.rows_created, run.rows_bad, run.rows_invalid) == (2970, 30, 30)
    assert run.started_at is not None
    assert run.finished_at is not None
    assert run.lease_until is None
    assert Guest.objects.count() == 2970
    with run.error_report.open("rb") as handle:
        report = list(csv.DictReader(io.StringIO(handle.read().decode())))
    assert len(report) == 60
    assert sorted({(r["severity"], r["code"]) for r in report}) == [
        ("invalid", "invalid_country"),
        ("refused", "extra_cells"),
    ]
    assert all("@example.com" not in r["reason"] for r in report)


@pytest.mark.integration
@REAL_DB
def test_background_run_all_or_nothing_failure_through_worker(clean_queues):
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(50, bad_every=10), name="guests.csv"),
        schema="guest",
    )
    result = run_worker_burst("imports")
    assert result.returncode == 0, result.stderr[-3000:]
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message.startswith("Nothing was imported: 5 of 50 rows could not be staged")
    assert Guest.objects.count() == 0
    assert run.error_report


@REAL_DB
def test_progress_is_visible_while_the_data_transaction_is_open(monkeypatch, settings):
    settings.IMPORT_BATCH_ROWS = 100
    monkeypatch.setattr(pipeline, "PROGRESS_SECONDS", 0)
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_ROWS", 200)
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(1000), name="guests.csv"),
        schema="guest",
        enqueue=False,
    )
    seen = []
    with other_connection() as other:

        def watch(progress):
            row = other.execute(
                "SELECT rows_read, rows_total, status, lease_until IS NOT NULL"
                " FROM records_importrun WHERE id = %s",
                [run.pk],
            ).fetchone()
            guests = other.execute("SELECT count(*) FROM records_guest").fetchone()[0]
            seen.append((progress.rows_read, *row, guests))

        finished = import_run_execute(import_run_id=run.pk, attempt=1, on_progress=watch)
    assert finished.status == "succeeded"
    assert len(seen) >= 4
    mid = seen[1]
    # Another connection sees the progress, but not yet a single guest (not committed).
    assert mid[1] == mid[0] > 0
    assert mid[2:5] == (1000, "running", True)
    assert mid[5] == 0
    assert Guest.objects.count() == 1000


@REAL_DB
def test_execute_twice_does_nothing_the_second_time():
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(5), name="guests.csv"), schema="guest", enqueue=False
    )
    assert import_run_execute(import_run_id=run.pk, attempt=1).status == "succeeded"
    assert import_run_execute(import_run_id=run.pk, attempt=1) is None
    assert Guest.objects.count() == 5


@REAL_DB
def test_execute_with_lost_lease_rolls_back(monkeypatch, settings):
    """A worker whose lease was taken over (the reconciler started attempt 2) writes nothing."""
    settings.IMPORT_BATCH_ROWS = 50
    monkeypatch.setattr(pipeline, "PROGRESS_SECONDS", 0)
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_ROWS", 100)
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(500), name="guests.csv"), schema="guest", enqueue=False
    )

    def take_over(progress):
        if progress.rows_read >= 200:
            with other_connection() as other:
                other.execute("UPDATE records_importrun SET attempt = 2 WHERE id = %s", [run.pk])

    assert import_run_execute(import_run_id=run.pk, attempt=1, on_progress=take_over) is None
    assert Guest.objects.count() == 0
    run.refresh_from_db()
    assert run.status == "running"


def cancel_in_another_connection(run_id: int, user) -> None:
    """import_run_cancel as the admin's cancel button runs it: another request, another
    connection, committed at once."""

    def cancel():
        try:
            import_services.import_run_cancel(import_run_id=run_id, user=user)
        finally:
            connection.close()

    thread = threading.Thread(target=cancel)
    thread.start()
    thread.join()


@REAL_DB
def test_cancel_stops_a_running_import_and_nothing_is_imported(monkeypatch, settings, user_factory):
    settings.IMPORT_BATCH_ROWS = 50
    monkeypatch.setattr(pipeline, "PROGRESS_SECONDS", 0)
    monkeypatch.setattr(pipeline, "PROGRESS_EVERY_ROWS", 100)
    stager = user_factory("stager")
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(1000), name="guests.csv"), schema="guest", enqueue=False
    )
    seen = []

    def cancel_midway(progress):
        seen.append(progress.rows_read)
        if len(seen) == 2:
            cancel_in_another_connection(run.pk, stager)

    assert import_run_execute(import_run_id=run.pk, attempt=1, on_progress=cancel_midway) is None
    # The job noticed at its next progress write, well before the end of the file.
    assert seen[-1] < 1000
    assert Guest.objects.count() == 0
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message.startswith("Cancelled by stager at ")
    assert run.message.endswith("nothing was imported.")
    assert run.finished_at is not None
    assert (run.rows_created, run.rows_updated) == (0, 0)


@REAL_DB
def test_cancel_of_a_pending_run_leaves_its_job_nothing_to_do(user_factory):
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(5), name="guests.csv"), schema="guest", enqueue=False
    )
    import_services.import_run_cancel(import_run_id=run.pk, user=user_factory("stager"))
    assert import_run_execute(import_run_id=run.pk, attempt=1) is None
    assert Guest.objects.count() == 0
    with pytest.raises(ApplicationError, match="already finished"):
        import_services.import_run_cancel(import_run_id=run.pk, user=None)


@pytest.mark.integration
@REAL_DB
def test_reconciler_requeues_an_expired_lease_and_the_worker_finishes(clean_queues):
    from django.utils import timezone

    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(20), name="guests.csv"), schema="guest", enqueue=False
    )
    # A worker claimed attempt 1 and died: running, lease in the past, no job left.
    ImportRun.objects.filter(pk=run.pk).update(
        status="running",
        job_id=job_id_for(run.pk, 1),
        lease_until=timezone.now() - timezone.timedelta(seconds=5),
    )
    jobs.reconcile_import_runs()
    run.refresh_from_db()
    assert (run.attempt, run.job_id, run.status) == (2, f"importrun-{run.pk}-a2", "running")
    import django_rq

    assert django_rq.get_queue("imports").get_job_ids() == [f"importrun-{run.pk}-a2"]
    result = run_worker_burst("imports")
    assert result.returncode == 0, result.stderr[-3000:]
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert Guest.objects.count() == 20


@REAL_DB
def test_reconciler_gives_up_after_max_attempts(settings, clean_queues):
    from django.utils import timezone

    settings.CDP_MAX_ATTEMPTS = 3
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(2), name="guests.csv"), schema="guest", enqueue=False
    )
    ImportRun.objects.filter(pk=run.pk).update(
        status="running", attempt=3, lease_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    assert import_services.import_runs_reconcile() == {"requeued": 0, "failed": 1}
    run.refresh_from_db()
    assert run.status == "failed"
    assert "stopped 3 times without finishing" in run.message


@REAL_DB
def test_reconciler_enqueues_a_pending_run_whose_job_was_lost(clean_queues):
    import django_rq
    from django.utils import timezone

    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(2), name="guests.csv"), schema="guest"
    )
    queue = django_rq.get_queue("imports")
    queue.empty()  # Redis lost the job
    ImportRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    assert import_services.import_runs_reconcile()["requeued"] == 1
    run.refresh_from_db()
    assert run.attempt == 2
    assert queue.get_job_ids() == [f"importrun-{run.pk}-a2"]
    # A second pass finds the new job alive and leaves it alone.
    ImportRun.objects.filter(pk=run.pk).update(
        updated_at=timezone.now() - timezone.timedelta(minutes=5)
    )
    assert import_services.import_runs_reconcile()["requeued"] == 0


@REAL_DB
def test_reconciler_steps_aside_when_another_holds_the_lock():
    with other_connection() as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(%s)", [import_services.RECONCILE_LOCK_KEY])
        assert import_services.import_runs_reconcile() == {"skipped": 1}


@pytest.mark.django_db
def test_unexpected_error_fails_the_run_without_leaking_data(monkeypatch, caplog):
    from records.importing.staging import GuestStager
    from records.services.imports import ImportStopped

    leaked = "duplicate key " + "-".join(["secret", "value"])  # not in any source line

    def explode(self, *args):
        raise ValueError(leaked)

    monkeypatch.setattr(GuestStager, "_write_guests", explode)
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(3), name="guests.csv"), schema="guest", enqueue=False
    )
    with pytest.raises(ImportStopped) as info:
        import_run_execute(import_run_id=run.pk, attempt=1)
    assert "secret-value" not in str(info.value)
    assert "secret-value" not in caplog.text
    assert "ValueError" in caplog.text
    run.refresh_from_db()
    assert (run.status, run.last_error) == ("failed", "ValueError")
    assert "unexpected error and nothing was imported" in run.message
    assert Guest.objects.count() == 0


@pytest.mark.django_db
def test_job_timeout_fails_the_run_with_advice(monkeypatch):
    from rq.timeouts import JobTimeoutException

    from records.importing.staging import GuestStager

    def slow(self, *args):
        raise JobTimeoutException("Task exceeded maximum timeout value (3600 seconds)")

    monkeypatch.setattr(GuestStager, "_write_guests", slow)
    run = import_run_create(
        uploaded_file=ContentFile(guest_csv(3), name="guests.csv"), schema="guest", enqueue=False
    )
    with pytest.raises(JobTimeoutException):
        import_run_execute(import_run_id=run.pk, attempt=1)
    run.refresh_from_db()
    assert run.status == "failed"
    assert "longer than the worker's job timeout" in run.message
