"""cdpstage.leases: the one lease mechanism of import runs, builds and file steps."""

from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.utils import timezone

from cdpstage.leases import (
    LeaseLostError,
    lease_fence,
    lease_heartbeat,
    lease_renew,
    lease_verdict,
)
from records.models import ImportRun, ImportRunEvent
from records.services.imports import import_run_create, import_run_execute, import_run_fail

NOW = timezone.now()


def _verdict(**kw):
    base = {
        "claimed": False,
        "lease_until": None,
        "updated_at": NOW - timedelta(minutes=1),
        "job_id": "",
        "queue": "imports",
        "now": NOW,
        "grace": timedelta(seconds=15),
    }
    return lease_verdict(**{**base, **kw})


def test_lease_verdict_claimed_row_is_lost_only_when_its_lease_ran_out():
    assert _verdict(claimed=True, lease_until=NOW + timedelta(seconds=1)) is None
    assert _verdict(claimed=True, lease_until=NOW - timedelta(seconds=1)) == (
        "its lease expired",
        True,
    )


@pytest.mark.django_db
def test_lease_verdict_unclaimed_row_without_a_job_is_requeued_after_the_grace(clean_queues):
    assert _verdict(updated_at=NOW - timedelta(seconds=5), job_id="importrun-1-a1") is None
    assert _verdict(job_id="importrun-1-a1") == ("its job was lost", True)


@pytest.mark.django_db(transaction=True)
def test_heartbeat_renews_the_lease_until_the_row_is_no_longer_ours(settings):
    settings.CDP_LEASE_SECONDS = 3  # a beat every second
    run = import_run_create(
        uploaded_file=ContentFile(b"email\nx@example.com\n", name="g.csv"),
        schema="guest",
        enqueue=False,
    )
    ImportRun.objects.filter(pk=run.pk).update(
        status="running", attempt=1, lease_until=timezone.now()
    )
    with lease_heartbeat(ImportRun, run.pk, 1, owned={"status": "running"}):
        time.sleep(1.5)
        renewed = ImportRun.objects.get(pk=run.pk).lease_until
    assert renewed > timezone.now() + timedelta(seconds=1)
    with pytest.raises(LeaseLostError):
        lease_renew(ImportRun, run.pk, 2, owned={"status": "running"})


@pytest.mark.django_db(transaction=True, databases=["default", "progress"])
def test_import_run_status_changes_write_audit_events():
    run = import_run_create(
        uploaded_file=ContentFile(
            b"identifiers.0.provider,identifiers.0.id,email\nemail,a@example.com,a@example.com\n",
            name="g.csv",
        ),
        schema="guest",
        enqueue=False,
    )
    import_run_execute(import_run_id=run.pk, attempt=run.attempt)
    other = import_run_create(
        uploaded_file=ContentFile(b"email\nb@example.com\n", name="h.csv"),
        schema="guest",
        enqueue=False,
    )
    assert import_run_fail(import_run_id=other.pk, reason="Stopped.", actor_label="operator")
    events = list(ImportRunEvent.objects.values_list("run_id", "from_status", "to_status"))
    assert events == [
        (run.pk, "pending", "running"),
        (run.pk, "running", "succeeded"),
        (other.pk, "pending", "failed"),
    ]
    assert ImportRunEvent.objects.get(run=other).actor_label == "operator"


def _session(application_name: str):
    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"] or "postgres",
        dbname=settings["NAME"],
        application_name=application_name,
        autocommit=True,
    )


@pytest.mark.django_db
def test_fence_ends_the_sessions_of_the_stale_attempt_only():
    stale = _session("cdpstage records.importrun 7 a1")
    current = _session("cdpstage records.importrun 7 a2")
    try:
        assert lease_fence(ImportRun, 7, 1) == 1
        with pytest.raises(psycopg.OperationalError):
            stale.execute("SELECT 1")
        assert current.execute("SELECT 1").fetchone() == (1,)
        assert lease_fence(ImportRun, 7, 1) == 0
    finally:
        stale.close()
        current.close()


@pytest.mark.django_db(transaction=True)
def test_heartbeat_names_the_attempts_session_while_it_works():
    def name() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('application_name')")
            return cursor.fetchone()[0]

    before = name()
    with lease_heartbeat(ImportRun, 7, 3, owned={}):
        assert name() == "cdpstage records.importrun 7 a3"
    assert name() == before
