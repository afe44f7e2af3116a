"""Reads of staged records used in more than one place (admin, services, dashboard, commands)."""

from collections.abc import Iterable

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, QuerySet, Subquery

from records.mapping.documents import header_fingerprint
from records.models import (
    BatchedKind,
    BatchMembership,
    Extension,
    Guest,
    GuestDeletion,
    GuestMigration,
    Identifier,
    IdentityProvider,
    ImportRun,
    ImportRunEvent,
    Mapping,
    Order,
    Schema,
    Subscription,
    TrackingEvent,
)

__all__ = [
    "held_by_live_batch",
    "in_live_batch",
    "live_batch_sql",
    "live_batch_count",
    "live_batch_id_sql",
    "live_batches_settle",
    "live_batch_of",
    "live_batches",
    "record_kind",
    "with_live_batch",
    "guest_countries",
    "guest_with_children",
    "guests_with_children",
    "guests_with_identity",
    "identity_provider_names",
    "import_run_events",
    "import_runs_for_schema",
    "mapping_for_header",
    "record_status_counts",
    "table_row_estimate",
]

StagedModel = (
    type[Guest] | type[TrackingEvent] | type[Order] | type[GuestDeletion] | type[GuestMigration]
)


RECORD_KINDS: dict[type, str] = {
    Guest: BatchedKind.GUEST,
    TrackingEvent: BatchedKind.TRACKING,
    Order: BatchedKind.ORDER,
    GuestDeletion: BatchedKind.GUEST_DELETION,
    GuestMigration: BatchedKind.MIGRATION,
}


def record_kind(model: StagedModel) -> str:
    """The BatchMembership kind of a records table."""
    return RECORD_KINDS[model]


def _live_memberships(model: StagedModel) -> QuerySet[BatchMembership]:
    # Answered by the unique partial index membership_one_live_batch: one probe per record.
    return BatchMembership.objects.filter(
        kind=record_kind(model), record_id=OuterRef("pk"), live=True
    )


def held_by_live_batch(model: StagedModel) -> Exists:
    """An expression for a queryset of `model`: true when a live batch holds the record."""
    return Exists(_live_memberships(model))


def in_live_batch(queryset: QuerySet, *, present: bool = True) -> QuerySet:
    """The records of `queryset` a live batch holds (present) or that no live batch holds."""
    held = held_by_live_batch(queryset.model)
    return queryset.filter(held if present else ~held)


def with_live_batch(queryset: QuerySet) -> QuerySet:
    """Annotate each record with `live_batch`: the id of the live batch holding it, or None."""
    batch = Subquery(_live_memberships(queryset.model).values("batch_id")[:1])
    return queryset.annotate(live_batch=batch)


def live_batch_count(*, model: StagedModel) -> int:
    """How many records of `model` live batches hold (the partial unique index holds exactly
    those, so this reads no record)."""
    return BatchMembership.objects.filter(kind=record_kind(model), live=True).count()


def live_batch_of(*, model: StagedModel, record_id: int) -> int | None:
    """The live batch holding one record, or None."""
    return (
        BatchMembership.objects.filter(kind=record_kind(model), record_id=record_id, live=True)
        .values_list("batch_id", flat=True)
        .first()
    )


def live_batches(*, model: StagedModel, record_ids: Iterable[int]) -> dict[int, int]:
    """The live batch of each of these records that one holds: {record id: batch id}."""
    return dict(
        BatchMembership.objects.filter(
            kind=record_kind(model), record_id__in=list(record_ids), live=True
        ).values_list("record_id", "batch_id")
    )


# PostgreSQL advisory lock keys, one per kind ("CDSG", "CDST", "CDSO", "CDSD"): a build's selection
# (records.services.lifecycle.records_lock) takes its kind's key exclusively, and
# live_batches_settle takes it shared.
SELECTION_LOCKS = {
    BatchedKind.GUEST: 0x43445347,
    BatchedKind.TRACKING: 0x43445354,
    BatchedKind.ORDER: 0x4344534F,
    BatchedKind.GUEST_DELETION: 0x43445344,  # "CDSD"
    BatchedKind.MIGRATION: 0x4344534D,  # "CDSM"
}


