"""A record's life in batches: taken by a batch, released, delivered or rejected.

The only writes of batch memberships and of the records' lifecycle columns
(`delivery_status`, `delivered_hash`, `delivered_at`); the batches app calls these and never
writes them itself.

Every statement here is written so that PostgreSQL's plan stays linear in the rows it touches
whatever its statistics say (they are often stale right after a bulk change, and autovacuum
may be off): record ids handed over by the caller are put in a temporary table with a primary
key and analysed before the join, so both sides of every join have an index and true row
counts, and a nested loop, if chosen, probes an index instead of re-scanning a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from cdpstage.dbroles import table_analyze
from records.models import DeliveryStatus, Guest, GuestMode, Order, ReviewStatus, SuppressedIdentity
from records.rules.modes import guest_at_cdp_sql
from records.selectors import SELECTION_LOCKS, StagedModel, live_batch_sql, record_kind
from records.services.erasure import SUPPRESSED_SQL

__all__ = [
    "records_lock",
    "records_record_outcomes",
    "records_release",
]

# Records CDP inserts (never matches to what it has): each may be delivered once.
INSERTED_ONCE: frozenset[type] = frozenset({Order})

# SQL the caller hands over, and its parameters.
Query = tuple[str, Sequence[Any]]


def eligible_sql(
    *, model: StagedModel, include_unchanged: bool = False, include_unconfirmed: bool = False
) -> str:
    """A record may go into a batch when it is ready, valid, holds a value, is in no live
    batch, and was not already delivered with exactly this content (alias `t`) — a delta
    send; `include_unchanged` takes delivered, unchanged records too (a full send). A record
    whose outcome nobody knows (CDP's error log unreadable) may have been applied: only an
    explicit re-send takes it (`include_unconfirmed`)."""
    sql = (
        f"t.review_status = '{ReviewStatus.READY}' AND t.validation_errors = '[]'::jsonb"
        f" AND t.cdp_value <> '' AND NOT {live_batch_sql(model=model)}"
    )
    if not include_unchanged:
        sql += " AND t.value_hash <> t.delivered_hash"
    if not include_unconfirmed:
        sql += f" AND t.delivery_status <> '{DeliveryStatus.UNCONFIRMED}'"
    if model in INSERTED_ONCE:
        # Never once CDP confirmed it, not even in a full send: a second insert of an order
        # is a second order at CDP, for good (cdp-batch-api.md 3.2).
        sql += " AND t.delivered_hash = ''"
    if model is Guest:
        # An insert creates the guest: never one CDP has or may have, whatever the send
        # (full, re-send of unknown outcomes). An import or edit of such a guest also makes
        # it invalid (the same rule, records.rules.modes); a delivered one is left out here.
        sql += f" AND NOT (t.mode = '{GuestMode.INSERT}' AND {guest_at_cdp_sql('t')})"
    # Checked again although such records are invalid: one staged before an erasure request
    # (or in a race with it) must not go out. Only while the list has entries, so an empty
    # list costs the build nothing.
    suppressed = SUPPRESSED_SQL.get(model)
    if suppressed and SuppressedIdentity.objects.exists():
        sql += f" AND NOT {suppressed}"
    return sql


def _ids_table(cursor: Any, name: str, columns: str, query: Query) -> None:
    """Put the rows of `query` into temporary table `name` (first column its primary key) and
    analyse it, so the planner knows how many there are."""
    cursor.execute(f"DROP TABLE IF EXISTS {name}")
    cursor.execute(f"CREATE TEMPORARY TABLE {name} ({columns}) ON COMMIT DROP")
    sql, params = query
    cursor.execute(f"INSERT INTO {name} {sql} ON CONFLICT DO NOTHING", params)
    cursor.execute(f"ANALYZE {name}")


@transaction.atomic
def records_lock(
    *,
    model: StagedModel,
    batch_id: int,
    among: Query | None = None,
    include_unchanged: bool = False,
    include_unconfirmed: bool = False,
) -> int:
    """Make `batch_id` the live batch of every eligible record; returns how many it took.

    One INSERT ... SELECT of narrow rows: the records themselves are not written. `among`
    (a SELECT of record ids) narrows the choice, e.g. to what an earlier batch failed to
    deliver. Selections of one kind run one at a time (an advisory lock), so the NOT EXISTS
    of the eligibility sees every other batch's choice; the unique partial index would refuse
    a record live in two batches all the same. Plain INSERT rather than ON CONFLICT DO
    NOTHING: speculative insertion costs about twice as much per row.
    """
    kind = record_kind(model)
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SELECTION_LOCKS[kind]])
        # A scan of the whole table: JIT compilation cost more than it saved on it here.
        cursor.execute("SET LOCAL jit = off")
        join = ""
        if among is not None:
            _ids_table(cursor, "batch_candidates", "record_id bigint PRIMARY KEY", among)
            join = " JOIN batch_candidates c ON c.record_id = t.id"
        eligible = eligible_sql(
            model=model,
            include_unchanged=include_unchanged,
            include_unconfirmed=include_unconfirmed,
        )
        cursor.execute(
            "INSERT INTO records_batchmembership (batch_id, kind, record_id, live)"
            f" SELECT %s, %s, t.id, true FROM {table} t{join} WHERE {eligible}",
            [batch_id, kind],
        )
        taken = cursor.rowcount
        # The statements that follow (export, outcomes, other builds) plan with true counts.
        table_analyze(cursor, "records_batchmembership")
    return taken


@transaction.atomic
def records_release(*, model: StagedModel, batch_id: int) -> int:
    """The batch ended: it no longer holds its records (they may be edited and batched again)."""
    with connection.cursor() as cursor:
        # The primary key (batch_id, kind, record_id) finds the batch's rows.
        cursor.execute(
            "UPDATE records_batchmembership SET live = false"
            " WHERE batch_id = %s AND kind = %s AND live",
            [batch_id, record_kind(model)],
        )
        released = cursor.rowcount
        if released:
            table_analyze(cursor, "records_batchmembership")
    return released


@transaction.atomic
def records_record_outcomes(
    *, model: StagedModel, outcomes: Query, only_unconfirmed: bool = False
) -> int:
    """Write what CDP did with records: `outcomes` is a SELECT of (record id, outcome —
    delivered, rejected or unknown —, hash of the value sent). Delivered records remember that
    hash (an unchanged record is not sent again) and when; rejected ones keep the hash of
    their last delivery; unknown ones are "outcome unknown" (CDP may have applied them).
    `only_unconfirmed`: a log fetched after the batch ended resolves only records still of
    unknown outcome (others may have been edited or batched since)."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        _ids_table(
            cursor,
            "batch_outcomes",
            "record_id bigint PRIMARY KEY, outcome varchar(10) NOT NULL, value_hash varchar(32)",
            outcomes,
        )
        still_unconfirmed = " AND t.delivery_status = %(unconfirmed)s" if only_unconfirmed else ""
        cursor.execute(
            f"UPDATE {table} t SET delivery_status = CASE o.outcome"
            " WHEN 'delivered' THEN %(delivered)s WHEN 'rejected' THEN %(rejected)s"
            " ELSE %(unconfirmed)s END,"
            " delivered_hash = CASE WHEN o.outcome = 'delivered' THEN o.value_hash"
            " ELSE t.delivered_hash END,"
            " delivered_at = CASE WHEN o.outcome = 'delivered' THEN %(now)s"
            " ELSE t.delivered_at END"
            f" FROM batch_outcomes o WHERE t.id = o.record_id{still_unconfirmed}",
            {
                "delivered": DeliveryStatus.DELIVERED,
                "rejected": DeliveryStatus.REJECTED,
                "unconfirmed": DeliveryStatus.UNCONFIRMED,
                "now": timezone.now(),
            },
        )
        return cursor.rowcount
