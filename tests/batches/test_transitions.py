"""The transition services: maps enforced, conditional UPDATE races (exactly one winner), an
event per change; the audit triggers refuse edits and deletes whoever asks."""

import threading

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from batches.models import (
    BATCH_TRANSITIONS,
    BATCHFILE_TRANSITIONS,
    Batch,
    BatchEvent,
    BatchFile,
    BatchItem,
)
from batches.services import batch_transition, batchfile_transition

pytestmark = pytest.mark.django_db


@pytest.fixture
def batch(stager):
    return Batch.objects.create(schema="guest", created_by=stager)


@pytest.fixture
def batch_file(batch):
    batch_file = BatchFile.objects.create(
        batch=batch,
        sequence=1,
        file="batches/x.ndjson.gz",
        md5="0" * 32,
        size=10,
        record_count=1,
    )
    BatchItem.objects.create(
        file=batch_file,
        line=1,
        record_ref="00000000-0000-4000-8000-000000000001",
        record_id=1,
        value_hash="1" * 32,
    )
    return batch_file


def test_transition_maps_name_only_known_statuses():
    assert set(BATCH_TRANSITIONS) == set(Batch.Status.values)
    assert all(targets <= set(Batch.Status.values) for targets in BATCH_TRANSITIONS.values())
    assert set(BATCHFILE_TRANSITIONS) == set(BatchFile.Status.values)
    # Cancelling is possible only before sending.
    assert {s for s, t in BATCH_TRANSITIONS.items() if Batch.Status.CANCELLED in t} == {
        "draft",
        "building",
        "built",
        "approved",
    }


def test_batch_transition_follows_the_map_and_writes_an_event(batch, stager):
    assert not batch_transition(batch_id=batch.pk, target=Batch.Status.APPROVED)
    assert batch_transition(batch_id=batch.pk, target=Batch.Status.BUILDING, actor=stager)
    event = BatchEvent.objects.get(batch=batch)
    assert (event.from_status, event.to_status, event.actor) == ("draft", "building", stager)


def test_batch_transition_attempt_mismatch_loses(batch):
    assert not batch_transition(batch_id=batch.pk, target=Batch.Status.BUILDING, attempt=5)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.DRAFT
    assert not BatchEvent.objects.exists()


def _race(batch, barrier, results, target):
    try:
        barrier.wait()
        won = batch_transition(batch_id=batch.pk, target=target, sources=("draft",))
        results.append((target, won))
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rounds", [5])
def test_batch_transition_race_has_exactly_one_winner(stager, rounds):
    for _ in range(rounds):
        batch = Batch.objects.create(schema="guest", created_by=stager)
        barrier = threading.Barrier(4)
        results = []

        # Everyone leaves `draft`, each for somewhere else: one may.
        targets = [
            Batch.Status.BUILDING,
            Batch.Status.CANCELLED,
            Batch.Status.FAILED,
            Batch.Status.BUILDING,
        ]
        threads = [
            threading.Thread(target=_race, args=(batch, barrier, results, t)) for t in targets
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [target for target, won in results if won]
        assert len(winners) == 1
        assert Batch.objects.get(pk=batch.pk).status == winners[0]
        assert BatchEvent.objects.filter(batch=batch).count() == 1


@pytest.mark.django_db(transaction=True)
def test_batchfile_transition_race_has_exactly_one_winner(batch_file):
    barrier = threading.Barrier(3)
    results = []

    def race(target):
        try:
            barrier.wait()
            results.append(
                batchfile_transition(file_id=batch_file.pk, target=target, sources=("pending",))
            )
        finally:
            connection.close()

    threads = [
        threading.Thread(target=race, args=(t,))
        for t in (BatchFile.Status.ALLOCATED, BatchFile.Status.FAILED, BatchFile.Status.ALLOCATED)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, True]
    assert BatchEvent.objects.filter(file=batch_file).count() == 1


def test_audit_events_cannot_be_changed_or_deleted(batch):
    batch_transition(batch_id=batch.pk, target=Batch.Status.BUILDING)
    event = BatchEvent.objects.get()
    # The app role may not even try (cdpstage.dbroles); the trigger stops the owner's mistakes.
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        BatchEvent.objects.filter(pk=event.pk).update(message="rewritten")
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        BatchEvent.objects.filter(pk=event.pk).delete()
    assert BatchEvent.objects.get(pk=event.pk).message == event.message


def test_batches_files_items_cannot_be_deleted(batch_file):
    for model in (BatchItem, BatchFile, Batch):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
    assert BatchItem.objects.count() == 1


def test_what_was_built_and_outcomes_are_frozen(batch_file):
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchFile.objects.filter(pk=batch_file.pk).update(md5="f" * 32)
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchItem.objects.filter(file=batch_file).update(value_hash="2" * 32)
    # The flow may write an outcome once, once the batch was sent...
    Batch.objects.filter(pk=batch_file.batch_id).update(status="uploading", sent_at=timezone.now())
    BatchItem.objects.filter(file=batch_file).update(outcome="rejected", code="400")
    # ...but never rewrite it.
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchItem.objects.filter(file=batch_file).update(outcome="delivered")
    # A final status stays final.
    BatchFile.objects.filter(pk=batch_file.pk).update(status="failed")
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchFile.objects.filter(pk=batch_file.pk).update(status="pending")
    with pytest.raises(IntegrityError), transaction.atomic():
        Batch.objects.filter(pk=batch_file.batch_id).update(schema="tracking")
