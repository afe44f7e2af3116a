"""Selectors: shared reads with their prefetching, counts and index-friendly lookups."""

import pytest
from django.db import connection

from cdpstage.dbroles import table_analyze
from records.models import Guest, ReviewStatus
from records.selectors import (
    guest_countries,
    guest_with_children,
    guests_with_children,
    guests_with_identity,
    import_runs_for_schema,
    record_status_counts,
    table_row_estimate,
)
from tests.records.factories import GuestFactory, ImportRunFactory

pytestmark = pytest.mark.django_db


def test_guest_with_children_prefetches_in_four_queries(django_assert_num_queries):
    guest = GuestFactory(
        identifiers=[("email", "a@example.com"), ("CRM_ID", "C-1")],
        subscriptions=[{"name": "news"}],
        extensions={"ext": {"tier": "Gold"}},
    )
    with django_assert_num_queries(4):
        loaded = guest_with_children(guest_id=guest.pk)
        identifiers = [i.identifier for i in loaded.identifiers.all()]
        subscriptions = [s.name for s in loaded.subscriptions.all()]
        extensions = [e.attributes for e in loaded.extensions.all()]
        assert loaded.import_run is None
    assert identifiers == ["a@example.com", "C-1"]
    assert subscriptions == ["news"]
    assert extensions == [{"tier": "Gold"}]


def test_guest_with_children_missing_raises():
    with pytest.raises(Guest.DoesNotExist):
        guest_with_children(guest_id=987654)


def test_guests_with_children_in_id_order():
    guests = GuestFactory.create_batch(3)
    ids = [g.pk for g in reversed(guests)]
    assert [g.pk for g in guests_with_children(guest_ids=ids)] == sorted(ids)


def test_guests_with_identity_both_ways():
    with_identifier = GuestFactory()
    without = GuestFactory(identifiers=[])
    GuestFactory(identifiers=[("UNKNOWN_PROVIDER", "U-1")], email="u@example.com")
    assert list(guests_with_identity(Guest.objects.all(), present=True)) == [with_identifier]
    without_identity = list(guests_with_identity(Guest.objects.all(), present=False))
    assert without in without_identity
    assert len(without_identity) == 2  # an identifier of an unknown provider is no identity


def test_record_status_counts_groups_by_both_statuses():
    GuestFactory.create_batch(2)
    GuestFactory(email="broken")
    counts = record_status_counts(model=Guest)
    assert counts["review"] == {ReviewStatus.NEW: 2, ReviewStatus.INVALID: 1}
    assert counts["delivery"] == {"not_sent": 3}


def test_guest_countries_distinct_sorted_without_blanks():
    for country in ("IE", "FR", "IE", "DE", ""):
        GuestFactory(country=country)
    assert guest_countries() == ["DE", "FR", "IE"]


def test_guest_countries_empty_table():
    assert guest_countries() == []


def test_import_runs_for_schema_includes_child_files_for_guests():
    guest_run = ImportRunFactory(schema="guest")
    child_run = ImportRunFactory(schema="subscription")
    tracking_run = ImportRunFactory(schema="tracking")
    assert list(import_runs_for_schema(schema="guest")) == [child_run, guest_run]
    assert list(import_runs_for_schema(schema="tracking")) == [tracking_run]


def test_table_row_estimate_follows_analyze():
    GuestFactory.create_batch(4)
    with connection.cursor() as cursor:
        table_analyze(cursor, Guest._meta.db_table)
    assert table_row_estimate(model=Guest) == 4
