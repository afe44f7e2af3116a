"""Tests for `manage.py stage_import`: summary, progress and exit codes."""

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from records.models import Guest, ImportRun
from tests.processes import ROOT, worker_env

GOOD = b"identifiers.0.provider,identifiers.0.id,email\nemail,a@example.com,a@example.com\n"
INVALID = GOOD + b"email,,b@example.com\n"  # row 3 has no identity: staged as invalid
MIXED = INVALID + b"email,c@example.com,c@example.com,surplus\n"  # row 4 is refused


def stage(path, *args):
    out = StringIO()
    call_command("stage_import", str(path), *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_stage_import_succeeds_with_summary(tmp_path, user_factory):
    user_factory("stager")
    path = tmp_path / "guests.csv"
    path.write_bytes(GOOD)
    output = stage(path, "--schema", "guest", "--user", "stager")
    assert "Succeeded" in output
    assert "1 created" in output
    run = ImportRun.objects.get()
    assert run.created_by.username == "stager"
    assert run.job_id == ""  # carried out here, not by a worker
    assert Guest.objects.count() == 1


@pytest.mark.django_db
def test_stage_import_with_invalid_rows_exits_0(tmp_path):
    path = tmp_path / "guests.csv"
    path.write_bytes(INVALID)
    output = stage(path, "--schema", "guest")
    assert "2 created" in output
    assert "1 staged as invalid" in output
    assert Guest.objects.get(email="b@example.com").review_status == "invalid"
    assert ImportRun.objects.get().status == "succeeded"


@pytest.mark.django_db
def test_stage_import_all_or_nothing_exits_2(tmp_path):
    path = tmp_path / "guests.csv"
    path.write_bytes(MIXED)
    with pytest.raises(CommandError) as info:
        stage(path, "--schema", "guest")
    assert info.value.returncode == 2
    assert Guest.objects.count() == 0
    assert ImportRun.objects.get().status == "failed"


@pytest.mark.django_db
def test_stage_import_skip_bad_rows_exits_1(tmp_path):
    path = tmp_path / "guests.csv"
    path.write_bytes(MIXED)
    with pytest.raises(CommandError) as info:
        stage(path, "--schema", "guest", "--skip-bad-rows")
    assert info.value.returncode == 1
    assert Guest.objects.count() == 2
    assert ImportRun.objects.get().status == "partial"


@pytest.mark.django_db
def test_stage_import_passes_encoding_and_delimiter(tmp_path):
    path = tmp_path / "guests.txt"
    path.write_bytes(
        "identifiers.0.provider;identifiers.0.id;firstName\nemail;a@x.io;Zoë\n".encode("cp1252")
    )
    stage(path, "--schema", "guest", "--encoding", "cp1252", "--delimiter", "semicolon")
    assert Guest.objects.get().first_name == "Zoë"
    run = ImportRun.objects.get()
    assert (run.encoding, run.delimiter) == ("cp1252", ";")


@pytest.mark.django_db
def test_stage_import_refuses_unknown_user_and_missing_file(tmp_path):
    path = tmp_path / "guests.csv"
    path.write_bytes(GOOD)
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        stage(path, "--schema", "guest", "--user", "ghost")
    with pytest.raises(CommandError, match="No such file"):
        stage(tmp_path / "missing.csv", "--schema", "guest")
    assert ImportRun.objects.count() == 0


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, databases=["default", "progress"])
def test_stage_import_process_exit_codes(tmp_path):
    good, bad, empty = tmp_path / "good.csv", tmp_path / "bad.csv", tmp_path / "empty.csv"
    good.write_bytes(GOOD)
    bad.write_bytes(MIXED)
    empty.write_bytes(b"")

    def run(path, *extra):
        return subprocess.run(
            [sys.executable, "manage.py", "stage_import", str(path), "--schema", "guest", *extra],
            cwd=ROOT,
            env=worker_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ok = run(good)
    assert ok.returncode == 0, ok.stderr
    assert "rows (100%)" in ok.stdout
    assert run(bad).returncode == 2
    assert run(bad, "--skip-bad-rows").returncode == 1
    refused = run(empty)
    assert refused.returncode == 2
    assert "The file is empty." in refused.stdout
