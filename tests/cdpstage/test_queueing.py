"""Failure callbacks reconnect before they record the failure (issue 11 item 7)."""

from __future__ import annotations

import pytest
from django.db.utils import OperationalError

from cdpstage import queueing


def test_failure_callback_retries_its_database_work_on_a_fresh_connection(monkeypatch):
    monkeypatch.setattr(queueing.time, "sleep", lambda _seconds: None)
    calls: list[int] = []

    def record() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")

    queueing.run_failure_callback(record, job_id="batchfile-1-poll-a2")
    assert len(calls) == 3


def test_failure_callback_gives_up_quietly_when_the_database_stays_away(monkeypatch):
    monkeypatch.setattr(queueing.time, "sleep", lambda _seconds: None)
    calls: list[int] = []

    def record() -> None:
        calls.append(1)
        raise OperationalError("connection refused")

    queueing.run_failure_callback(record, job_id="importrun-1-a1")  # no exception escapes
    assert len(calls) == queueing.CALLBACK_ATTEMPTS


@pytest.mark.django_db(transaction=True)
def test_import_failure_callback_hands_the_run_to_the_reconciler_at_once():
    from datetime import timedelta

    from django.core.files.base import ContentFile
    from django.utils import timezone

    from records.jobs import on_import_failure
    from records.models import ImportRun
    from records.services.imports import import_run_create

    run = import_run_create(
        uploaded_file=ContentFile(b"email\nx@example.com\n", name="g.csv"),
        schema="guest",
        enqueue=False,
    )
    ImportRun.objects.filter(pk=run.pk).update(
        status="running", attempt=1, lease_until=timezone.now() + timedelta(seconds=30)
    )

    class Job:
        id = f"importrun-{run.pk}-a1"
        args = (run.pk, 1)

    on_import_failure(Job(), None, OperationalError, None, None)
    run.refresh_from_db()
    assert run.lease_until <= timezone.now()
    assert run.last_error == "OperationalError"
