"""The audit triggers of batches migration 0011, tried as the app role: a finished batch, file
or item refuses every change but the few the app makes after the end, and items of a batch
never sent stay as they are."""

import re

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from batches.models import (
    BATCH_FINAL_STATUSES,
    BATCHFILE_FINAL_STATUSES,
    Batch,
    BatchFile,
    BatchItem,
)

pytestmark = pytest.mark.django_db

REF = "00000000-0000-4000-8000-00000000000{}"


def _refused(statement: str, params: list) -> None:
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement, params)


def _batch(user, *, status: str, sent: bool, outcomes: tuple[str, ...]) -> Batch:
    batch = Batch.objects.create(schema="guest", created_by=user, note="initial load")
    batch_file = BatchFile.objects.create(
        batch=batch,
        sequence=1,
        file="batches/x.ndjson.gz",
        md5="0" * 32,
        size=10,
        record_count=len(outcomes),
    )
    BatchItem.objects.bulk_create(
        BatchItem(
            file=batch_file,
            line=n,
            record_ref=REF.format(n),
            record_id=n,
            value_hash="1" * 32,
            outcome=outcome,
        )
        for n, outcome in enumerate(outcomes, start=1)
    )
    Batch.objects.filter(pk=batch.pk).update(
        status=status,
        sent_at=timezone.now() if sent else None,
        finished_at=timezone.now(),
        records_delivered=outcomes.count("delivered"),
        records_unconfirmed=outcomes.count("unknown"),
        message="All delivered.",
    )
    return batch


@pytest.fixture
def succeeded(user_factory):
    batch = _batch(
        user_factory("creator"), status="succeeded", sent=True, outcomes=("delivered",) * 2
    )
    BatchFile.objects.filter(batch=batch).update(
        status="success", stats={"successCount": 2}, message="", finished_at=timezone.now()
    )
    return batch


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("note", "'nothing to see'"),
        ("message", "'All fine.'"),
        ("records_delivered", "records_delivered + 1"),
        ("records_failed", "1"),
        ("file_count", "7"),
        ("bytes_total", "1"),
        ("validation_summary", "'{}'::jsonb || '{\"x\": 1}'::jsonb"),
        ("finished_at", "now() - interval '1 day'"),
        ("updated_at", "now() - interval '1 day'"),
        ("include_unchanged", "NOT include_unchanged"),
        ("last_error", "'x'"),
        ("lease_until", "now()"),
    ],
)
def test_every_column_of_a_finished_batch_is_frozen(succeeded, column, value):
    _refused(f"UPDATE batches_batch SET {column} = {value} WHERE id = %s", [succeeded.pk])


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("stats", "'{\"successCount\": 0}'::jsonb"),
        ("status_json", "'{}'::jsonb"),
        ("message", "'rewritten'"),
        ("remote_status", "'error'"),
        ("polls", "polls + 1"),
        ("file_error_count", "3"),
        ("finished_at", "now() - interval '1 day'"),
        ("lease_until", "now()"),
        ("updated_at", "now() - interval '1 day'"),
    ],
)
def test_every_column_of_a_finished_file_is_frozen(succeeded, column, value):
    _refused(f"UPDATE batches_batchfile SET {column} = {value} WHERE batch_id = %s", [succeeded.pk])


def test_outcomes_of_a_finished_file_are_written_once(succeeded):
    items = "UPDATE batches_batchitem SET {} WHERE file_id IN (SELECT id FROM batches_batchfile" + (
        " WHERE batch_id = %s)"
    )
    for change in ("outcome = 'rejected'", "code = '400'", "message = 'rewritten'"):
        _refused(items.format(change), [succeeded.pk])


