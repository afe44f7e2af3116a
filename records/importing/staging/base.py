"""The staging engine: cleaned rows -> PostgreSQL, in batches, through COPY.

One stager per schema (guests.py, tracking.py, children.py). `add()` cleans a mapped row with
the rules and queues it: a row breaking a CDP rule (no identity, a value too long, a country
that is no ISO code) is staged as invalid with every problem in the report; only a row that
cannot be staged at all is refused (another record's ref, a guest in a live batch, an unknown
guest for a child row). Every IMPORT_BATCH_ROWS rows `flush()` writes the batch: COPY (into the
table, or a temporary table and one INSERT ... ON CONFLICT), then COPY of the children.
Memory holds one batch, plus the one being written on the helper thread.

The caller owns the transaction (all-or-nothing for refused rows is a rollback). In abort
mode the first refused row stops the writing, but every later row is still checked, so the
error report is complete.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from django.db import connection

from records.importing.copytext import copy_blocks, copy_row
from records.importing.report import INVALID, REFUSED, WARNING, ErrorReport
from records.mapping import FlatMapping, MappedRow
from records.models import Guest, ImportRun
from records.rules import Problem
from records.selectors import live_batch_id_sql
from records.serializing import GUEST_COLUMNS, TRACKING_COLUMNS

# A report line as the stager queues it: (row, column, severity, code, message, identity).
ReportTuple = tuple[int, str, str, str, str, str | None]

GUEST_TYPED: tuple[str, ...] = tuple(column for column, _ in GUEST_COLUMNS.values())
TRACKING_TYPED: tuple[str, ...] = tuple(column for column, _ in TRACKING_COLUMNS.values())


@dataclass(slots=True)
class Counts:
    """What happened to the rows of one import (bad rows were not staged)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    bad: int = 0


def db_type(model: type, attname: str) -> str:
    return model._meta.get_field(attname).db_type(connection)


def live_batch_of(record: str) -> str:
    """SQL for the id of the live batch a staged record (table alias `record`) is in, NULL
    when none: the one place the stager asks whether a record is locked by a batch (usable in
    a select list and as `... IS NULL` in a WHERE), so how batches hold records can change here
    alone."""
    return live_batch_id_sql(model=Guest, record=f"{record}.id")


def json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """A batch's rows as one JSON text parameter, read back by rows_from_json.

    Django's cursors bind parameters client-side: a Python list became an array literal
    element by element (psycopg's list dumper, a regular expression per string), about
    5 µs an element, which was most of the writer thread's Python time (issue 8). orjson
    writes the whole batch in C, and PostgreSQL parses it as fast.
    """
    return orjson.dumps(rows).decode()


def rows_from_json(alias: str, *columns: tuple[str, str]) -> str:
    """SQL for a derived table `alias` with `columns` ((name, SQL type), ...) over the JSON
    arrays of a json_rows parameter (one %s), each row read whole, so columns stay aligned."""
    select = ", ".join(
        f"(e->>{i})::{sql_type} AS {name}" for i, (name, sql_type) in enumerate(columns)
    )
    return f"(SELECT {select} FROM json_array_elements(%s::json) AS e) AS {alias}"


def json_values(values: Sequence[Any], sql_type: str) -> tuple[str, str]:
    """(SQL, parameter) for an array of `sql_type` made from a JSON list of values, for
    `= ANY(...)` (order does not matter there)."""
    return (
        f"ARRAY(SELECT json_array_elements_text(%s::json)::{sql_type})",
        orjson.dumps(values).decode(),
    )


def locked_message(batch_id: int | None) -> str:
    which = f"batch {batch_id}" if batch_id is not None else "a batch"
    return f"This guest is in {which}, which has not finished; re-import it after the batch ends."


