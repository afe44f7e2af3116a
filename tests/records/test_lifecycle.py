"""records.services.lifecycle: batch memberships and the records' delivery columns."""

import pytest
from django.db import IntegrityError, transaction

from records.models import BatchMembership, DeliveryStatus, Guest, ReviewStatus
from records.selectors import in_live_batch, live_batch_of, live_batches
from records.services import lifecycle
from tests.batches.conftest import make_ready_guests

pytestmark = pytest.mark.django_db


def test_records_lock_takes_each_eligible_record_for_one_live_batch_only():
    guests = make_ready_guests(3)
    Guest.objects.filter(pk=guests[2].pk).update(review_status=ReviewStatus.HELD)
    assert lifecycle.records_lock(model=Guest, batch_id=1) == 2
    # A second batch finds nothing left: the first one holds them.
    assert lifecycle.records_lock(model=Guest, batch_id=2) == 0
    assert live_batches(model=Guest, record_ids=[g.pk for g in guests]) == {
        guests[0].pk: 1,
        guests[1].pk: 1,
    }
    # The records themselves were not written.
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {DeliveryStatus.NOT_SENT}


def test_a_record_cannot_be_live_in_two_batches():
    (guest,) = make_ready_guests(1)
    BatchMembership.objects.create(batch_id=1, kind="guest", record_id=guest.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        BatchMembership.objects.create(batch_id=2, kind="guest", record_id=guest.pk)
    # Once the first batch ended, another may take it.
    assert lifecycle.records_release(model=Guest, batch_id=1) == 1
    BatchMembership.objects.create(batch_id=2, kind="guest", record_id=guest.pk)
    assert live_batch_of(model=Guest, record_id=guest.pk) == 2


def test_records_release_frees_only_that_batch():
    first, second = make_ready_guests(2)
    BatchMembership.objects.create(batch_id=1, kind="guest", record_id=first.pk)
    BatchMembership.objects.create(batch_id=2, kind="guest", record_id=second.pk)
    assert lifecycle.records_release(model=Guest, batch_id=1) == 1
    assert list(in_live_batch(Guest.objects.all()).values_list("pk", flat=True)) == [second.pk]
    # The history stays.
    assert BatchMembership.objects.filter(batch_id=1, live=False).count() == 1


def test_records_record_outcomes_delivers_and_rejects():
    delivered, rejected = make_ready_guests(2)
    Guest.objects.filter(pk=rejected.pk).update(delivered_hash="0" * 32)
    changed = lifecycle.records_record_outcomes(
        model=Guest,
        outcomes=(
            "SELECT * FROM (VALUES (%s::bigint, 'delivered', %s), (%s::bigint, 'rejected', %s))"
            " AS o (record_id, outcome, value_hash)",
            [delivered.pk, delivered.value_hash, rejected.pk, rejected.value_hash],
        ),
    )
    assert changed == 2
    delivered.refresh_from_db()
    rejected.refresh_from_db()
    assert (delivered.delivery_status, delivered.delivered_hash) == (
        DeliveryStatus.DELIVERED,
        delivered.value_hash,
    )
    # A rejected record keeps the hash of its last delivery.
    assert (rejected.delivery_status, rejected.delivered_hash) == (
        DeliveryStatus.REJECTED,
        "0" * 32,
    )
