"""Importing guest modes (option and column) and guest migration files."""

import pytest

from records.models import DeliveryStatus, Guest, GuestMigration, GuestMode, ReviewStatus
from tests.records.test_importing import report_rows, run_file

pytestmark = pytest.mark.django_db

HEADER = b"identifiers.0.provider,identifiers.0.id,mode\n"


def test_mode_column_wins_over_the_import_option(tmp_path):
    data = (
        HEADER + b"email,a@example.com,insert\nemail,b@example.com,\nemail,c@example.com,upsert\n"
    )
    run = run_file(tmp_path, data, guest_mode=GuestMode.INSERT)
    assert run.status == "succeeded", run.message
    modes = dict(Guest.objects.values_list("identity_key", "mode"))
    assert modes == {
        "email:a@example.com": "create",
        "email:b@example.com": "create",
        "email:c@example.com": "upsert",
    }


def test_default_is_upsert_and_a_changed_mode_is_written(tmp_path):
    run_file(tmp_path, b"identifiers.0.provider,identifiers.0.id\nemail,a@example.com\n")
    assert Guest.objects.get().mode == GuestMode.UPSERT
    # Same value, other mode: an update, not "unchanged".
    run = run_file(tmp_path, HEADER + b"email,a@example.com,insert\n", name="again.csv")
    assert (run.rows_updated, run.rows_unchanged) == (1, 0)
    assert Guest.objects.get().mode == GuestMode.INSERT


def test_unknown_mode_refuses_the_row(tmp_path):
    run = run_file(tmp_path, HEADER + b"email,a@example.com,delete\n")
    assert run.status == "failed"
    assert [(r["column"], r["code"]) for r in report_rows(run)] == [("mode", "unsupported_mode")]
    assert not Guest.objects.exists()


def test_insert_of_a_guest_cdp_has_is_staged_invalid(tmp_path):
    run_file(
        tmp_path, b"identifiers.0.provider,identifiers.0.id,firstName\nemail,a@example.com,A\n"
    )
    Guest.objects.update(delivery_status=DeliveryStatus.DELIVERED, delivered_hash="x" * 32)
    run = run_file(
        tmp_path,
        b"identifiers.0.provider,identifiers.0.id,firstName,mode\nemail,a@example.com,A,insert\n",
        name="again.csv",
    )
    guest = Guest.objects.get()
    assert guest.review_status == ReviewStatus.INVALID
    assert [e["code"] for e in guest.validation_errors] == ["insert_already_at_cdp"]
    assert run.rows_invalid == 1


MIGRATION_HEADER = (
    b"migrateFrom.identifiers.0.provider,migrateFrom.identifiers.0.id,"
    b"migrateTo.identifiers.0.provider,migrateTo.identifiers.0.id\n"
)


def test_migration_file_is_staged_and_reimport_updates_by_the_two_identities(tmp_path):
    data = MIGRATION_HEADER + (
        b"email,old@example.com,email,new@example.com\n"
        b"email,a@example.com,email,a@example.com\n"  # the same guest twice: invalid
        b"FAX,1,email,b@example.com\n"  # unknown provider: invalid
    )
    run = run_file(tmp_path, data, name="migrations.csv", schema="migration")
    assert (run.rows_created, run.rows_invalid) == (3, 2), run.message
    valid = GuestMigration.objects.get(from_identity_key="email:old@example.com")
    assert (valid.to_identity_key, valid.mode, valid.review_status) == (
        "email:new@example.com", "guest", ReviewStatus.NEW
    )  # fmt: skip
    assert valid.migrate_to == [{"provider": "email", "id": "new@example.com"}]
    codes = {
        m.source_row: [e["code"] for e in m.validation_errors] for m in GuestMigration.objects.all()
    }
    # Rows are numbered as the file's lines (the header is line 1).
    assert codes == {2: [], 3: ["same_guest"], 4: ["unknown_provider", "missing_identifier"]}

    again = run_file(
        tmp_path, MIGRATION_HEADER + b"email,old@example.com,email,new@example.com\n",
        name="again.csv", schema="migration",
    )  # fmt: skip
    assert (again.rows_unchanged, again.rows_created) == (1, 0)
    assert GuestMigration.objects.count() == 3


def test_migration_file_repeating_a_migration_refuses_the_later_row(tmp_path):
    line = b"email,old@example.com,email,new@example.com\n"
    run = run_file(tmp_path, MIGRATION_HEADER + line + line, name="m.csv", schema="migration",
                   on_error="skip")  # fmt: skip
    assert [(r["row"], r["code"]) for r in report_rows(run)] == [("3", "repeated_migration")]
    assert GuestMigration.objects.count() == 1
