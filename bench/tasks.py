"""The bench's steps, each run in a process of its own: `python -m bench.tasks TASK --out FILE`.

bench.suite starts one process per step and reads its peak RSS from wait4() when it ends, so
a figure covers that step alone (Python, Django and the work), not the bench around it. A task
writes its result as JSON to --out; the environment (DATABASE_URL, REDIS_URL, MEDIA_ROOT)
points at the bench's own database, Redis database and folder.

"ours" tasks call the project's real code: the import run job (records.jobs) and the batch
build job (batches.jobs), exactly what a worker runs. "common" tasks are what a throw-away
script or a default django-import-export setup does, on the same rows.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import django

TABLES = (
    "records_identifier",
    "records_subscription",
    "records_extension",
    "records_guest",
    "records_trackingevent",
    "records_importrun",
    "batches_batchitem",
    "batches_batchfile",
    "batches_batchevent",
    "batches_batch",
)
BENCH_USER = "bench"


def _rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set (or VmHWM, its peak) in MB, from /proc (no psutil)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def _superuser() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=BENCH_USER)


# -- setup -----------------------------------------------------------------------------------


def prepare(params: dict[str, Any]) -> dict[str, Any]:
    """Create the bench's superuser (it creates batches and opens the admin pages)."""
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    if not user_model.objects.filter(username=BENCH_USER).exists():
        user_model.objects.create_superuser(username=BENCH_USER, email="", password=None)
    return {}


def reset(params: dict[str, Any]) -> dict[str, Any]:
    """Empty the staging and batch tables and the bench's queues: each step starts clean.

    Any task given `"reset": true` runs this first.
    """
    import django_rq
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    for name in settings.RQ_QUEUE_NAMES:
        queue = django_rq.get_queue(name)
        queue.empty()
        for registry in (queue.scheduled_job_registry, queue.finished_job_registry):
            for job_id in registry.get_job_ids():
                registry.remove(job_id, delete_job=True)
    return {}


# -- import ----------------------------------------------------------------------------------


def import_ours(params: dict[str, Any]) -> dict[str, Any]:
    """Our import: an import run carried out by its job function, as a worker would (with
    params["mapping"], a mapping document, the file is read through it)."""
    from django.core.files import File
    from django.db import connection

    from records import jobs
    from records.mapping.documents import parse_document
    from records.models import Guest, ImportRun
    from records.services.imports import import_run_create

    source = Path(params["csv"])
    mapping = params.get("mapping")
    with source.open("rb") as handle:
        run = import_run_create(
            uploaded_file=File(handle, name=source.name),
            schema="guest",
            mapping=parse_document(mapping, schema="guest") if mapping else None,
            enqueue=False,
        )
    baseline = _rss_mb()
    started, cpu_started = time.perf_counter(), time.process_time()
    status = jobs.import_run_execute(run.pk, run.attempt)
    seconds = time.perf_counter() - started
    # CPU of this process's threads (the cleaning and the COPY-writing one), PostgreSQL's
    # own work not included: the Python cost of a row.
    cpu_seconds = time.process_time() - cpu_started
    run.refresh_from_db()
    if status != ImportRun.Status.SUCCEEDED:
        raise RuntimeError(f"The import run ended {status}: {run.message}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT avg(length(cdp_value)) FROM records_guest")
        value_bytes = float(cursor.fetchone()[0] or 0)
    return {
        "rows": run.rows_read,
        "created": run.rows_created,
        "invalid": run.rows_invalid,
        "guests": Guest.objects.count(),
        "seconds": seconds,
        "python_us_per_row": cpu_seconds * 1e6 / max(run.rows_read, 1),
        "baseline_rss_mb": baseline,
        "value_bytes": value_bytes,
    }


# The tables our import writes, parents first (the order a COPY of them must follow).
FLOOR_TABLES = ("records_guest", "records_identifier", "records_subscription", "records_extension")


