"""The demo: a reproducible synthetic file, and `demo_setup` (users, groups, the import)."""

import csv
import io
import re
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.management import call_command

from records.demo import (
    DEMO_COLUMNS,
    DEMO_GUESTS,
    TOPUP_MOVED,
    TOPUP_NEW,
    demo_csv_text,
    demo_invalid_count,
    demo_topup_csv_text,
    demo_topup_invalid_count,
)
from records.management.commands.demo_setup import (
    DEMO_USERS,
    demo_file_path,
    demo_topup_path,
)
from records.models import Guest, ImportRun, ReviewStatus
from records.services.imports import import_run_create, import_run_execute


def test_demo_csv_is_deterministic_and_committed():
    text = demo_csv_text()
    assert text == demo_csv_text()
    committed = demo_file_path().read_text(encoding="utf-8")
    assert committed == text, "regenerate demo/guests-demo.csv with records.demo.write_demo_csv"


def test_demo_rows_are_plausible_and_unique():
    rows = list(csv.DictReader(io.StringIO(demo_csv_text())))
    assert len(rows) == DEMO_GUESTS
    assert tuple(rows[0]) == DEMO_COLUMNS
    emails = [r["email"] for r in rows]
    assert len(set(emails)) == len(emails)
    assert all(r["identifiers.0.provider"] == "email" for r in rows)
    assert sum(r["identifiers.1.provider"] == "CRM_ID" for r in rows) > DEMO_GUESTS // 5
    assert sum(bool(r["subscriptions.0.name"]) for r in rows) > DEMO_GUESTS // 2
    assert sum(bool(r["ext.loyaltyTier"]) for r in rows) > DEMO_GUESTS // 2
    # Synthetic only: every address is at a reserved example domain.
    domain = re.compile(r"@(example\.(com|org|net)|mail\.example)$")
    valid = [e for e in emails if "@" in e]
    assert all(domain.search(e) for e in valid)


def _setup(*args: str) -> str:
    out = StringIO()
    call_command("demo_setup", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _passwords(output: str) -> dict[str, str]:
    """The passwords printed in the users table (not the ones shown as unchanged)."""
    found = re.findall(r"^  (\w+)\s+(\S+)\s+\w+\s+\S+@example\.com$", output, flags=re.MULTILINE)
    return {name: password for name, password in found if password != "(unchanged)"}


@pytest.mark.django_db
def test_demo_setup_users_idempotent_and_reset(settings):
    # Real password hashing costs ~0.3 s a call; this test hashes ~30 times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    first = _setup("--no-import")
    assert "DEMO ONLY" in first
    passwords = _passwords(first)
    assert set(passwords) == {name for name, _ in DEMO_USERS}
    user_model = get_user_model()
    for name, group in DEMO_USERS:
        user = user_model.objects.get(username=name)
        assert user.check_password(passwords[name])
        assert user.is_staff
        if group is None:
            assert user.is_superuser
        else:
            assert list(user.groups.values_list("name", flat=True)) == [group]
            assert not user.is_superuser
    reviewer = user_model.objects.get(username="reviewer")
    assert reviewer.has_perm("records.change_guest")
    assert not reviewer.has_perm("records.view_pii")

    for name, _ in DEMO_USERS:
        assert user_model.objects.get(username=name).email == f"{name}@example.com"
    # The table is the last thing printed, so it is what the reader sees.
    assert first.rstrip().splitlines()[-1].startswith("  auditor ")

    again = _setup("--no-import")
    assert _passwords(again) == {}
    assert again.count("(unchanged)  ") == len(DEMO_USERS)
    assert "--reset-passwords" in again
    assert user_model.objects.get(username="stager").check_password(passwords["stager"])

    reset = _setup("--no-import", "--reset-passwords")
    new = _passwords(reset)
    assert set(new) == set(passwords)
    assert user_model.objects.get(username="stager").check_password(new["stager"])
    assert new["stager"] != passwords["stager"]


@pytest.mark.django_db(transaction=True, databases=["default", "progress"])
def test_demo_setup_imports_the_demo_file_once():
    output = _setup()
    run = ImportRun.objects.get()
    assert run.status in {ImportRun.Status.SUCCEEDED, ImportRun.Status.PARTIAL}, run.message
    assert Guest.objects.count() == DEMO_GUESTS
    invalid = Guest.objects.filter(review_status=ReviewStatus.INVALID).count()
    assert invalid == demo_invalid_count()
    assert Guest.objects.filter(review_status=ReviewStatus.NEW).count() == DEMO_GUESTS - invalid
    assert f"{DEMO_GUESTS} guests staged, {invalid} of them invalid" in output
    codes = {
        error["code"]
        for errors in Guest.objects.exclude(validation_errors=[]).values_list(
            "validation_errors", flat=True
        )
        for error in errors
    }
    assert len(codes) >= 4, codes

    second = _setup()
    assert "the demo file was not imported again" in second
    assert ImportRun.objects.count() == 1
    assert Guest.objects.count() == DEMO_GUESTS


def test_demo_file_path_is_in_the_repository():
    assert demo_file_path() == settings.BASE_DIR / "demo" / "guests-demo.csv"
    assert demo_topup_path().read_text(encoding="utf-8") == demo_topup_csv_text(), (
        "regenerate demo/guests-topup.csv with records.demo.write_demo_topup_csv"
    )


@pytest.mark.django_db(transaction=True, databases=["default", "progress"])
def test_demo_topup_after_the_demo_file_updates_moved_guests_and_adds_new_ones():
    """Walkthrough step 1 (README): what the run page shows after `make run` loaded the demo."""
    _setup()
    admin = get_user_model().objects.get(username="admin")
    with demo_topup_path().open("rb") as handle:
        run = import_run_create(
            uploaded_file=File(handle, name="guests-topup.csv"),
            schema="guest",
            on_error=ImportRun.OnError.SKIP,
            user=admin,
            enqueue=False,
        )
    run = import_run_execute(import_run_id=run.pk, attempt=run.attempt)
    assert (run.rows_created, run.rows_updated, run.rows_unchanged) == (TOPUP_NEW, TOPUP_MOVED, 0)
    assert run.rows_invalid == demo_topup_invalid_count() == 3
    assert Guest.objects.count() == DEMO_GUESTS + TOPUP_NEW
    assert Guest.objects.filter(import_run=run).count() == TOPUP_NEW + TOPUP_MOVED
