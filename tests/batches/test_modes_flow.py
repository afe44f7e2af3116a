"""Guest modes and guest migrations over the real wire: a real `rqworker batches
--with-scheduler` and the HTTPS sandbox. What CDP received and did is read from the sandbox's
inspection endpoints (the batch's lines, the profiles' history, the applied migrations)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import F

from batches import services
from batches.models import Batch, BatchFile, BatchItem
from cdpstage.dbroles import as_owner
from records.models import DeliveryStatus, Guest, GuestMigration, GuestMode, ReviewStatus
from records.services.review import records_mark_ready
from records.services.values import guests_refresh_values
from tests.batches.conftest import make_ready_guests, wait_for
from tests.cdpsandbox.conftest import CdpApi

# The import writes its progress through a connection of its own ("progress").
pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "progress"]),
]

FINAL = {"succeeded", "partially_failed", "failed"}


def _status(batch: Batch) -> str:
    return Batch.objects.values_list("status", flat=True).get(pk=batch.pk)


def _build(schema: str, stager, approver, **options) -> Batch:
    batch = services.batch_create(schema=schema, user=stager, **options)
    wait_for(lambda: _status(batch) in ("built", "failed"), timeout=60, what="the build")
    batch.refresh_from_db()
    assert batch.status == "built", batch.message
    services.batch_approve(batch=batch, user=approver)
    return batch


def _send(batch: Batch, approver) -> Batch:
    services.batch_send(batch=batch, user=approver)
    wait_for(lambda: _status(batch) in FINAL, timeout=90, what="the batch to end")
    batch.refresh_from_db()
    return batch


def _lines(sandbox, batch: Batch) -> list[dict]:
    lines = []
    for batch_file in BatchFile.objects.filter(batch=batch).order_by("sequence"):
        lines += sandbox.control.batch(str(batch_file.batch_ref))["records"]
    return lines


def _profiles_by_email(sandbox) -> dict[str, dict]:
    return {profile["fields"].get("email"): profile for profile in sandbox.control.profiles()}


def test_insert_mode_guest_is_sent_as_create_once_and_never_inserted_again(
    sandbox, batches_worker, stager, approver
):
    upserted, inserted, clash = make_ready_guests(3)
    Guest.objects.filter(pk__in=[inserted.pk, clash.pk]).update(mode=GuestMode.INSERT)
    # CDP already has a guest with the clashing identity (another system put it there).
    existing = {
        "ref": str(uuid.uuid4()),
        "schema": "guest",
        "mode": "upsert",
        "value": json.loads(clash.cdp_value),
    }
    batches_worker()
    # The other system's upsert goes first, straight to the sandbox's API.
    assert CdpApi(sandbox).run([existing])["status"]["code"] == "success"

    batch = _send(_build("guest", stager, approver), approver)

    lines = {line["ref"]: line for line in _lines(sandbox, batch)}
    assert {ref: line["mode"] for ref, line in lines.items()} == {
        str(upserted.ref): "upsert",
        str(inserted.ref): "create",
        str(clash.ref): "create",
    }
    assert all(line["schema"] == "guest" for line in lines.values())
    profiles = _profiles_by_email(sandbox)
    assert [(h["ref"], h["applied"]) for h in profiles[inserted.email]["history"]] == [
        (str(inserted.ref), "create")
    ]
    assert [(h["ref"], h["applied"]) for h in profiles[upserted.email]["history"]] == [
        (str(upserted.ref), "upsert")
    ]
    # The clash was refused by CDP (409) and changed nothing there.
    assert [h["ref"] for h in profiles[clash.email]["history"]] == [existing["ref"]]
    assert batch.status == Batch.Status.PARTIALLY_FAILED
    for guest in (upserted, inserted, clash):
        guest.refresh_from_db()
    assert inserted.delivery_status == DeliveryStatus.DELIVERED
    assert clash.delivery_status == DeliveryStatus.REJECTED
    assert BatchItem.objects.get(record_ref=clash.ref).code == "409"

    # A full send takes the ready records CDP has unchanged too, but never an insert of a
    # guest CDP has: the delivered insert stays out (the refused one was never created).
    again = _send(_build("guest", stager, approver, include_unchanged=True), approver)
    assert sorted(line["ref"] for line in _lines(sandbox, again)) == sorted(
        [str(upserted.ref), str(clash.ref)]
    )
    # The steward follows CDP's answer (409: send it as an upsert): it goes, and CDP updates
    # the guest it had.
    Guest.objects.filter(pk=clash.pk).update(mode=GuestMode.UPSERT)
    fixed = _send(_build("guest", stager, approver), approver)
    assert [(line["ref"], line["mode"]) for line in _lines(sandbox, fixed)] == [
        (str(clash.ref), "upsert")
    ]
    profiles = _profiles_by_email(sandbox)
    assert [(h["ref"], h["applied"]) for h in profiles[clash.email]["history"]] == [
        (existing["ref"], "upsert"),
        (str(clash.ref), "upsert"),
    ]

    # Re-validated (an edit), the delivered insert becomes invalid and says why.
    guests_refresh_values(guest_ids=[inserted.pk])
    inserted.refresh_from_db()
    assert inserted.review_status == ReviewStatus.INVALID
    assert "insert_already_at_cdp" in [e["code"] for e in inserted.validation_errors]


MIGRATIONS = [
    ("old0@example.com", "new0@example.com"),
    ("old1@example.com", "new1@example.com"),
    ("old2@example.com", "new2@example.com"),
]


def _stage_migrations(tmp_path, reviewer) -> list[GuestMigration]:
    """Import a migration file the documented ways (a batch line, a bare value, one with an
    expiry date on an identifier) and mark it ready."""
    lines = []
    for n, (old, new) in enumerate(MIGRATIONS):
        source = {"provider": "email", "id": old}
        if n == 2:
            source["expiryDate"] = "2030-01-01T00:00:00.000Z"
        value = {
            "migrateFrom": {"identifiers": [source]},
            "migrateTo": {"identifiers": [{"provider": "email", "id": new}]},
        }
        if n == 0:
            value = {"schema": "migration", "mode": "guest", "value": value}
        lines.append(json.dumps(value))
    path = tmp_path / "migrations.ndjson"
    path.write_text("\n".join(lines) + "\n")
    call_command("stage_import", str(path), "--schema", "migration", stdout=StringIO())
    records_mark_ready(model=GuestMigration, queryset=GuestMigration.objects.all(), user=reviewer)
    staged = list(GuestMigration.objects.order_by("source_row"))
    assert [m.review_status for m in staged] == [ReviewStatus.READY] * 3, [
        m.validation_errors for m in staged
    ]
    return staged


def _deliver_guests(sandbox, stager, approver) -> None:
    guests = make_ready_guests(3, prefix="old") + make_ready_guests(3, prefix="new")
    batch = _send(_build("guest", stager, approver), approver)
    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    assert len(sandbox.control.profiles()) == len(guests)


def test_migration_batch_arrives_and_cdp_moves_each_guest(
    sandbox, batches_worker, stager, approver, user_factory, tmp_path
):
    reviewer = user_factory("reviewer", perms=("records.review_guestmigration",))
    batches_worker()
    _deliver_guests(sandbox, stager, approver)
    staged = _stage_migrations(tmp_path, reviewer)

    batch = _send(_build("migration", stager, approver), approver)

    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    lines = _lines(sandbox, batch)
    assert sorted((line["ref"], line["schema"], line["mode"]) for line in lines) == sorted(
        (str(m.ref), "migration", "guest") for m in staged
    )
    by_ref = {line["ref"]: line for line in lines}
    assert by_ref[str(staged[2].ref)]["value"] == {
        "migrateFrom": {
            "identifiers": [
                {
                    "provider": "email",
                    "id": "old2@example.com",
                    "expiryDate": "2030-01-01T00:00:00.000Z",
                }
            ]
        },
        "migrateTo": {"identifiers": [{"provider": "email", "id": "new2@example.com"}]},
    }
    profiles = _profiles_by_email(sandbox)
    applied = {m["ref"]: (m["from"], m["to"]) for m in sandbox.control.migrations()}
    assert applied == {
        str(m.ref): (profiles[old]["id"], profiles[new]["id"])
        for m, (old, new) in zip(staged, MIGRATIONS, strict=True)
    }
    for migration in staged:
        migration.refresh_from_db()
        assert migration.delivery_status == DeliveryStatus.DELIVERED


def test_daily_limit_splits_a_migration_batch_across_two_days(
    sandbox, batches_worker, stager, approver, user_factory, tmp_path, settings
):
    settings.CDP_MIGRATION_DAILY_LIMIT = 2
    reviewer = user_factory("reviewer", perms=("records.review_guestmigration",))
    batches_worker(CDP_MIGRATION_DAILY_LIMIT="2")
    _deliver_guests(sandbox, stager, approver)
    _stage_migrations(tmp_path, reviewer)

    batch = _build("migration", stager, approver)
    files = list(BatchFile.objects.filter(batch=batch).order_by("sequence"))
    # A file holds at most one day's allowance.
    assert [f.record_count for f in files] == [2, 1]
    services.batch_send(batch=batch, user=approver)
    wait_for(
        lambda: BatchFile.objects.get(pk=files[0].pk).status == "success",
        timeout=60,
        what="the first day's file",
    )
    # Today's allowance is spent: the second file waits, and says so, however long.
    # (Something that must not happen has no condition to await: the worker's maintenance
    # pass, which dispatches, runs every second; three of them go by.)
    time.sleep(3)
    out = StringIO()
    call_command("batch_status", str(batch.pk), stdout=out)
    assert "waiting for tomorrow's allowance, 0 left today" in out.getvalue()
    second = BatchFile.objects.get(pk=files[1].pk)
    assert (second.status, second.dispatched_at) == ("pending", None)
    assert _status(batch) not in FINAL
    assert len(sandbox.control.migrations()) == 2

    # The day turns: what was uploaded is now yesterday's (the count is the database's, so
    # moving the first file's upload back a day is what midnight does to it). A finished file
    # is guarded against every change (batches migration 0011): only the owner role can lift
    # the guard, here for this one statement.
    with as_owner(), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("ALTER TABLE batches_batchfile DISABLE TRIGGER USER")
        BatchFile.objects.filter(pk=files[0].pk).update(
            uploaded_at=F("uploaded_at") - timedelta(days=1),
            dispatched_at=F("dispatched_at") - timedelta(days=1),
        )
        cursor.execute("ALTER TABLE batches_batchfile ENABLE TRIGGER USER")
    wait_for(lambda: _status(batch) in FINAL, timeout=60, what="the second day's file")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    assert len(sandbox.control.migrations()) == 3
    assert sorted(line["ref"] for line in _lines(sandbox, batch)) == sorted(
        str(m.ref) for m in GuestMigration.objects.all()
    )