def import_floor(params: dict[str, Any]) -> dict[str, Any]:
    """The floor under our import: re-COPY the rows it produced into the same tables.

    Run right after import_ours, on its rows: each table is copied out (binary COPY) once,
    then, per variant, in a transaction that is rolled back: the tables emptied, the
    variant's schema change made (none, no child foreign keys, one guest index fewer, ...),
    and the four tables COPYed in again as our import writes them (constraints checked
    immediately). The time of the COPYs is the variant's figure: what PostgreSQL needs to take
    these exact rows with that schema, Python aside.
    """
    from django.db import connection

    work = Path(params["work"])
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        cursor.execute("SELECT count(*) FROM records_guest")
        guests = cursor.fetchone()[0]
        for table in FLOOR_TABLES:
            with (
                (work / f"{table}.copy").open("wb") as out,
                cursor.copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy,
            ):
                for block in copy:
                    out.write(block)
        cursor.execute(
            """SELECT indexname FROM pg_indexes
                WHERE tablename = 'records_guest' AND indexdef NOT LIKE 'CREATE UNIQUE%%'
                ORDER BY indexname"""
        )
        indexes = [r[0] for r in cursor.fetchall()]
        cursor.execute(
            """SELECT conrelid::regclass::text, conname FROM pg_constraint
                WHERE contype = 'f' AND confrelid = 'records_guest'::regclass
                  AND conrelid::regclass::text = ANY(%s)""",
            [list(FLOOR_TABLES[1:])],
        )
        child_fks = cursor.fetchall()
    drop_fks = [f"ALTER TABLE {t} DROP CONSTRAINT {c}" for t, c in child_fks]
    variants: dict[str, list[str]] = {"as is": [], "without child foreign keys": drop_fks}
    for index in indexes:
        variants[f"without index {index}"] = [f"DROP INDEX {index}"]
    variants["without child foreign keys and guest indexes"] = drop_fks + [
        f"DROP INDEX {index}" for index in indexes
    ]
    figures = {}
    for name, statements in variants.items():
        figures[name] = _floor_copy(work, statements)
    for table in FLOOR_TABLES:
        (work / f"{table}.copy").unlink()
    base = figures["as is"]
    return {
        "guests": guests,
        "seconds": base,
        "variants": {
            name: {"seconds": seconds, "saves_seconds": base - seconds}
            for name, seconds in figures.items()
        },
        "indexes": indexes,
    }


def _floor_copy(work: Path, statements: list[str]) -> float:
    """Seconds to COPY the copied-out tables back in after `statements` (rolled back)."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        cursor.execute(f"TRUNCATE {', '.join(FLOOR_TABLES)} CASCADE")
        for statement in statements:
            cursor.execute(statement)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # as the import's stager does
        started = time.perf_counter()
        for table in FLOOR_TABLES:
            with (
                (work / f"{table}.copy").open("rb") as source,
                cursor.copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy,
            ):
                while block := source.read(1 << 20):
                    copy.write(block)
        seconds = time.perf_counter() - started
        transaction.set_rollback(True)
    return seconds


def _guest_columns_resource() -> Any:
    from import_export import resources

    from bench.data import MODEL_COLUMNS
    from records.models import Guest

    class GuestColumnsResource(resources.ModelResource):
        """A plain ModelResource over the Guest columns; matches re-imports on identity_key."""

        class Meta:
            model = Guest
            fields = MODEL_COLUMNS
            import_id_fields = ("identity_key",)

    return GuestColumnsResource()


def import_export(params: dict[str, Any]) -> dict[str, Any]:
    """django-import-export's Resource.import_data with default settings (row by row)."""
    import tablib

    from records.models import Guest

    resource = _guest_columns_resource()
    baseline = _rss_mb()
    started = time.perf_counter()
    text = Path(params["csv"]).read_text(encoding="utf-8")
    dataset = tablib.Dataset().load(text, format="csv")
    result = resource.import_data(dataset, dry_run=False, raise_errors=True)
    seconds = time.perf_counter() - started
    if result.has_errors() or result.has_validation_errors():
        raise RuntimeError("django-import-export reported errors on the bench rows.")
    return {
        "rows": len(dataset),
        "created": result.totals.get("new", 0),
        "guests": Guest.objects.count(),
        "seconds": seconds,
        "baseline_rss_mb": baseline,
    }


def _parse_date(text: str) -> date | None:
    return date.fromisoformat(text) if text else None


