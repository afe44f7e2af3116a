"""The daily migration allowance (batches.services.allowance), with the clock passed in."""

from datetime import UTC, datetime, timedelta

import pytest

from batches.models import Batch, BatchFile
from batches.services.allowance import (
    allowance_notes,
    day_start,
    file_record_cap,
    migration_allowance,
    within_allowance,
)

pytestmark = pytest.mark.django_db

NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _batch(user, schema="migration", status=Batch.Status.UPLOADING) -> Batch:
    return Batch.objects.create(schema=schema, created_by=user, status=status)


def _file(batch, sequence, records, **fields) -> BatchFile:
    return BatchFile.objects.create(
        batch=batch, sequence=sequence, file=f"f{batch.pk}-{sequence}", md5="0" * 32, size=1,
        record_count=records, **fields,
    )  # fmt: skip


def test_day_starts_at_utc_midnight():
    assert day_start(NOON) == datetime(2026, 12, 3, tzinfo=UTC)
    assert migration_allowance(now=NOON).resets_at == datetime(2026, 12, 4, tzinfo=UTC)


def test_used_counts_uploaded_today_and_on_their_way_not_yesterday_or_corrupted(
    user_factory, settings
):
    settings.CDP_MIGRATION_DAILY_LIMIT = 100
    batch = _batch(user_factory("u"))
    _file(batch, 1, 10, uploaded_at=NOON - timedelta(hours=1), status="success")
    _file(batch, 2, 20, uploaded_at=NOON - timedelta(days=1), status="success")  # yesterday
    _file(batch, 3, 30, uploaded_at=NOON - timedelta(hours=2), status="corrupted")
    _file(batch, 4, 5, dispatched_at=NOON, status="allocated")  # on its way
    _file(batch, 5, 40)  # waiting, not dispatched
    _file(batch, 6, 3, dispatched_at=NOON, status="uploaded")  # a resumed upload found it at CDP
    _file(batch, 7, 50, dispatched_at=NOON, status="superseded")  # URL expired before upload
    guests = _batch(user_factory("v"), schema="guest")
    _file(guests, 1, 1000, uploaded_at=NOON, status="success")  # not a migration
    allowance = migration_allowance(now=NOON)
    assert (allowance.used, allowance.left) == (18, 82)


def test_within_allowance_holds_back_migration_files_in_order_only(settings):
    settings.CDP_MIGRATION_DAILY_LIMIT = 100
    candidates = [
        (1, 7, "migration", 60),
        (2, 7, "migration", 50),  # does not fit what is left (40): waits
        (3, 7, "migration", 10),  # would fit, but comes after one that waits
        (4, 8, "guest", 10_000),  # other schemas are not limited
        (5, 8, "guest", 1),
    ]
    assert within_allowance(candidates, 3, now=NOON) == [(1, 7), (4, 8), (5, 8)]
    assert within_allowance(candidates, 1, now=NOON) == [(1, 7)]


def test_files_hold_at_most_a_days_allowance(settings):
    settings.CDP_MIGRATION_DAILY_LIMIT = 7
    assert file_record_cap("migration") == 7
    assert file_record_cap("guest") is None


def test_notes_say_what_waits_and_what_is_left(user_factory, settings):
    settings.CDP_MIGRATION_DAILY_LIMIT = 100
    batch = _batch(user_factory("u"))
    _file(batch, 1, 90, uploaded_at=NOON - timedelta(hours=1), status="success")
    _file(batch, 2, 20)
    (note,) = allowance_notes(batch, now=NOON)
    assert note.startswith("1 file (20 guest migrations) waiting for tomorrow's allowance, 10 left")
    assert "resets at 2026-12-04 00:00 UTC" in note
    # The next day the file fits: nothing to say (it goes when CDP has room).
    assert allowance_notes(batch, now=NOON + timedelta(days=1)) == []


def test_batch_page_shows_the_ceiling_before_sending_and_what_waits_while_sending(
    user_factory, settings
):
    from batches.admin import batch_progress_box

    settings.CDP_MIGRATION_DAILY_LIMIT = 2
    user = user_factory("u")
    built = _batch(user, status=Batch.Status.BUILT)
    assert (
        "at most 2 guest migrations a day (CDP_MIGRATION_DAILY_LIMIT): 2 left today"
        in (batch_progress_box(built)["text"])
    )
    assert "a day" not in batch_progress_box(_batch(user, "guest", Batch.Status.BUILT))["text"]
    sending = _batch(user)
    _file(sending, 1, 2, uploaded_at=datetime.now(UTC), status="success")
    _file(sending, 2, 1)
    (note,) = batch_progress_box(sending)["retries"]
    assert "1 file (1 guest migration) waiting for tomorrow's allowance, 0 left today" in note
