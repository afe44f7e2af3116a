"""Batch creation and build (run in-process, as the job would): selection and locks, files,
items, checksums, splitting, concurrency, cancel, and re-runs of a crashed build.

The build streams through its own database connection, so these tests commit
(`transactional_db`)."""

import gzip
import hashlib
import json
import os
import stat
import threading
import tracemalloc

import pytest
from django.core.files.storage import default_storage
from django.db import connection

from batches import services
from batches.models import Batch, BatchEvent, BatchFile, BatchItem
from cdpstage.errors import ApplicationError
from records.models import BatchMembership, DeliveryStatus, Guest, ReviewStatus
from records.selectors import in_live_batch, live_batch_of
from records.serializing import dump_value, value_hash
from records.services import lifecycle
from tests.batches.conftest import make_ready_guests, make_ready_tracking

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    """No Redis: these tests run the jobs themselves."""
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )


def build(batch: Batch) -> Batch:
    """Run the build job for the batch's current attempt."""
    batch.refresh_from_db()
    services.batch_build(batch_id=batch.pk, attempt=batch.attempt)
    batch.refresh_from_db()
    return batch


def file_lines(batch_file: BatchFile) -> list[bytes]:
    with default_storage.open(batch_file.file.name, "rb") as stored:
        return gzip.decompress(stored.read()).splitlines(keepends=True)


def test_batch_create_needs_permission_and_ready_records(user_factory, stager):
    nobody = user_factory("nobody")
    make_ready_guests(1)
    with pytest.raises(ApplicationError, match="permission"):
        services.batch_create(schema="guest", user=nobody)
    with pytest.raises(ApplicationError, match="no ready tracking"):
        services.batch_create(schema="tracking", user=stager)
    with pytest.raises(ApplicationError, match="guest or tracking"):
        services.batch_create(schema="product", user=stager)
    assert Batch.objects.count() == 0


def test_batch_create_enqueues_build_with_deterministic_job_id(stager, monkeypatch):
    pushed = []
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit",
        lambda queue, func, *args, **kw: pushed.append((func, args, kw["job_id"])),
    )
    make_ready_guests(2)
    batch = services.batch_create(schema="guest", user=stager, note="first load")
    assert batch.status == Batch.Status.DRAFT
    assert pushed == [("batches.jobs.batch_build", (batch.pk, 1), f"batch-{batch.pk}-build-a1")]
    assert BatchEvent.objects.filter(batch=batch, actor=stager).exists()


def test_batch_build_writes_envelopes_items_and_checksums(stager):
    guests = make_ready_guests(25)
    Guest.objects.filter(pk=guests[3].pk).update(mode="")  # falls back to the schema's mode
    held = make_ready_guests(1, prefix="held")[0]
    Guest.objects.filter(pk=held.pk).update(review_status=ReviewStatus.HELD)
    invalid = make_ready_guests(1, prefix="bad")[0]
    Guest.objects.filter(pk=invalid.pk).update(
        validation_errors=[{"field": "email", "code": "invalid_email", "message": "Bad."}]
    )
    batch = build(services.batch_create(schema="guest", user=stager))

    assert batch.status == Batch.Status.BUILT
    assert batch.records_total == batch.records_written == 25
    (batch_file,) = batch.files.all()
    lines = file_lines(batch_file)
    with default_storage.open(batch_file.file.name, "rb") as stored:
        blob = stored.read()
    # Personal data at rest: readable by the app's own user only.
    assert stat.S_IMODE(os.stat(default_storage.path(batch_file.file.name)).st_mode) == 0o600
    assert hashlib.md5(blob).hexdigest() == batch_file.md5
    assert len(blob) == batch_file.size
    assert batch_file.record_count == 25
    # The export reads the records in whatever order PostgreSQL scans them (no sort); each
    # line's item names the record written on that line.
    items = list(batch_file.items.order_by("line"))
    assert [i.line for i in items] == list(range(1, 26))
    assert sorted(i.record_id for i in items) == sorted(g.pk for g in guests)
    by_id = {g.pk: g for g in guests}
    expected = [
        f'{{"ref":"{g.ref}","schema":"guest","mode":"upsert","value":{g.cdp_value}}}\n'.encode()
        for g in (by_id[i.record_id] for i in items)
    ]
    assert lines == expected
    assert all(i.outcome == BatchItem.Outcome.PENDING for i in items)
    assert {i.value_hash for i in items} == {g.value_hash for g in guests}
    # Selected records are locked and marked; the others are untouched.
    assert BatchMembership.objects.filter(batch_id=batch.pk, kind="guest", live=True).count() == 25
    assert in_live_batch(Guest.objects.all()).count() == 25
    assert live_batch_of(model=Guest, record_id=held.pk) is None
    # The build does not write the records it takes.
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {DeliveryStatus.NOT_SENT}
    summary = batch.validation_summary
    assert summary["selected"] == 25
    assert summary["by_review_status"] == {"ready": 26, "held": 1}
    assert summary["ready_not_selected"]["with_errors"] == 1
    assert summary["top_problems"] == [{"code": "invalid_email", "count": 1}]
    assert batch_file.file.name.startswith(f"batches/batch-{batch.pk:06d}/a1/")


