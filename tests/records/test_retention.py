"""Retention: delivered personal data cleared after the period; refs, hashes, outcomes kept."""

from datetime import timedelta
from io import StringIO

import django_rq
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from batches.models import Batch, BatchFile
from records.jobs import RETENTION_KEY, purge_expired_records
from records.models import (
    BatchMembership,
    DeliveryStatus,
    Extension,
    Guest,
    Identifier,
    ImportRun,
    ReviewStatus,
    Subscription,
)
from records.services.retention import PURGED_COLUMNS, records_purge, retention_cutoff
from tests.records.factories import GuestFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db

DAYS = 30


def _delivered(record, *, days_ago: int):
    """Mark a record delivered `days_ago` days ago with its current value (as CDP confirmed)."""
    type(record).objects.filter(pk=record.pk).update(
        review_status=ReviewStatus.READY,
        delivery_status=DeliveryStatus.DELIVERED,
        delivered_hash=record.value_hash,
        delivered_at=timezone.now() - timedelta(days=days_ago),
    )
    record.refresh_from_db()
    return record


def _rich_guest(**kw):
    return GuestFactory(
        first_name="Anna",
        last_name="McDonald",
        city="Dublin",
        street=["1 Main St"],
        phone_numbers=["+353 1 234 5678"],
        identifiers=[("email", kw.get("email", "anna@example.com")), ("CRM_ID", "C-1")],
        subscriptions=[{"name": "news", "status": "SUBSCRIBED"}],
        extensions={"ext": {"tier": "gold"}},
        **kw,
    )


def test_purge_clears_personal_data_of_old_deliveries_and_keeps_the_audit_facts():
    old = _delivered(_rich_guest(email="anna@example.com"), days_ago=DAYS + 1)
    kept = {f: getattr(old, f) for f in ("ref", "value_hash", "delivered_hash", "delivered_at")}

    result = records_purge(cutoff=retention_cutoff(DAYS))

    assert result.records["guests"] == 1
    old.refresh_from_db()
    for column, empty in PURGED_COLUMNS[Guest].items():
        assert getattr(old, column) == empty, column
    assert old.purged_at is not None
    assert {f: getattr(old, f) for f in kept} == kept
    assert old.delivery_status == DeliveryStatus.DELIVERED
    for child in (Identifier, Subscription, Extension):
        assert not child.objects.filter(guest=old).exists()


def test_purge_leaves_recent_changed_and_undelivered_records_alone():
    recent = _delivered(GuestFactory(), days_ago=DAYS - 1)
    changed = _delivered(GuestFactory(), days_ago=DAYS + 5)
    # Edited after delivery: the new value still has to go to CDP.
    Guest.objects.filter(pk=changed.pk).update(value_hash="0" * 32)
    never_sent = GuestFactory()
    Guest.objects.filter(pk=never_sent.pk).update(updated_at=timezone.now() - timedelta(days=99))

    result = records_purge(cutoff=retention_cutoff(DAYS))

    assert result.records["guests"] == 0
    for guest in (recent, changed, never_sent):
        guest.refresh_from_db()
        assert guest.purged_at is None
        assert guest.email
        assert Identifier.objects.filter(guest=guest).exists()


def test_purge_skips_records_held_by_a_live_batch():
    locked = _delivered(GuestFactory(), days_ago=DAYS + 1)
    BatchMembership.objects.create(batch_id=12345, kind="guest", record_id=locked.pk)
    assert records_purge(cutoff=retention_cutoff(DAYS)).records["guests"] == 0
    locked.refresh_from_db()
    assert locked.email
    assert locked.purged_at is None


def test_purge_of_tracking_events():
    event = _delivered(TrackingEventFactory(), days_ago=DAYS + 1)
    assert event.cdp_value
    result = records_purge(cutoff=retention_cutoff(DAYS))
    assert result.records["tracking events"] == 1
    event.refresh_from_db()
    assert (event.guest_identity_key, event.identifiers, event.cdp_value) == ("", [], "")
    assert event.purged_at is not None
    assert event.value_hash == event.delivered_hash


def test_dry_run_counts_and_changes_nothing():
    guest = _delivered(GuestFactory(), days_ago=DAYS + 1)
    result = records_purge(cutoff=retention_cutoff(DAYS), dry_run=True)
    assert result.records["guests"] == 1
    assert result.summary().startswith("Would purge the personal data of 1 guests")
    guest.refresh_from_db()
    assert guest.purged_at is None
    assert guest.email


def test_purge_is_idempotent():
    _delivered(GuestFactory(), days_ago=DAYS + 1)
    assert records_purge(cutoff=retention_cutoff(DAYS)).records["guests"] == 1
    assert records_purge(cutoff=retention_cutoff(DAYS)).records["guests"] == 0