class Stager:
    """Shared bookkeeping: counts, the error report, abort-on-first-bad-row."""

    temp_suffix = 0

    def __init__(
        self,
        *,
        import_run_id: int | None,
        on_error: str,
        report: ErrorReport,
        batch_rows: int,
        identity_providers: Sequence[str],
        default_mode: str = "",
    ) -> None:
        self.import_run_id = import_run_id
        # The mode of records whose row names none (the import's option); "": the schema's.
        self.default_mode = default_mode
        self.abort = on_error == ImportRun.OnError.ABORT
        self.report = report
        self.batch_rows = max(batch_rows, 1)
        self.providers = list(identity_providers)
        self.counts = Counts()
        self.writing = True
        self.cursor = connection.cursor().cursor  # the raw psycopg cursor, same transaction
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: left deferred, every child
        # row queues a check that runs at COMMIT, when the parent guests are long out of the
        # cache (measured: a 1M-guest import spent over 7 minutes in COMMIT). Checked after
        # each statement instead, the parents were just written and the queue stays empty.
        self.cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # The psycopg connection itself: the writer thread opens its own cursors on it (the
        # same transaction; psycopg's connection lock serialises the statements).
        self.raw = connection.connection
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        # First source row of the batch being written: report lines from it on wait for that
        # write's own lines (its checks run on the writer thread), so the report stays in order.
        self._pending_row: int | None = None
        self._prepared = False
        self._lines: list[ReportTuple] = []
        # Per-row outcome, for the import-export preview (None when nobody listens).
        self.outcomes: dict[int, str] | None = None

    def bad(
        self, row: int, column: str, code: str, message: str, identity: str | None = None
    ) -> None:
        """A row that cannot be staged (refused): reported, skipped, and in abort mode writing
        stops."""
        self._lines.append((row, column, REFUSED, code, message, identity))
        if len(self._lines) >= 4 * self.batch_rows:
            self._emit(self._held_from())  # a file of nothing but bad rows must not fill memory
        self.counts.bad += 1
        if self.abort:
            self.writing = False
        self._outcome(row, "bad")

    def invalid(
        self, row: int, problems: Iterable[Problem], *, strip: str = "", identity: str | None = None
    ) -> None:
        """A row staged with problems: every problem goes to the report."""
        for problem in problems:
            column = problem.field
            if strip and column.startswith(strip):
                column = column[len(strip) :]
            self._lines.append((row, column, INVALID, problem.code, problem.message, identity))
        self.counts.invalid += 1

    def warning(
        self, row: int, column: str, code: str, message: str, identity: str | None = None
    ) -> None:
        """A row staged as it is, with something worth knowing (e.g. it repeats a guest)."""
        self._lines.append((row, column, WARNING, code, message, identity))

    def _emit(self, held_from: int | None = None) -> None:
        """Write the queued report lines in row order (checks run in several passes); lines
        of rows from held_from on stay queued (their batch is still being checked)."""
        if held_from is None:
            lines, self._lines = self._lines, []
        else:
            lines = [line for line in self._lines if line[0] < held_from]
            if not lines:
                return
            self._lines = [line for line in self._lines if line[0] >= held_from]
        lines.sort(key=lambda line: line[0])
        add = self.report.add
        for row, column, severity, code, message, identity in lines:
            add(row, column, code, message, severity=severity, identity=identity)

    def _held_from(self) -> int | None:
        return self._pending_row if self._pending is not None else None

    def _outcome(self, row: int, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes[row] = outcome

    def add(self, row: int, mapped: MappedRow) -> None:
        raise NotImplementedError

    def row_plan(self, mapping: FlatMapping) -> Callable[[Sequence[str]], Any] | None:
        """A plan compiled for a flat file's header that takes a row's cells to what
        add_planned stages, or None when the row needs the general path (every row goes
        through add when a stager has no plan, as here)."""
        return None

    def add_planned(self, row: int, planned: Any) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Stage the queued rows, then write their report lines."""
        try:
            self._flush()
        finally:
            self._emit(self._held_from())

    def _flush(self) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        self.flush()
        self._wait()
        self._emit()

    def close(self) -> None:
        """Wait for the writer thread (always call, also on errors: the caller's transaction
        must not end while a write is still running on its connection)."""
        try:
            self._wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    # The write of batch N runs on a helper thread while the main thread cleans batch N+1:
    # PostgreSQL works while Python works (the DB is about 40 % of an import's time).

    def _submit(
        self, write: Callable[..., WriteResult], *args: Any, first_row: int | None = None
    ) -> None:
        """Run write(cursor, *args) on the writer thread once the previous write is done.

        first_row: the batch's first source row, when the write reports problems of its rows
        (WriteResult.lines), so that their report lines are held until it is done.
        """
        self._wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-write")
        self._pending_row = first_row
        self._pending = self._executor.submit(self._run_write, write, *args)

    def _run_write(self, write: Callable[..., WriteResult], *args: Any) -> WriteResult:
        with self.writer_cursor() as cursor:
            return write(cursor, *args)

    def writer_cursor(self) -> psycopg.Cursor:
        """A cursor of the writer thread: server-side parameter binding, unlike Django's
        client-side cursors, so a batch's JSON parameter (json_rows) is sent as it is rather
        than escaped into the query text (measured: 0.45 -> 0.2 µs a row of it)."""
        return psycopg.Cursor(self.raw)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        result = pending.result()
        self.counts.created += result.created
        self.counts.updated += result.updated
        self.counts.unchanged += result.unchanged
        self.counts.invalid += result.invalid
        self.counts.bad += result.refused
        if result.refused and self.abort:
            self.writing = False
        self._lines.extend(result.lines)
        if self.outcomes is not None:
            for row, outcome in result.outcomes:
                self.outcomes[row] = outcome

    def _temp_name(self, base: str) -> str:
        Stager.temp_suffix += 1
        return f"imp_{base}_{Stager.temp_suffix}"

    def _copy(
        self,
        table: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        cursor: Any = None,
    ) -> None:
        self._copy_text(table, columns, map(copy_row, rows), cursor)

    def _copy_text(
        self,
        table: str,
        columns: Sequence[str],
        lines: Iterable[str],
        cursor: Any = None,
    ) -> None:
        """COPY rows already in COPY text format (copytext.copy_row), one per line."""
        cursor = cursor if cursor is not None else self.cursor
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for block in copy_blocks(lines):
                copy.write(block.encode())


@dataclass(slots=True)
class WriteResult:
    """What a batch write did, applied to the counts by the main thread."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Checks made on the writer thread: report lines of refused rows (and how many), of rows
    # staged with problems (and how many such rows) and warnings, and per-row outcomes.
    lines: list[ReportTuple] = field(default_factory=list)
    refused: int = 0
    invalid: int = 0
    outcomes: list[tuple[int, str]] = field(default_factory=list)

    def reject(
        self, row: int, column: str, code: str, message: str, identity: str | None = None
    ) -> None:
        self.lines.append((row, column, REFUSED, code, message, identity))
        self.refused += 1
        self.outcomes.append((row, "bad"))

    def invalid_row(
        self, row: int, problems: Iterable[Problem], identity: str | None = None
    ) -> None:
        for problem in problems:
            self.lines.append(
                (row, problem.field, INVALID, problem.code, problem.message, identity)
            )
        self.invalid += 1

    def warn(
        self, row: int, column: str, code: str, message: str, identity: str | None = None
    ) -> None:
        self.lines.append((row, column, WARNING, code, message, identity))