def test_batch_build_splits_files_at_the_limit(stager, settings):
    settings.CDP_MAX_FILE_BYTES = 3_000
    guests = make_ready_guests(300)
    batch = build(services.batch_create(schema="guest", user=stager))

    files = list(batch.files.order_by("sequence"))
    assert len(files) > 3
    assert batch.file_count == len(files)
    assert all(f.size <= 3_000 for f in files)
    assert [f.sequence for f in files] == list(range(1, len(files) + 1))
    refs = [line.split(b'"')[3].decode() for f in files for line in file_lines(f)]
    assert sorted(refs) == sorted(str(g.ref) for g in guests)
    for f in files:
        lines = file_lines(f)
        items = list(f.items.order_by("line"))
        assert [str(i.record_ref) for i in items] == [
            line.split(b'"')[3].decode() for line in lines
        ]
    assert batch.bytes_total == sum(f.size for f in files)


def test_batch_build_tracking_events(stager):
    make_ready_tracking(3)
    batch = build(services.batch_create(schema="tracking", user=stager))
    (batch_file,) = batch.files.all()
    assert all(b'"schema":"tracking","mode":"insert"' in line for line in file_lines(batch_file))


def test_batch_build_skips_records_delivered_unchanged(stager):
    sent, changed = make_ready_guests(2)
    Guest.objects.filter(pk=sent.pk).update(
        delivered_hash=sent.value_hash, delivery_status=DeliveryStatus.DELIVERED
    )
    Guest.objects.filter(pk=changed.pk).update(delivered_hash="0" * 32)
    batch = build(services.batch_create(schema="guest", user=stager))
    assert list(BatchItem.objects.values_list("record_id", flat=True)) == [changed.pk]
    assert batch.validation_summary["ready_not_selected"]["unchanged_since_delivery"] == 1


def test_batch_build_concurrent_batches_never_share_a_record(stager):
    make_ready_guests(400)
    first = services.batch_create(schema="guest", user=stager)
    second = services.batch_create(schema="guest", user=stager)
    errors = []

    def run(batch):
        try:
            build(batch)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(b,)) for b in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    first.refresh_from_db()
    second.refresh_from_db()
    ids = list(BatchItem.objects.values_list("record_id", flat=True))
    assert len(ids) == len(set(ids)) == 400
    statuses = {first.status, second.status}
    # One took everything (or they split it); an empty one fails with a reason.
    assert first.records_total + second.records_total == 400
    assert statuses <= {Batch.Status.BUILT, Batch.Status.FAILED}


def test_batch_build_stale_attempt_does_nothing_and_rerun_deletes_old_files(stager):
    make_ready_guests(10)
    batch = services.batch_create(schema="guest", user=stager)
    # Attempt 1 claims and "dies" after writing a file nobody points at.
    assert services.batch_claim(batch_id=batch.pk, attempt=1)
    orphan = default_storage.save(
        f"batches/batch-{batch.pk:06d}/a1/batch-{batch.pk:06d}-part-001.ndjson.gz",
        __import__("io").BytesIO(b"partial"),
    )
    # The reconciler gives the build to attempt 2.
    services.schedule_build(batch_id=batch.pk, expected_attempt=1)
    services.batch_build(batch_id=batch.pk, attempt=1)  # the stale copy: refused
    batch.refresh_from_db()
    assert batch.status == Batch.Status.DRAFT
    services.batch_build(batch_id=batch.pk, attempt=2)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT
    assert not default_storage.exists(orphan)
    assert BatchItem.objects.count() == 10
    # Running the finished attempt again changes nothing.
    services.batch_build(batch_id=batch.pk, attempt=2)
    assert BatchFile.objects.count() == 1
    assert BatchItem.objects.count() == 10