def test_a_recount_must_match_the_items_and_change_a_count(user_factory):
    """The one change a finished batch takes: its counts after a late error log resolved some
    unknown outcomes (batchfile_log_fetch), exactly as the items say."""
    batch = _batch(
        user_factory("creator"), status="partially_failed", sent=True, outcomes=("delivered",) * 3
    )
    update = "UPDATE batches_batch SET {} WHERE id = %s"
    # The message alone, or counts that are not the items', are refused.
    _refused(update.format("message = 'rewritten'"), [batch.pk])
    _refused(update.format("records_delivered = 2, records_rejected = 1"), [batch.pk])
    # The items say 3 delivered, and the batch says so already: nothing to recount.
    _refused(update.format("records_delivered = 3, message = 'again'"), [batch.pk])
    Batch.objects.filter(pk=batch.pk).update(records_delivered=3)  # a no-op UPDATE is fine


def test_a_recount_of_a_batch_with_unknown_outcomes_is_accepted(user_factory):
    batch = _batch(
        user_factory("creator"),
        status="partially_failed",
        sent=True,
        outcomes=("delivered", "unknown"),
    )
    batch_file = BatchFile.objects.get(batch=batch)
    BatchFile.objects.filter(pk=batch_file.pk).update(status="log_unavailable")
    BatchItem.objects.filter(file=batch_file, outcome="unknown").update(
        outcome="rejected", code="400", message="Bad"
    )
    BatchFile.objects.filter(pk=batch_file.pk).update(
        status="error", error_log="batches/x.log.gz", message="CDP rejected 1 of 2 records."
    )
    Batch.objects.filter(pk=batch.pk).update(
        records_rejected=1, records_unconfirmed=0, message="1 of 2 delivered, 1 rejected."
    )
    batch.refresh_from_db()
    assert (batch.records_delivered, batch.records_rejected, batch.records_unconfirmed) == (1, 1, 0)
    # Once resolved, the file and its items are frozen like any other.
    _refused("UPDATE batches_batchfile SET message = 'x' WHERE id = %s", [batch_file.pk])
    _refused(
        "UPDATE batches_batchitem SET outcome = 'delivered' WHERE file_id = %s", [batch_file.pk]
    )


def test_unknown_outcomes_are_resolved_only_while_the_file_awaits_its_log(user_factory):
    batch = _batch(
        user_factory("creator"), status="partially_failed", sent=True, outcomes=("unknown",)
    )
    BatchFile.objects.filter(batch=batch).update(status="failed")
    _refused(
        "UPDATE batches_batchitem SET outcome = 'delivered'"
        " WHERE file_id IN (SELECT id FROM batches_batchfile WHERE batch_id = %s)",
        [batch.pk],
    )


def test_items_of_a_cancelled_batch_cannot_be_rewritten(user_factory):
    batch = _batch(user_factory("creator"), status="cancelled", sent=False, outcomes=("pending",))
    for change in ("outcome = 'delivered'", "message = 'sent after all'", "code = '200'"):
        _refused(
            f"UPDATE batches_batchitem SET {change}"
            " WHERE file_id IN (SELECT id FROM batches_batchfile WHERE batch_id = %s)",
            [batch.pk],
        )
    assert set(BatchItem.objects.values_list("outcome", flat=True)) == {"pending"}


def test_the_item_guard_names_every_column_of_the_table():
    """The item guard compares columns one by one (for speed): none may be left out."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef('batches_batchitem_guard'::regproc)")
        source = cursor.fetchone()[0]
    columns = {field.column for field in BatchItem._meta.concrete_fields}
    assert {column for column in columns if not re.search(rf"NEW\.{column}\b", source)} == set()


@pytest.mark.parametrize(
    ("function", "statuses"),
    [
        ("batches_batch_guard", BATCH_FINAL_STATUSES),
        ("batches_batchfile_guard", BATCHFILE_FINAL_STATUSES),
    ],
)
def test_the_guards_finished_statuses_are_the_models(function, statuses):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_functiondef(%s::regproc)", [function])
        source = cursor.fetchone()[0]
    (listed,) = set(re.findall(r"OLD\.status NOT IN \(([^)]*)\)", source))
    assert set(re.findall(r"'([a-z_]+)'", listed)) == set(statuses)


def test_deleting_any_batch_row_is_refused(succeeded):
    for table in ("batches_batchitem", "batches_batchfile", "batches_batch"):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table}")
    assert BatchItem.objects.count() == 2