def test_import_files_of_old_runs_are_deleted_and_the_run_kept(user_factory):
    user = user_factory("retention-stager")
    finished = timezone.now() - timedelta(days=DAYS + 1)
    run = ImportRun.objects.create(
        schema="guest",
        format="csv",
        original_name="crm.csv",
        created_by=user,
        status=ImportRun.Status.SUCCEEDED,
        finished_at=finished,
        rows_created=1,
    )
    run.source_file.save("crm.csv", ContentFile(b"email\nanna@example.com\n"), save=True)
    run.error_report.save("crm-errors.csv", ContentFile(b"row,code\n"), save=True)
    recent = ImportRun.objects.create(
        schema="guest",
        format="csv",
        original_name="new.csv",
        created_by=user,
        status=ImportRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
    )
    recent.source_file.save("new.csv", ContentFile(b"email\nbert@example.com\n"), save=True)

    result = records_purge(cutoff=retention_cutoff(DAYS))

    assert result.import_files == 1
    run.refresh_from_db()
    assert run.files_purged_at is not None
    assert not default_storage.exists(run.source_file.name)
    assert not default_storage.exists(run.error_report.name)
    assert (run.original_name, run.rows_created) == ("crm.csv", 1)
    assert default_storage.exists(recent.source_file.name)


def test_command_purges_and_reports_counts():
    guest = _delivered(GuestFactory(), days_ago=3)
    call_command("records_purge", "--delivered-before", "7", "--dry-run")
    guest.refresh_from_db()
    assert guest.purged_at is None

    out = StringIO()
    call_command("records_purge", "--delivered-before", "2", stdout=out)
    assert "Purged the personal data of 1 guests, 0 tracking events" in out.getvalue()
    guest.refresh_from_db()
    assert guest.purged_at is not None


def test_command_refuses_a_negative_period():
    with pytest.raises(CommandError, match="cannot be negative"):
        call_command("records_purge", "--delivered-before", "-1")


def test_scheduled_purge_runs_once_per_interval_across_workers(settings):
    settings.RETENTION_DELIVERED_DAYS = DAYS
    redis = django_rq.get_connection("imports")
    redis.delete(RETENTION_KEY)
    first = _delivered(GuestFactory(), days_ago=DAYS + 1)
    try:
        purge_expired_records()
        first.refresh_from_db()
        assert first.purged_at is not None
        assert 0 < redis.ttl(RETENTION_KEY) <= settings.RETENTION_RUN_INTERVAL
        # Another worker's maintenance pass within the interval: nothing runs.
        second = _delivered(GuestFactory(), days_ago=DAYS + 1)
        purge_expired_records()
        second.refresh_from_db()
        assert second.purged_at is None
    finally:
        redis.delete(RETENTION_KEY)


def test_scheduled_purge_is_off_by_default(settings):
    settings.RETENTION_DELIVERED_DAYS = 0
    guest = _delivered(GuestFactory(), days_ago=999)
    purge_expired_records()
    guest.refresh_from_db()
    assert guest.purged_at is None


def test_admin_shows_a_purged_guest_as_such_and_read_only(client, user_factory):
    guest = _delivered(GuestFactory(), days_ago=DAYS + 1)
    records_purge(cutoff=retention_cutoff(DAYS))
    user = user_factory(
        "retention-reviewer",
        perms=("records.view_guest", "records.change_guest", "records.view_pii"),
        is_staff=True,
    )
    client.force_login(user)
    page = client.get(reverse("admin:records_guest_change", args=[guest.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert "under the retention policy" in body
    assert 'name="_save"' not in body
    listing = client.get(reverse("admin:records_guest_changelist") + "?purged=yes")
    assert listing.context["cl"].result_count == 1


def test_batch_files_of_old_batches_are_deleted_from_storage_and_their_rows_kept(user_factory):

    user = user_factory("retention-batcher")
    old = Batch.objects.create(
        schema="guest",
        status=Batch.Status.SUCCEEDED,
        created_by=user,
        finished_at=timezone.now() - timedelta(days=DAYS + 1),
    )
    name = default_storage.save("batches/old.ndjson.gz", ContentFile(b"personal lines"))
    log = default_storage.save("batches/old.log.gz", ContentFile(b"log lines"))
    old_file = BatchFile.objects.create(
        batch=old, sequence=1, file=name, md5="a" * 32, size=14, record_count=1, error_log=log
    )
    live = Batch.objects.create(schema="guest", status=Batch.Status.UPLOADING, created_by=user)
    live_name = default_storage.save("batches/live.ndjson.gz", ContentFile(b"lines"))
    BatchFile.objects.create(
        batch=live, sequence=1, file=live_name, md5="b" * 32, size=5, record_count=1
    )

    assert records_purge(cutoff=retention_cutoff(DAYS), dry_run=True).batch_files == 2
    assert default_storage.exists(name)
    assert records_purge(cutoff=retention_cutoff(DAYS)).batch_files == 2

    assert not default_storage.exists(name)
    assert not default_storage.exists(log)
    assert default_storage.exists(live_name)
    old_file.refresh_from_db()
    # The audit row is untouched: name, checksum, size and counts stay.
    assert (old_file.file.name, old_file.md5, old_file.record_count) == (name, "a" * 32, 1)
    assert records_purge(cutoff=retention_cutoff(DAYS)).batch_files == 0
