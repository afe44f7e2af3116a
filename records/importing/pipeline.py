"""The import pipeline every path runs: read rows -> map -> clean -> stage.

Used by the background import run and the `stage_import` command, both through
records.services.imports.import_run_execute (the admin mapping step previews rows through
records.importing.preview, with the same mapping and rules).
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from records.importing.readers import FileProblem, Source
from records.importing.report import ErrorReport
from records.importing.staging import Counts, Stager, stager_for
from records.mapping import MappingError, RowError, compile_header, map_json_object
from records.mapping.applying import plan_mapping
from records.mapping.documents import MappingDocument
from records.selectors import identity_provider_names

# The cyclic garbage collector while rows are staged: a row allocates dozens of containers and
# frees them again by reference counting (the import makes no cycles), yet every 700
# allocations CPython ran a collection that walked the live batch; that was about a tenth of
# the import's Python time (measured: 237 -> 215 µs per guest, 50k rows).
IMPORT_GC_THRESHOLD = (50_000, 20, 100)
# The GIL switch interval while staging (CPython's default is 5 ms): the writer thread, the
# critical path, waits on PostgreSQL many times per batch and each time waited up to a whole
# interval for the cleaning thread to let go of the GIL (measured, 100k rows: 2,880 ->
# 3,056-3,751 rows/s at 1 ms).
IMPORT_SWITCH_INTERVAL = 0.001

# How often (at most) progress is written while rows are read.
PROGRESS_SECONDS = 1.0
PROGRESS_EVERY_ROWS = 1000

ProgressCallback = Callable[[Counts, int], None]


@dataclass(frozen=True, slots=True)
class StageOptions:
    schema: str
    on_error: str
    ignore_unknown_columns: bool = False
    # Guests: the envelope mode of rows that name none (records.rules.modes); "": upsert.
    guest_mode: str = ""
    # A saved or file mapping for a flat file of another layout; None: CDP's own column names.
    mapping: MappingDocument | None = None


def _too_long_in(value: Any, limit: int, path: str = "") -> str | None:
    """The path of the first string longer than limit in a JSON value, else None."""
    if isinstance(value, str):
        return path if len(value) > limit else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = _too_long_in(item, limit, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _too_long_in(item, limit, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def stage_source(
    source: Source,
    *,
    options: StageOptions,
    import_run_id: int | None,
    report: ErrorReport,
    progress: ProgressCallback | None = None,
    outcomes: dict[int, str] | None = None,
    counts: Counts | None = None,
) -> Counts:
    """Stage every row of an opened source; returns the counts.

    Runs inside the caller's transaction. Raises FileProblem for a problem with the whole file
    (the caller rolls back); row problems go to the report. Pass `counts` to watch them fill
    (they tell how far a failed import got).
    """
    stager = stager_for(
        options.schema,
        import_run_id=import_run_id,
        on_error=options.on_error,
        report=report,
        batch_rows=settings.IMPORT_BATCH_ROWS,
        identity_providers=identity_provider_names(),
        default_mode=options.guest_mode,
    )
    stager.outcomes = outcomes
    if counts is not None:
        stager.counts = counts
    rows = _mapped_rows(source, options, stager)
    counts = stager.counts
    last = time.monotonic()
    next_check = PROGRESS_EVERY_ROWS
    try:
        for number, mapped in rows:
            stager.add(number, mapped)
            if progress is not None and counts.read >= next_check:
                next_check = counts.read + PROGRESS_EVERY_ROWS
                now = time.monotonic()
                if now - last >= PROGRESS_SECONDS:
                    last = now
                    progress(counts, source.bytes_read)
        stager.finish()
    finally:
        stager.close()
    if progress is not None:
        progress(counts, source.bytes_read)
    return counts


_gc_lock = threading.Lock()
_gc_users = 0  # stagings running in this process (a threaded web server may run two)
_gc_saved: tuple[int, ...] = ()
_switch_saved = 0.005


@contextmanager
def import_process_tuning() -> Iterator[None]:
    """Collect garbage rarely while staging (the objects alive before, Django and the app,
    are left out of the collections meanwhile) and switch threads sooner.

    Process-wide settings: only a process that stages and nothing else applies them (the
    import job of a worker, the stage_import command), never a web request. Measured again
    after the engine's rework (50,000 rich guests, stage_import, median of 3): 11.2 s with,
    12.4 s without (docs/import-engine.md). The first staging in changes the settings, the
    last one out restores them."""
    global _gc_users, _gc_saved, _switch_saved
    with _gc_lock:
        _gc_users += 1
        if _gc_users == 1:
            _gc_saved = gc.get_threshold()
            _switch_saved = sys.getswitchinterval()
            gc.freeze()
            gc.set_threshold(*IMPORT_GC_THRESHOLD)
            sys.setswitchinterval(IMPORT_SWITCH_INTERVAL)
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)
                sys.setswitchinterval(_switch_saved)
                gc.unfreeze()


def _mapped_rows(
    source: Source, options: StageOptions, stager: Stager
) -> Iterable[tuple[int, Any]]:
    """(row number, MappedRow) for each row that maps; mapping problems are reported bad."""
    limit = settings.IMPORT_MAX_CELL_CHARS
    counts = stager.counts
    if source.header is not None:
        headers = [h.strip() for h in source.header]
        try:
            if options.mapping is not None:
                plan = plan_mapping(options.mapping, headers)
                mapping, to_cdp_cells = plan.flat, plan.cells
            else:
                mapping = compile_header(
                    options.schema, headers, ignore_unknown=options.ignore_unknown_columns
                )
                to_cdp_cells = None
        except MappingError as exc:
            raise FileProblem(exc.message, code="columns") from None
        width = len(headers)
        for number, cells in source.rows:
            counts.read += 1
            if len(cells) > width and any(c.strip() for c in cells[width:]):
                stager.bad(
                    number,
                    "",
                    "extra_cells",
                    f"The row has {len(cells)} cells but the header names {width} columns "
                    "(a delimiter inside an unquoted value?).",
                )
                continue
            if max(map(len, cells), default=0) > limit:
                column = next(
                    headers[i] if i < width else "" for i, c in enumerate(cells) if len(c) > limit
                )
                stager.bad(
                    number,
                    column,
                    "cell_too_long",
                    f"The cell is longer than {limit:,} characters (CDP_IMPORT_MAX_CELL_CHARS).",
                )
                continue
            try:
                yield number, mapping.to_row(cells if to_cdp_cells is None else to_cdp_cells(cells))
            except RowError as exc:
                stager.bad(number, exc.column, exc.code, exc.message)
        return
    if options.mapping is not None:
        raise FileProblem(
            "A column mapping applies to CSV and XLSX files; JSON and NDJSON files use CDP's "
            "own field names (docs/import-formats.md).",
            code="columns",
        )
    for number, obj in source.rows:
        counts.read += 1
        path = _too_long_in(obj, limit)
        if path is not None:
            stager.bad(
                number,
                path,
                "cell_too_long",
                f"The value is longer than {limit:,} characters (CDP_IMPORT_MAX_CELL_CHARS).",
            )
            continue
        try:
            mapped = map_json_object(
                options.schema, obj, ignore_unknown=options.ignore_unknown_columns
            )
        except RowError as exc:
            stager.bad(number, exc.column, exc.code, exc.message)
            continue
        except MappingError as exc:
            raise FileProblem(f"Row {number}: {exc.message}", code="columns") from None
        yield number, mapped