def bulk_create(params: dict[str, Any]) -> dict[str, Any]:
    """The usual script: CSV rows -> model objects (held in lists) -> bulk_create."""
    from django.db import transaction

    from bench.data import read_rows
    from records.models import Extension, Guest, Identifier, Subscription

    ext_keys = ("loyaltyTier", "loyaltyPoints", "memberSince", "favouriteStore")
    ext_keys += ("preferredContact", "marketingSegment")
    baseline = _rss_mb()
    started = time.perf_counter()
    rows = list(read_rows(Path(params["csv"]), params["rows"]))
    guests = [
        Guest(
            mode="upsert",
            identity_key=f"{row['identifiers.0.provider']}:{row['identifiers.0.id']}",
            email=row["email"],
            title=row["title"],
            first_name=row["firstName"],
            last_name=row["lastName"],
            gender=row["gender"],
            date_of_birth=_parse_date(row["dateOfBirth"]),
            phone_numbers=[p for p in row["phoneNumbers"].split(";") if p],
            street=[s for s in (row["street.0"], row["street.1"]) if s],
            city=row["city"],
            state=row["state"],
            country=row["country"],
            post_code=row["postCode"],
            nationality=row["nationality"],
            language=row["language"],
        )
        for row in rows
    ]
    with transaction.atomic():
        Guest.objects.bulk_create(guests, batch_size=1000)
        identifiers, subscriptions, extensions = [], [], []
        for guest, row in zip(guests, rows, strict=True):
            for position in (0, 1):
                identifiers.append(
                    Identifier(
                        guest=guest,
                        position=position,
                        provider=row[f"identifiers.{position}.provider"],
                        identifier=row[f"identifiers.{position}.id"],
                    )
                )
            subscriptions.append(
                Subscription(
                    guest=guest,
                    name=row["subscriptions.0.name"],
                    point_of_sale=row["subscriptions.0.pointOfSale"],
                    channel=row["subscriptions.0.channel"],
                    status=row["subscriptions.0.status"],
                    effective_date=datetime.fromisoformat(row["subscriptions.0.effectiveDate"]),
                )
            )
            extensions.append(
                Extension(guest=guest, attributes={k: row[f"ext.{k}"] for k in ext_keys})
            )
        Identifier.objects.bulk_create(identifiers, batch_size=1000)
        Subscription.objects.bulk_create(subscriptions, batch_size=1000)
        Extension.objects.bulk_create(extensions, batch_size=1000)
    seconds = time.perf_counter() - started
    return {
        "rows": len(rows),
        "created": len(guests),
        "guests": Guest.objects.count(),
        "seconds": seconds,
        "baseline_rss_mb": baseline,
    }


# -- build -----------------------------------------------------------------------------------


def build_setup(params: dict[str, Any]) -> dict[str, Any]:
    """Mark every staged guest ready and create a batch of them (its build is measured next)."""
    import django_rq

    from batches.services import batch_create
    from records.models import Guest, ReviewStatus
    from records.services.review import records_mark_ready

    user = _superuser()
    records_mark_ready(model=Guest, queryset=Guest.objects.all(), user=user)
    batch = batch_create(schema="guest", user=user, note="bench")
    # batch_create enqueued the build on the bench's Redis database; this bench runs the job
    # function itself, in a process of its own, so the queued copy is dropped.
    django_rq.get_queue("batches").empty()
    batch.refresh_from_db()
    return {
        "batch_id": batch.pk,
        "attempt": batch.attempt,
        "ready": Guest.objects.filter(review_status=ReviewStatus.READY).count(),
    }


