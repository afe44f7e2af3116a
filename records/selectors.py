"""Reads of staged records used in more than one place (admin, services, dashboard, commands)."""

from collections.abc import Iterable

from django.db import connection
from django.db.models import Count, Prefetch, QuerySet

from records.mapping.documents import header_fingerprint
from records.models import (
    Extension,
    Guest,
    Identifier,
    IdentityProvider,
    ImportRun,
    Mapping,
    Schema,
    Subscription,
    TrackingEvent,
)

__all__ = [
    "guest_countries",
    "guest_with_children",
    "guests_with_children",
    "guests_with_identity",
    "identity_provider_names",
    "import_runs_for_schema",
    "mapping_for_header",
    "record_status_counts",
    "table_row_estimate",
]

StagedModel = type[Guest] | type[TrackingEvent]


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
