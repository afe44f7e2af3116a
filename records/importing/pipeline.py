"""The import pipeline every path runs: read rows -> map -> clean -> stage.

Used by the background import run and the `stage_import` command, both through
records.services.imports.import_run_execute (the admin mapping step previews rows through
records.importing.preview, with the same mapping and rules).
"""

from __future__ import annotations

import gc
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
            if mapped is not None:
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


@contextmanager
def import_process_tuning() -> Iterator[None]:
    """Leave the objects alive before staging (Django, the app: ~100,000) out of the cyclic
    garbage collector's passes while rows are staged (gc.freeze).

    A batch of rows allocates many containers, and each full collection walked everything
    the process holds. Process-wide: only a process that stages and nothing else applies it
    (the import job of a worker, the stage_import command), never a web request. Measured
    after the row plan (stage_import-like run, 20,000 rich guests, 3 pairs, median CPU):
    without it 1.31 x the CPU of the former tuning (freeze + GC threshold + 1 ms GIL switch
    interval), freeze alone 0.94 x, the switch interval alone 1.28 x: so only the freeze is
    kept (docs/import-engine.md). The first staging in freezes, the last one out unfreezes."""
    global _gc_users
    with _gc_lock:
        _gc_users += 1
        if _gc_users == 1:
            gc.freeze()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
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
        plan = stager.row_plan(mapping)
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
            if to_cdp_cells is not None:
                cells = to_cdp_cells(cells)
            try:
                planned = plan(cells) if plan is not None else None
                if planned is not None:
                    stager.add_planned(number, planned)
                    yield number, None  # staged: the caller only counts it for progress
                    continue
                yield number, mapping.to_row(cells)
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