class _BuildLog(logging.Handler):
    """Keeps the arguments of the build's "Batch %s built: ... %.1f s" line: the job's own
    timing of its export phase (stream -> gzip NDJSON + MD5 -> stored file)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.export_seconds: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if str(record.msg).startswith("Batch %s built") and record.args:
            self.export_seconds = float(record.args[-1])


def build_ours(params: dict[str, Any]) -> dict[str, Any]:
    """Our build: the batch build job (select and lock, stream -> files, items), in-process."""
    from batches import jobs
    from batches.models import Batch

    log = _BuildLog()
    building = logging.getLogger("batches.services.building")
    building.setLevel(logging.INFO)
    building.addHandler(log)
    baseline = _rss_mb()
    started = time.perf_counter()
    jobs.batch_build(params["batch_id"], params["attempt"])
    seconds = time.perf_counter() - started
    batch = Batch.objects.get(pk=params["batch_id"])
    if batch.status != Batch.Status.BUILT:
        raise RuntimeError(f"The batch build ended {batch.status}: {batch.message}")
    return {
        "records": batch.records_written,
        "files": batch.file_count,
        "bytes": batch.bytes_total,
        "seconds": seconds,
        "export_seconds": log.export_seconds,
        "phases": _build_phases(batch, log.export_seconds),
        "baseline_rss_mb": baseline,
    }


def _build_phases(batch: Any, export_seconds: float | None) -> dict[str, float | None]:
    """Where the build job's time went, from the timestamps it writes (approximate: the
    select phase ends when its "Selected and locked" event is written)."""
    from batches.models import BatchEvent

    selected = (
        BatchEvent.objects.filter(batch=batch, message__startswith="Selected and locked")
        .values_list("created_at", flat=True)
        .first()
    )
    if selected is None or batch.selected_at is None or batch.built_at is None:
        return {"select": None, "export": export_seconds, "record": None}
    select = (selected - batch.selected_at).total_seconds()
    after = (batch.built_at - selected).total_seconds()
    record = after - export_seconds if export_seconds is not None else None
    return {"select": select, "export": export_seconds, "record": record}


def build_common(params: dict[str, Any]) -> dict[str, Any]:
    """The usual script: model objects -> json.dumps -> gzip.open, then MD5 by re-reading."""
    from records.models import Guest, ReviewStatus
    from records.serializing import guest_value_from_instance

    target = Path(params["path"])
    baseline = _rss_mb()
    started = time.perf_counter()
    guests = (
        Guest.objects.filter(review_status=ReviewStatus.READY)
        .prefetch_related("identifiers", "subscriptions", "extensions")
        .order_by("pk")[: params["rows"]]
    )
    records = 0
    with gzip.open(target, "wt", encoding="utf-8") as out:
        for guest in guests:
            envelope = {
                "ref": str(guest.ref),
                "schema": "guest",
                "mode": guest.mode or "upsert",
                "value": guest_value_from_instance(guest),
            }
            out.write(json.dumps(envelope) + "\n")
            records += 1
    md5 = hashlib.md5(usedforsecurity=False)
    with target.open("rb") as written:
        for chunk in iter(lambda: written.read(1 << 20), b""):
            md5.update(chunk)
    seconds = time.perf_counter() - started
    size = target.stat().st_size
    target.unlink()
    return {
        "records": records,
        "bytes": size,
        "md5": md5.hexdigest(),
        "seconds": seconds,
        "baseline_rss_mb": baseline,
    }


# -- admin -----------------------------------------------------------------------------------

# One guest of about the size the import stores (~870 bytes of value), varied by its number.
# Statuses: 2 % invalid (with a problem), 30 % ready, 10 % held, the rest new.
ADMIN_FILL_SQL = """
INSERT INTO records_guest (
    created_at, updated_at, ref, mode, review_status, validation_errors, import_run_id,
    source_row, cdp_value, value_hash, delivery_status, delivered_hash, identity_key, email,
    title, first_name, last_name, gender, date_of_birth, phone_numbers, street, city, state,
    country, post_code, nationality, language, passport_number, guest_type)