def live_batches_settle(*, model: StagedModel) -> None:
    """Wait for a batch selecting records of this kind, and keep new ones out until commit,
    so that "no live batch holds it" stays true for the rest of the transaction.

    Call it first in a transaction that changes records' content after checking that no
    live batch holds them. A build does not lock record rows (that would rewrite them), so
    without this an edit checked just before a selection commits could change a record the
    batch already holds. Needs a transaction (the lock ends with it).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock_shared(%s)", [SELECTION_LOCKS[record_kind(model)]]
        )


def live_batch_id_sql(*, model: StagedModel, record: str = "t.id") -> str:
    """SQL whose value is the live batch holding the record `record` (an id expression), or
    NULL; for statements written in SQL (the stager's reads)."""
    return (
        "(SELECT m.batch_id FROM records_batchmembership m"
        f" WHERE m.kind = '{record_kind(model)}' AND m.record_id = {record} AND m.live)"
    )


def live_batch_sql(*, model: StagedModel, record: str = "t.id") -> str:
    """SQL that is true when a live batch holds the record whose id is the expression `record`.

    For statements written in SQL (the stager's upserts, the build's selection); the kind is
    a fixed word, not input, so it is written inline. A scalar subquery, not EXISTS: PostgreSQL
    turns EXISTS into a join whose shape follows the statistics, and with stale ones (the
    outer side estimated at one row) it re-scanned every live membership per record; a
    correlated scalar subquery stays one probe of the unique partial index per record.
    """
    return (
        "(SELECT true FROM records_batchmembership m"
        f" WHERE m.kind = '{record_kind(model)}' AND m.record_id = {record} AND m.live)"
        " IS NOT NULL"
    )


def guests_with_children(*, guest_ids: Iterable[int]) -> QuerySet[Guest]:
    """Guests with identifiers, subscriptions and extensions prefetched (4 queries in all)."""
    # The import run is shown on every guest page and in the refresh's error report.
    return (
        Guest.objects.filter(pk__in=list(guest_ids))
        .select_related("import_run")
        .prefetch_related(
            _ordered("identifiers", Identifier),
            _ordered("subscriptions", Subscription),
            _ordered("extensions", Extension),
        )
        .order_by("pk")
    )


def _ordered(name: str, model):
    return Prefetch(name, queryset=model.objects.order_by(*model._meta.ordering))


def guest_with_children(*, guest_id: int) -> Guest:
    """One guest with its children prefetched; Guest.DoesNotExist if it is gone."""
    return guests_with_children(guest_ids=[guest_id]).get()


def guests_with_identity(queryset: QuerySet[Guest], *, present: bool) -> QuerySet[Guest]:
    """Filter guests by whether they have an identity: an identifier of a configured provider.

    That is what CDP matches on (and what makes a guest valid); it is the `identity_key`
    column, whose unique index answers IS NULL at once. (NOT EXISTS over the identifiers
    table measured 3-4 s per page at 1M guests: it scans every guest when none match.)
    """
    return queryset.filter(identity_key__isnull=not present)


def record_status_counts(*, model: StagedModel) -> dict[str, dict[str, int]]:
    """Counts by review status and by delivery status: two GROUP BYs over indexed columns."""
    review = dict(model.objects.order_by().values_list("review_status").annotate(n=Count("pk")))
    delivery = dict(model.objects.order_by().values_list("delivery_status").annotate(n=Count("pk")))
    return {"review": review, "delivery": delivery}


def guest_countries() -> list[str]:
    """The distinct countries of staged guests, in a few index probes, not a table scan.

    A recursive CTE walks the `country` index one distinct value at a time (a "loose index
    scan"); SELECT DISTINCT would read all rows, which at 1M guests costs more than the whole
    change-list page is allowed to.
    """
    table = Guest._meta.db_table
    sql = f"""
        WITH RECURSIVE walk(country) AS (
            (SELECT country FROM {table} ORDER BY country LIMIT 1)
            UNION ALL
            SELECT (SELECT g.country FROM {table} g WHERE g.country > walk.country
                    ORDER BY g.country LIMIT 1)
            FROM walk WHERE walk.country IS NOT NULL
        )
        SELECT country FROM walk WHERE country IS NOT NULL AND country <> ''
    """  # noqa: S608 - the table name comes from the model, not from input
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def import_run_events(run: ImportRun) -> QuerySet[ImportRunEvent]:
    """The import run's audit timeline (status changes, who, which attempt), oldest first."""
    return ImportRunEvent.objects.filter(run=run).select_related("actor").order_by("id")


def import_runs_for_schema(*, schema: str, limit: int = 30) -> QuerySet[ImportRun]:
    """The latest import runs of a schema, newest first (for filters and pickers)."""
    schemas = {Schema.GUEST: [Schema.GUEST, Schema.SUBSCRIPTION, Schema.EXTENSION]}.get(
        schema, [schema]
    )
    return ImportRun.objects.filter(schema__in=schemas).order_by("-id")[:limit]


def table_row_estimate(*, model: StagedModel | type) -> int:
    """PostgreSQL's own row estimate for a table (pg_class.reltuples): free, roughly right.

    -1 means the table was never analysed or vacuumed; callers then count for real.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else -1


def identity_provider_names() -> list[str]:
    """The identity providers, highest priority first (the order identity keys follow)."""
    return list(
        IdentityProvider.objects.order_by("priority", "name").values_list("name", flat=True)
    )


def mapping_for_header(*, schema: str, header: list[str]) -> Mapping | None:
    """The saved mapping made for this layout (same normalised header), latest saved first."""
    return (
        Mapping.objects.filter(schema=schema, header_fingerprint=header_fingerprint(header))
        .order_by("-updated_at")
        .first()
    )
