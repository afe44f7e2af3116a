"""`manage.py records_mark_ready`: same service as the admin, counts printed, readable errors."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from records.models import BatchMembership, Guest, ReviewStatus, TrackingEvent
from tests.processes import ROOT, worker_env
from tests.records.factories import GuestFactory, ImportRunFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(user_factory):
    return user_factory(
        "cmd-operator",
        perms=(
            "records.change_guest",
            "records.change_trackingevent",
            "records.review_guest",
            "records.review_trackingevent",
        ),
    )


def _run(*args: str) -> str:
    out = StringIO()
    call_command("records_mark_ready", *args, stdout=out)
    return out.getvalue()


def test_records_mark_ready_all_valid_skips_invalid_and_held(operator):
    GuestFactory.create_batch(3)
    GuestFactory(email="broken")
    held = GuestFactory()
    Guest.objects.filter(pk=held.pk).update(review_status=ReviewStatus.HELD)

    output = _run("--schema", "guest", "--all-valid", "--user", "cmd-operator")

    assert "3 guests marked ready." in output
    assert "1 held records left held" in output
    assert Guest.objects.filter(review_status=ReviewStatus.READY).count() == 3
    assert Guest.objects.filter(review_status=ReviewStatus.INVALID).count() == 1
    held.refresh_from_db()
    assert held.review_status == ReviewStatus.HELD


def test_records_mark_ready_include_held(operator):
    held = GuestFactory()
    Guest.objects.filter(pk=held.pk).update(review_status=ReviewStatus.HELD)
    output = _run("--schema", "guest", "--all-valid", "--include-held", "--user", "cmd-operator")
    assert "1 guest marked ready." in output
    held.refresh_from_db()
    assert held.review_status == ReviewStatus.READY


def test_records_mark_ready_import_run_reports_invalid(operator):
    run = ImportRunFactory()
    other = GuestFactory()
    in_run = GuestFactory.create_batch(2)
    broken = GuestFactory(email="broken")
    Guest.objects.filter(pk__in=[g.pk for g in in_run] + [broken.pk]).update(import_run=run)

    output = _run("--schema", "guest", "--import-run", str(run.pk), "--user", "cmd-operator")

    assert "2 guests marked ready. 1 skipped because they are invalid" in output
    other.refresh_from_db()
    assert other.review_status == ReviewStatus.NEW


def test_records_mark_ready_tracking(operator):
    TrackingEventFactory.create_batch(2)
    output = _run("--schema", "tracking", "--all-valid", "--user", "cmd-operator")
    assert "2 tracking events marked ready." in output
    assert set(TrackingEvent.objects.values_list("review_status", flat=True)) == {"ready"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--schema", "guest", "--all-valid", "--user", "nobody"], "No active user named"),
        (["--schema", "guest", "--import-run", "999999", "--user", "cmd-operator"], "no import"),
        (["--schema", "guest", "--user", "cmd-operator"], "--all-valid --import-run"),
        (["--schema", "product", "--all-valid", "--user", "cmd-operator"], "invalid choice"),
    ],
)
def test_records_mark_ready_bad_arguments(operator, args, message):
    with pytest.raises(CommandError, match=message):
        _run(*args)


def test_records_mark_ready_wrong_schema_import_run(operator):
    run = ImportRunFactory(schema="tracking")
    with pytest.raises(CommandError, match="imported tracking events, not the guest schema"):
        _run("--schema", "guest", "--import-run", str(run.pk), "--user", "cmd-operator")


def test_records_mark_ready_user_without_permission(user_factory):
    user_factory("cmd-auditor", perms=("records.view_guest",))
    guest = GuestFactory()
    with pytest.raises(CommandError, match="permission to review guests"):
        _run("--schema", "guest", "--all-valid", "--user", "cmd-auditor")
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.NEW


def test_records_mark_ready_exit_code_from_command_line():
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "records_mark_ready",
            "--schema",
            "guest",
            "--all-valid",
            "--user",
            "no-such-user-anywhere",
        ],
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "No active user named 'no-such-user-anywhere'." in result.stderr
    assert "Traceback" not in result.stderr


def test_records_mark_ready_works_in_chunks(operator, monkeypatch):
    from records.management.commands import records_mark_ready as command

    monkeypatch.setattr(command, "CHUNK_ROWS", 2)
    monkeypatch.setattr(command, "PROGRESS_EVERY", 2)
    GuestFactory.create_batch(5)
    locked = GuestFactory()
    BatchMembership.objects.create(batch_id=8, kind="guest", record_id=locked.pk)

    output = _run("--schema", "guest", "--all-valid", "--user", "cmd-operator")

    assert "... 2 guests looked at" in output
    assert "... 4 guests looked at" in output
    assert "5 guests marked ready. 1 skipped because they are in a batch" in output
    assert Guest.objects.filter(review_status=ReviewStatus.READY).count() == 5


def test_records_mark_ready_checks_permission_with_nothing_to_do(user_factory):
    user_factory("cmd-viewer", perms=("records.view_guest",))
    with pytest.raises(CommandError, match="permission to review guests"):
        _run("--schema", "guest", "--all-valid", "--user", "cmd-viewer")