SELECT now(), now(), gen_random_uuid(), 'upsert', s.status,
       CASE WHEN s.status = 'invalid'
            THEN '[{"field": "email", "code": "invalid_email", "message": "Not an email address."}]'
            ELSE '[]' END::jsonb,
       %(run)s, s.i + 1, s.value, md5(s.value), 'not_sent', '', 'email:' || s.email, s.email,
       'Ms', s.first, s.last, 'female', DATE '1950-01-01' + (s.i %% 18000),
       ARRAY['+353 1 ' || lpad((s.i %% 10000000)::text, 7, '0')],
       ARRAY[(1 + s.i %% 200) || ' Main Street', 'Apartment ' || (1 + s.i %% 40)],
       s.city, 'Leinster', s.country, 'D' || lpad((s.i %% 24)::text, 2, '0'), 'Irish', 'EN',
       '', 'customer'
  FROM (
    SELECT g.i, g.email, g.first, g.last, g.city, g.country, g.status,
           format('{"guestType":"customer","title":"Ms","firstName":"%%s","lastName":"%%s",'
                  '"gender":"female","dateOfBirth":"1950-01-01T00:00Z","email":"%%s",'
                  '"phoneNumbers":["+353 1 %%s","+353 87 %%s"],"language":"EN",'
                  '"nationality":"Irish","street":["%%s Main Street","Apartment %%s"],'
                  '"city":"%%s","state":"Leinster","country":"%%s","postCode":"D%%s X%%s",'
                  '"identifiers":[{"provider":"email","id":"%%s"},'
                  '{"provider":"CRM_ID","id":"CRM-%%s"}],"subscriptions":[{"name":"newsletter",'
                  '"pointOfSale":"shop.example.com","channel":"EMAIL","status":"SUBSCRIBED",'
                  '"effectiveDate":"2024-01-02T10:00:00.000Z"}],"extensions":[{"name":"ext",'
                  '"key":"default","favouriteStore":"%%s Central","loyaltyPoints":"%%s",'
                  '"loyaltyTier":"gold","marketingSegment":"segment-%%s",'
                  '"memberSince":"2015-03-15","preferredContact":"email"}]}',
                  g.first, g.last, g.email, lpad((g.i %% 10000000)::text, 7, '0'),
                  lpad((g.i * 7 %% 10000000)::text, 7, '0'), 1 + g.i %% 200, 1 + g.i %% 40,
                  g.city, g.country, lpad((g.i %% 24)::text, 2, '0'),
                  lpad((g.i %% 1000)::text, 3, '0'), g.email, lpad(g.i::text, 9, '0'),
                  g.city, g.i %% 100000, g.i %% 17) AS value
      FROM (
        SELECT i,
               (ARRAY['ann','bob','cara','dermot','eve','fionn','grace','hugh'])[1 + i %% 8]
                   || '.guest.' || i || '@example-mail.com' AS email,
               (ARRAY['Ann','Bob','Cara','Dermot','Eve','Fionn','Grace','Hugh'])[1 + i %% 8]
                   AS first,
               (ARRAY['Murphy','Kelly','Walsh','Smith','Byrne','Ryan','Doyle'])[1 + i %% 7]
                   AS last,
               (ARRAY['Dublin','Cork','Galway','Limerick','Waterford','Sligo'])[1 + i %% 6]
                   AS city,
               (ARRAY['IE','IE','IE','GB','FR','DE','US'])[1 + i %% 7] AS country,
               CASE WHEN i %% 50 = 0 THEN 'invalid' WHEN i %% 10 < 3 THEN 'ready'
                    WHEN i %% 10 = 3 THEN 'held' ELSE 'new' END AS status
          FROM generate_series(%(start)s, %(stop)s - 1) AS i
      ) AS g
  ) AS s