def test_batch_build_fails_readably_when_nothing_is_left(stager):
    make_ready_guests(3)
    batch = services.batch_create(schema="guest", user=stager)
    Guest.objects.update(review_status=ReviewStatus.HELD)
    batch = build(batch)
    assert batch.status == Batch.Status.FAILED
    assert "No ready records" in batch.events.last().message


def test_batch_build_two_guests_with_one_identity_cannot_exist():
    # A file never holds two guests with the same identity because the table cannot: the
    # build relies on this constraint (batches/services/building.py SCHEMAS).
    unique = [
        tuple(c.fields)
        for c in Guest._meta.constraints
        if getattr(c, "fields", None) and not getattr(c, "condition", None)
    ]
    assert Guest._meta.get_field("identity_key").unique or ("identity_key",) in unique


def test_batch_build_mode_is_written_as_a_json_string_whatever_it_holds(stager):
    guest = make_ready_guests(1)[0]
    Guest.objects.filter(pk=guest.pk).update(mode='up"sert')
    batch = build(services.batch_create(schema="guest", user=stager))
    (line,) = file_lines(BatchFile.objects.get(batch=batch))
    import json

    assert json.loads(line)["mode"] == 'up"sert'  # CDP will refuse it (402), readably


def test_batch_cancel_releases_records_and_only_before_sending(stager, approver, user_factory):
    make_ready_guests(4)
    batch = build(services.batch_create(schema="guest", user=stager))
    outsider = user_factory("outsider")
    with pytest.raises(ApplicationError, match="creator or an approver"):
        services.batch_cancel(batch=batch, user=outsider)
    services.batch_cancel(batch=batch, user=stager)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert not in_live_batch(Guest.objects.all()).exists()
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {DeliveryStatus.NOT_SENT}
    assert BatchFile.objects.get(batch=batch).status == BatchFile.Status.FAILED
    with pytest.raises(ApplicationError, match="can no longer be cancelled"):
        services.batch_cancel(batch=batch, user=stager)
    # Released records can go into the next batch.
    assert build(services.batch_create(schema="guest", user=stager)).records_total == 4


def test_batch_build_memory_is_flat_whatever_the_batch_size(stager, settings):
    settings.CDP_MAX_FILE_BYTES = 30_000

    def peak(count: int, prefix: str) -> int:
        make_ready_guests(count, prefix=prefix)
        batch = services.batch_create(schema="guest", user=stager)
        tracemalloc.start()
        try:
            build(batch)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak(1_500, "s")
    large = peak(6_000, "l")
    assert large < small * 1.3 + 256 * 1024


def _deliver(batch: Batch) -> None:
    """What a successful send does to the batch's records: delivered, then released."""
    lifecycle.records_record_outcomes(
        model=Guest,
        outcomes=(
            "SELECT record_id, 'delivered', value_hash FROM batches_batchitem i"
            " JOIN batches_batchfile f ON f.id = i.file_id WHERE f.batch_id = %s",
            [batch.pk],
        ),
    )
    lifecycle.records_release(model=Guest, batch_id=batch.pk)
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.SUCCEEDED)


def test_a_delta_batch_takes_exactly_the_changed_records_and_a_full_send_all(stager):
    guests = make_ready_guests(1000)
    _deliver(build(services.batch_create(schema="guest", user=stager)))
    changed = guests[::100]  # 10 of them edited since
    for guest in changed:
        value = {**json.loads(guest.cdp_value), "city": "Cork"}
        text = dump_value(value)
        Guest.objects.filter(pk=guest.pk).update(cdp_value=text, value_hash=value_hash(text))

    delta = build(services.batch_create(schema="guest", user=stager))
    taken = set(BatchItem.objects.filter(file__batch=delta).values_list("record_id", flat=True))
    assert taken == {g.pk for g in changed}
    assert delta.validation_summary["ready_not_selected"]["unchanged_since_delivery"] == 990
    assert delta.validation_summary["unchanged_included"] == 0
    _deliver(delta)

    with pytest.raises(ApplicationError, match="delivered unchanged"):
        services.batch_create(schema="guest", user=stager)
    full = build(services.batch_create(schema="guest", user=stager, include_unchanged=True))
    assert full.include_unchanged
    assert full.records_total == 1000
    assert full.validation_summary["unchanged_included"] == 1000
    assert full.validation_summary["ready_not_selected"]["unchanged_since_delivery"] == 0