"""
ADMIN_FILL_CHUNK = 250_000


def admin_fill(params: dict[str, Any]) -> dict[str, Any]:
    """Fill the guest table with `rows` generated guests (INSERT ... SELECT generate_series).

    The secondary indexes are dropped during the load and built again after it (much faster
    than maintaining 16 indexes row by row); the table ends with every index the migrations
    made. Autovacuum stays off for this table so the change list is measured in a known
    state: first as loaded and analysed (as after a big import), then vacuumed (admin_vacuum).
    """
    from django.db import connection

    from records.models import ImportRun

    rows = int(params["rows"])
    run = ImportRun.objects.create(
        schema="guest",
        format=ImportRun.Format.CSV,
        source_file="imports/bench/guests.csv",
        original_name="guests.csv",
        status=ImportRun.Status.SUCCEEDED,
        rows_read=rows,
        rows_created=rows,
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE records_guest SET (autovacuum_enabled = false)")
        cursor.execute("SET maintenance_work_mem = '256MB'")
        # Indexes behind constraints (primary key, unique ref and identity key) stay.
        cursor.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i"
            " WHERE i.tablename = 'records_guest' AND i.schemaname = current_schema()"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for start in range(0, rows, ADMIN_FILL_CHUNK):
            stop = min(start + ADMIN_FILL_CHUNK, rows)
            cursor.execute(ADMIN_FILL_SQL, {"run": run.pk, "start": start, "stop": stop})
        inserted = time.perf_counter()
        for _, definition in indexes:
            cursor.execute(definition)
        indexed = time.perf_counter()
        # Fresh statistics, as autovacuum's analyse would leave them: the change list's
        # estimated count and the planner read them.
        cursor.execute("ANALYZE records_guest")
        cursor.execute(
            "SELECT count(*), pg_total_relation_size('records_guest') FROM records_guest"
        )
        count, size = cursor.fetchone()
    return {
        "rows": count,
        "table_bytes": size,
        "indexes_rebuilt": len(indexes),
        "insert_seconds": inserted - started,
        "index_seconds": indexed - inserted,
        "seconds": time.perf_counter() - started,
    }


def admin_vacuum(params: dict[str, Any]) -> dict[str, Any]:
    """VACUUM the guest table (all-visible pages let COUNT(*) use an index-only scan)."""
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE records_guest")
    return {"seconds": time.perf_counter() - started}


PAGES = {
    "unfiltered": "",
    "filtered": "?review_status__exact=ready",
}


def _time_page(client: Any, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or b'id="result_list"' not in response.content:
        raise RuntimeError(f"{url} answered {response.status_code} without a result list.")
    return elapsed * 1000


def admin_pages(params: dict[str, Any]) -> dict[str, Any]:
    """Time the guest change list (first page), ours vs Django's default counting.

    "common" is the same GuestAdmin with Django's Paginator (COUNT(*) of the filtered rows)
    and show_full_result_count=True (a second COUNT(*) of the whole table when filtered).
    Runs alternate between the two so that load from other processes falls on both alike.
    """
    from django.contrib import admin
    from django.core.paginator import Paginator
    from django.test import Client
    from django.urls import reverse

    from records.models import Guest

    model_admin = admin.site.get_model_admin(Guest)
    ours = {"paginator": model_admin.paginator, "show_full": model_admin.show_full_result_count}
    common = {"paginator": Paginator, "show_full": True}

    def use(settings: dict[str, Any]) -> None:
        model_admin.paginator = settings["paginator"]
        model_admin.show_full_result_count = settings["show_full"]

    client = Client()
    client.force_login(_superuser())
    base = reverse("admin:records_guest_changelist")
    runs = max(1, int(params["runs"]))
    result: dict[str, Any] = {}
    for page, query in PAGES.items():
        url = base + query
        times: dict[str, list[float]] = {"ours": [], "common": []}
        first: dict[str, float] = {}
        for name, settings in (("ours", ours), ("common", common)):
            use(settings)
            first[name] = _time_page(client, url)  # cold: caches, plans, buffers
        for _ in range(runs):
            for name, settings in (("ours", ours), ("common", common)):
                use(settings)
                times[name].append(_time_page(client, url))
        for name in times:
            result[f"{page}_{name}"] = {
                "median_ms": statistics.median(times[name]),
                "first_ms": first[name],
                "runs_ms": times[name],
            }
    use(ours)
    return result


TASKS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "prepare": prepare,
    "reset": reset,
    "import_ours": import_ours,
    "import_floor": import_floor,
    "import_export": import_export,
    "bulk_create": bulk_create,
    "build_setup": build_setup,
    "build_ours": build_ours,
    "build_common": build_common,
    "admin_fill": admin_fill,
    "admin_vacuum": admin_vacuum,
    "admin_pages": admin_pages,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--params", default="{}", help="The task's parameters as JSON.")
    parser.add_argument("--out", required=True, help="Where to write the result (JSON).")
    args = parser.parse_args(argv)
    django.setup()
    params = json.loads(args.params)
    if params.pop("reset", False):
        reset({})  # before the measured work, in the same process (saves a start-up)
    result = TASKS[args.task](params)
    result["peak_rss_self_mb"] = _rss_mb("VmHWM")
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
