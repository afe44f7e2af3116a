"""The staging engine: cleaned rows -> PostgreSQL, in batches, through COPY.

One stager per schema. `add()` cleans a mapped row with the rules, finds what makes it bad
(cannot be stored, no identity, duplicate, locked, unknown guest) and queues it; every
IMPORT_BATCH_ROWS rows `flush()` writes the batch: COPY into a temporary table, then one
INSERT ... ON CONFLICT into the real table, then COPY of the children. Memory holds one batch.

The caller owns the transaction (all-or-nothing is a rollback). In abort mode the first bad
row stops the writing, but every later row is still checked, so the error report is complete.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import psycopg
from django.db import connection
from django.utils import timezone

from records.importing.copytext import copy_lines
from records.importing.report import ErrorReport
from records.mapping import ChildScope, MappedRow
from records.models import Guest, ImportRun, TrackingEvent
from records.rules import (
    Problem,
    clean_extension,
    clean_guest,
    clean_subscription,
    clean_tracking,
    identity_key,
    normalize_email,
)
from records.serializing import (
    GUEST_COLUMNS,
    TRACKING_COLUMNS,
    GuestChildren,
    UnstorableValue,
    dump_value,
    guest_children_from_value,
    guest_fields_from_value,
    problems_as_json,
    tracking_fields_from_value,
    value_hash,
)

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


def _db_type(model: type, attname: str) -> str:
    return model._meta.get_field(attname).db_type(connection)


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
    ) -> None:
        self.import_run_id = import_run_id
        self.abort = on_error == ImportRun.OnError.ABORT
        self.report = report
        self.batch_rows = max(batch_rows, 1)
        self.providers = list(identity_providers)
        self.counts = Counts()
        self.writing = True
        self.cursor = connection.cursor().cursor  # the raw psycopg cursor, same transaction
        # The psycopg connection itself: the writer thread opens its own cursors on it (the
        # same transaction; psycopg's connection lock serialises the statements).
        self.raw = connection.connection
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self._prepared = False
        self._lines: list[tuple[int, str, str, str]] = []
        # Per-row outcome, for the import-export preview (None when nobody listens).
        self.outcomes: dict[int, str] | None = None

    def bad(self, row: int, column: str, code: str, message: str) -> None:
        """A row that cannot be staged: reported, skipped, and in abort mode writing stops."""
        self._lines.append((row, column, code, message))
        if len(self._lines) >= 4 * self.batch_rows:
            self._emit()  # a file of nothing but bad rows must not fill memory
        self.counts.bad += 1
        if self.abort:
            self.writing = False
        self._outcome(row, "bad")

    def invalid(self, row: int, problems: Iterable[Problem], *, strip: str = "") -> None:
        """A row staged with problems: every problem goes to the report."""
        for problem in problems:
            column = problem.field
            if strip and column.startswith(strip):
                column = column[len(strip) :]
            self._lines.append((row, column, problem.code, problem.message))
        self.counts.invalid += 1

    def _emit(self) -> None:
        """Write the batch's report lines in row order (checks run in several passes)."""
        lines, self._lines = self._lines, []
        lines.sort(key=lambda line: line[0])
        for line in lines:
            self.report.add(*line)

    def _outcome(self, row: int, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes[row] = outcome

    def add(self, row: int, mapped: MappedRow) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Stage the queued rows, then write their report lines."""
        try:
            self._flush()
        finally:
            self._emit()

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

    def _submit(self, write: Callable[[Any], WriteResult], *args: Any) -> None:
        self._wait()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-write")
        self._pending = self._executor.submit(self._run_write, write, *args)

    def _run_write(self, write: Callable[..., WriteResult], *args: Any) -> WriteResult:
        with self.raw.cursor() as cursor:
            return write(cursor, *args)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        result = pending.result()
        self.counts.created += result.created
        self.counts.updated += result.updated
        self.counts.unchanged += result.unchanged
        for row, code, message in result.bad:
            self.bad(row, "identifiers" if code == "locked" else "", code, message)

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
        cursor = cursor if cursor is not None else self.cursor
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for block in copy_lines(rows):
                copy.write(block.encode())


@dataclass(slots=True)
class WriteResult:
    """What a batch write did, applied to the counts by the main thread."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (row, code, message)


# -- guests ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Guest:
    row: int
    key: str
    value: dict[str, Any]
    problems: list[Problem]
    fields: dict[str, Any]
    children: GuestChildren
    scope: ChildScope
    ref: str | None
    existing_id: int | None = None  # the staged guest it updates


@dataclass(slots=True)
class _Existing:
    id: int
    value_hash: str
    locked_by: int | None
    ref: str
    cdp_value: str
    # Never sent to CDP: its ref is referenced by no batch, so a batch line may replace it.
    ref_adoptable: bool


class GuestStager(Stager):
    """Guests: upsert on identity_key; children replaced as the row's scope says."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch: list[_Guest] = []
        self.batch_keys: dict[str, int] = {}
        self.batch_refs: dict[str, int] = {}

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.t_guest = self._temp_name("guest")
        self.t_seen = self._temp_name("seen")
        typed = ", ".join(f"{c} {_db_type(Guest, c)}" for c in GUEST_TYPED)
        self.cursor.execute(
            f"""CREATE TEMP TABLE {self.t_guest} (
                    source_row integer, identity_key text, ref uuid, review_status text,
                    validation_errors jsonb, cdp_value text, value_hash text, {typed}
                ) ON COMMIT DROP"""
        )
        # Every identity seen in this file so far, with its row: a guest twice in one file
        # is a bad row whatever the batch boundaries (kept in PostgreSQL, not in memory).
        self.cursor.execute(
            f"CREATE TEMP TABLE {self.t_seen} (identity_key text PRIMARY KEY, source_row integer)"
            " ON COMMIT DROP"
        )

    def add(self, row: int, mapped: MappedRow) -> None:
        value, problems = clean_guest(mapped.value, identity_providers=self.providers)
        key = identity_key(value.get("identifiers", ()), identity_providers=self.providers)
        if key is None:
            accepted = ", ".join(self.providers) or "none configured"
            self.bad(
                row,
                "identifiers",
                "no_identity",
                "The row has no identifier from an identity provider (accepted: "
                f"{accepted}), so it cannot be matched to a guest.",
            )
            return
        try:
            fields = guest_fields_from_value(value)
            children = guest_children_from_value(value)
        except UnstorableValue as exc:
            self.bad(row, exc.field, exc.code, exc.message)
            return
        earlier = self.batch_keys.get(key)
        if earlier is not None:
            self._duplicate(row, earlier)
            return
        if mapped.ref is not None:
            earlier = self.batch_refs.get(mapped.ref)
            if earlier is not None:
                self.bad(row, "ref", "duplicate_ref", f"Row {earlier} has the same ref.")
                return
            self.batch_refs[mapped.ref] = row
        self.batch_keys[key] = row
        self.batch.append(
            _Guest(row, key, value, problems, fields, children, mapped.scope, mapped.ref)
        )
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def _duplicate(self, row: int, earlier: int) -> None:
        self.bad(
            row,
            "identifiers",
            "duplicate_identity",
            f"The same guest (same identity) is already in row {earlier} of this file.",
        )

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        self.batch_keys = {}
        self.batch_refs = {}
        if not batch:
            return
        self._prepare()
        batch = self._drop_seen(batch)
        existing = self._existing([g.key for g in batch])
        batch = self._check_refs(batch)
        writes: list[tuple[_Guest, str, str, list[dict[str, str]]]] = []
        refs: list[tuple[int, str]] = []
        for guest in batch:
            found = existing.get(guest.key)
            merge = found is not None and _needs_merge(guest.scope) and found.cdp_value
            if merge and not self._merge(guest, found):
                continue
            text = dump_value(guest.value)
            digest = value_hash(text)
            errors = problems_as_json(guest.problems)
            new_ref = (
                found is not None
                and guest.ref is not None
                and guest.ref != found.ref
                and found.ref_adoptable
                and found.locked_by is None
            )
            if new_ref and digest == found.value_hash:
                # Same value under the file's ref (a batch line): only the ref changes.
                refs.append((found.id, guest.ref))
                self.counts.updated += 1
                if errors:
                    self.invalid(guest.row, guest.problems)
                self._outcome(guest.row, "update")
                continue
            if found is not None and digest == found.value_hash:
                self.counts.unchanged += 1
                if errors:
                    self.invalid(guest.row, guest.problems)
                self._outcome(guest.row, "unchanged")
                continue
            if found is not None and found.locked_by is not None:
                self.bad(guest.row, "identifiers", "locked", locked_message(found.locked_by))
                continue
            if errors:
                self.invalid(guest.row, guest.problems)
            self._outcome(guest.row, "update" if found is not None else "new")
            guest.existing_id = found.id if found is not None else None
            # The writer needs the text, columns and children only: let the value go now
            # (with a batch in flight on the writer thread, two batches live in memory).
            guest.value, guest.problems = {}, []
            writes.append((guest, text, digest, errors))
            if new_ref and found is not None:
                refs.append((found.id, guest.ref))
        if (writes or refs) and self.writing:
            self._submit(self._write, writes, refs)

    def _adopt_refs(self, cursor: Any, refs: list[tuple[int, str]]) -> None:
        """Give updated guests the ref of their batch line (losslessness), when no batch has
        used their old ref yet; a delivered guest keeps its ref for the audit trail."""
        cursor.execute(
            """UPDATE records_guest AS g SET ref = v.ref
                 FROM unnest(%s::bigint[], %s::uuid[]) AS v(id, ref)
                WHERE g.id = v.id AND g.delivery_status = 'not_sent' AND g.delivered_hash = ''
                  AND g.locked_by_batch_id IS NULL""",
            [[r[0] for r in refs], [r[1] for r in refs]],
        )

    def _drop_seen(self, batch: list[_Guest]) -> list[_Guest]:
        keys = [g.key for g in batch]
        rows = [g.row for g in batch]
        self.cursor.execute(
            f"""INSERT INTO {self.t_seen} (identity_key, source_row)
                SELECT * FROM unnest(%s::text[], %s::integer[])
                ON CONFLICT (identity_key) DO NOTHING RETURNING identity_key""",
            [keys, rows],
        )
        fresh = {r[0] for r in self.cursor.fetchall()}
        if len(fresh) == len(batch):
            return batch
        repeated = [k for k in keys if k not in fresh]
        self.cursor.execute(
            f"SELECT identity_key, source_row FROM {self.t_seen} WHERE identity_key = ANY(%s)",
            [repeated],
        )
        first_row = dict(self.cursor.fetchall())
        kept = []
        for guest in batch:
            if guest.key in fresh:
                kept.append(guest)
            else:
                self._duplicate(guest.row, first_row[guest.key])
        return kept

    def _existing(self, keys: list[str]) -> dict[str, _Existing]:
        self.cursor.execute(
            """SELECT identity_key, id, value_hash, locked_by_batch_id, ref::text, cdp_value,
                      delivery_status = 'not_sent' AND delivered_hash = ''
                 FROM records_guest WHERE identity_key = ANY(%s)""",
            [keys],
        )
        return {r[0]: _Existing(*r[1:]) for r in self.cursor.fetchall()}

    def _check_refs(self, batch: list[_Guest]) -> list[_Guest]:
        refs = [g.ref for g in batch if g.ref is not None]
        if not refs:
            return batch
        self._wait()  # refs of the previous batch must be in the table to be seen
        self.cursor.execute(
            "SELECT ref::text, identity_key FROM records_guest WHERE ref = ANY(%s::uuid[])",
            [refs],
        )
        owner = dict(self.cursor.fetchall())
        kept = []
        for guest in batch:
            other = owner.get(guest.ref) if guest.ref is not None else None
            if other is not None and other != guest.key:
                self.bad(
                    guest.row,
                    "ref",
                    "ref_in_use",
                    "This ref already belongs to another staged guest; refs are unique.",
                )
                continue
            kept.append(guest)
        return kept

    def _merge(self, guest: _Guest, found: _Existing) -> bool:
        """Give the row the children its file does not carry, kept from the staged guest."""
        old = orjson.loads(found.cdp_value)
        merged = dict(guest.value)
        if not guest.scope.subscriptions and old.get("subscriptions"):
            merged["subscriptions"] = old["subscriptions"]
        names = guest.scope.extension_groups
        if names is not None:
            kept = [g for g in old.get("extensions", ()) if g.get("name") not in names]
            if kept:
                groups = kept + list(guest.value.get("extensions", ()))
                merged["extensions"] = sorted(groups, key=lambda g: g.get("name", ""))
        if merged == guest.value:
            return True
        value, problems = clean_guest(merged, identity_providers=self.providers)
        try:
            guest.children = guest_children_from_value(value)
        except UnstorableValue as exc:
            self.bad(guest.row, exc.field, exc.code, exc.message)
            return False
        guest.value, guest.problems = value, problems
        return True

    def _write(
        self,
        cursor: Any,
        writes: list[tuple[_Guest, str, str, list[dict[str, str]]]],
        refs: list[tuple[int, str]],
    ) -> WriteResult:
        """COPY the batch into the temporary table, upsert it, then COPY the children.

        Runs on the writer thread with its own cursor: it touches no shared state, and
        reports back through its WriteResult.
        """
        result = WriteResult()
        if writes:
            self._write_guests(cursor, writes, result)
        if refs:
            self._adopt_refs(cursor, refs)
        return result

    def _write_guests(
        self,
        cursor: Any,
        writes: list[tuple[_Guest, str, str, list[dict[str, str]]]],
        result: WriteResult,
    ) -> None:
        new = [w for w in writes if w[0].existing_id is None]
        known = [w for w in writes if w[0].existing_id is not None]
        returned: dict[str, tuple[int, bool]] = {}
        if new:
            copied = self._copy_new(cursor, new)
            if copied is None:
                known += new  # another import inserted some of them meanwhile: upsert all
            else:
                returned.update(copied)
        if known:
            returned.update(self._upsert(cursor, known))
        updated_ids = [gid for gid, inserted in returned.values() if not inserted]
        if updated_ids:
            for table in ("records_identifier", "records_subscription", "records_extension"):
                cursor.execute(f"DELETE FROM {table} WHERE guest_id = ANY(%s)", [updated_ids])
        identifiers, subscriptions, extensions = [], [], []
        for guest, _text, _digest, _errors in writes:
            hit = returned.get(guest.key)
            if hit is None:
                # Locked by a batch between our check and the write (another transaction).
                result.bad.append((guest.row, "locked", locked_message(None)))
                continue
            gid, inserted = hit
            if inserted:
                result.created += 1
            else:
                result.updated += 1
            c = guest.children
            identifiers.extend((gid, *item) for item in c.identifiers)
            subscriptions.extend((gid, *item) for item in c.subscriptions)
            extensions.extend((gid, n, k, dump_value(a)) for n, k, a in c.extensions)
        if identifiers:
            self._copy(
                "records_identifier",
                ("guest_id", "position", "provider", "identifier", "expiry_date"),
                identifiers,
                cursor,
            )
        if subscriptions:
            self._copy(
                "records_subscription",
                ("guest_id", "position", "name", "point_of_sale", "channel", "status",
                 "effective_date"),
                subscriptions,
                cursor,
            )  # fmt: skip
        if extensions:
            self._copy(
                "records_extension",
                ("guest_id", "name", "key", "attributes"),
                extensions,
                cursor,
            )

    def _copy_new(
        self, cursor: Any, new: list[tuple[_Guest, str, str, list[dict[str, str]]]]
    ) -> dict[str, tuple[int, bool]] | None:
        """COPY guests no staged guest matched straight into the table (the fast path of an
        initial load); None when one was inserted by a concurrent import meanwhile."""
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('records_guest', 'id'))"
            " FROM generate_series(1, %s)",
            [len(new)],
        )
        ids = [r[0] for r in cursor.fetchall()]
        now = timezone.now()
        columns = (
            "id", "ref", "mode", "review_status", "validation_errors", "import_run_id",
            "source_row", "cdp_value", "value_hash", "delivery_status", "delivered_hash",
            "identity_key", *GUEST_TYPED, "created_at", "updated_at",
        )  # fmt: skip
        rows = (
            (
                gid,
                g.ref or str(uuid.uuid4()),
                "upsert",
                "invalid" if errors else "new",
                dump_value(errors),
                self.import_run_id,
                g.row,
                text,
                digest,
                "not_sent",
                "",
                g.key,
                *[g.fields[c] for c in GUEST_TYPED],
                now,
                now,
            )
            for gid, (g, text, digest, errors) in zip(ids, new, strict=True)
        )
        cursor.execute("SAVEPOINT import_new_guests")
        try:
            self._copy("records_guest", columns, rows, cursor)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT import_new_guests")
            return None
        cursor.execute("RELEASE SAVEPOINT import_new_guests")
        return {g.key: (gid, True) for gid, (g, _t, _d, _e) in zip(ids, new, strict=True)}

    def _upsert(
        self, cursor: Any, writes: list[tuple[_Guest, str, str, list[dict[str, str]]]]
    ) -> dict[str, tuple[int, bool]]:
        """COPY into the temporary table, then INSERT ... ON CONFLICT (identity_key) DO UPDATE
        (a guest locked by a batch meanwhile is left alone and not returned)."""
        columns = (
            "source_row",
            "identity_key",
            "ref",
            "review_status",
            "validation_errors",
            "cdp_value",
            "value_hash",
            *GUEST_TYPED,
        )
        cursor.execute(f"TRUNCATE {self.t_guest}")
        self._copy(
            self.t_guest,
            columns,
            (
                (
                    g.row,
                    g.key,
                    g.ref,
                    "invalid" if errors else "new",
                    dump_value(errors),
                    text,
                    digest,
                    *[g.fields[c] for c in GUEST_TYPED],
                )
                for g, text, digest, errors in writes
            ),
            cursor,
        )
        typed = ", ".join(GUEST_TYPED)
        updates = ", ".join(
            f"{c} = EXCLUDED.{c}"
            for c in (
                "review_status",
                "validation_errors",
                "import_run_id",
                "source_row",
                "cdp_value",
                "value_hash",
                *GUEST_TYPED,
            )
        )
        cursor.execute(
            f"""INSERT INTO records_guest (
                    ref, mode, review_status, validation_errors, import_run_id, source_row,
                    cdp_value, value_hash, delivery_status, delivered_hash, identity_key,
                    {typed}, created_at, updated_at)
                SELECT COALESCE(ref, gen_random_uuid()), 'upsert', review_status,
                       validation_errors, %s, source_row, cdp_value, value_hash, 'not_sent', '',
                       identity_key, {typed}, now(), now()
                  FROM {self.t_guest}
                ON CONFLICT (identity_key) DO UPDATE SET {updates}, updated_at = now()
                 WHERE records_guest.locked_by_batch_id IS NULL
                RETURNING identity_key, id, (xmax = 0)""",
            [self.import_run_id],
        )
        return {r[0]: (r[1], r[2]) for r in cursor.fetchall()}


def _needs_merge(scope: ChildScope) -> bool:
    return not scope.subscriptions or scope.extension_groups is not None


# -- tracking events -------------------------------------------------------------------------


class TrackingStager(Stager):
    """Tracking events: inserted; a rerun of the same run adds nothing twice
    (unique import_run + source_row, ON CONFLICT DO NOTHING)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch: list[tuple[Any, ...]] = []
        self.batch_refs: dict[str, int] = {}

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.t_event = self._temp_name("tracking")
        typed = ", ".join(f"{c} {_db_type(TrackingEvent, c)}" for c in TRACKING_TYPED)
        self.cursor.execute(
            f"""CREATE TEMP TABLE {self.t_event} (
                    source_row integer, ref uuid, review_status text, validation_errors jsonb,
                    cdp_value text, value_hash text, guest_identity_key text, {typed}
                ) ON COMMIT DROP"""
        )

    def add(self, row: int, mapped: MappedRow) -> None:
        value, problems = clean_tracking(mapped.value, identity_providers=self.providers)
        try:
            fields = tracking_fields_from_value(value)
        except UnstorableValue as exc:
            self.bad(row, exc.field, exc.code, exc.message)
            return
        if mapped.ref is not None:
            earlier = self.batch_refs.get(mapped.ref)
            if earlier is not None:
                self.bad(row, "ref", "duplicate_ref", f"Row {earlier} has the same ref.")
                return
            self.batch_refs[mapped.ref] = row
        key = identity_key(value.get("identifiers", ()), identity_providers=self.providers)
        text = dump_value(value)
        errors = problems_as_json(problems)
        if errors:
            self.invalid(row, problems)
        self._outcome(row, "new")
        self.batch.append(
            (
                row,
                mapped.ref,
                "invalid" if errors else "new",
                dump_value(errors),
                text,
                value_hash(text),
                key or "",
                *[
                    dump_value(fields[c]) if c in ("utms", "feedback", "identifiers") else fields[c]
                    for c in TRACKING_TYPED
                ],
            )
        )
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        self.batch_refs = {}
        if not batch:
            return
        self._prepare()
        refs = [r[1] for r in batch if r[1] is not None]
        if refs:
            self._wait()  # refs of the previous batch must be in the table to be seen
            self.cursor.execute(
                "SELECT ref::text FROM records_trackingevent WHERE ref = ANY(%s::uuid[])", [refs]
            )
            taken = {r[0] for r in self.cursor.fetchall()}
            if taken:
                kept = []
                for item in batch:
                    if item[1] in taken:
                        self.bad(
                            item[0], "ref", "ref_in_use", "A staged tracking event has this ref."
                        )
                    else:
                        kept.append(item)
                batch = kept
        if not batch or not self.writing:
            return
        self._submit(self._write, batch)

    def _write(self, cursor: Any, batch: list[tuple[Any, ...]]) -> WriteResult:
        """COPY into the temporary table, then insert what this run has not inserted yet."""
        columns = (
            "source_row",
            "ref",
            "review_status",
            "validation_errors",
            "cdp_value",
            "value_hash",
            "guest_identity_key",
            *TRACKING_TYPED,
        )
        cursor.execute(f"TRUNCATE {self.t_event}")
        self._copy(self.t_event, columns, batch, cursor)
        typed = ", ".join(TRACKING_TYPED)
        cursor.execute(
            f"""INSERT INTO records_trackingevent (
                    ref, mode, review_status, validation_errors, import_run_id, source_row,
                    cdp_value, value_hash, delivery_status, delivered_hash, guest_identity_key,
                    {typed}, created_at, updated_at)
                SELECT COALESCE(ref, gen_random_uuid()), 'insert', review_status,
                       validation_errors, %s, source_row, cdp_value, value_hash, 'not_sent', '',
                       guest_identity_key, {typed}, now(), now()
                  FROM {self.t_event}
                ON CONFLICT (import_run_id, source_row) DO NOTHING""",
            [self.import_run_id],
        )
        return WriteResult(created=cursor.rowcount, unchanged=len(batch) - cursor.rowcount)


# -- child files (subscriptions, extensions) -------------------------------------------------


@dataclass(slots=True)
class _Child:
    row: int
    link: dict[str, str]
    items: list[Any]  # subscriptions: [(name, pos, channel, status, effective)]; ext: groups
    problems: list[Problem] = field(default_factory=list)
    guest_id: int | None = None


class ChildStager(Stager):
    """Rows that attach to a staged guest, found by identifier (provider + id) or email."""

    strip = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch: list[_Child] = []

    def add(self, row: int, mapped: MappedRow) -> None:
        if mapped.link is None:
            self.bad(
                row,
                "identifiers.0.id",
                "no_guest_link",
                "The row names no guest: fill identifiers.0.provider and identifiers.0.id, "
                "or email.",
            )
            return
        child = self.prepare_row(row, mapped)
        if child is None:
            return
        self.batch.append(child)
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def prepare_row(self, row: int, mapped: MappedRow) -> _Child | None:
        raise NotImplementedError

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        if not batch:
            return
        batch = self._resolve(batch)
        if not batch:
            return
        touched = self.apply(batch)
        if touched and self.writing:
            from records.services.imports import guests_refresh_values

            guests_refresh_values(guest_ids=touched)

    def apply(self, batch: list[_Child]) -> set[int]:
        raise NotImplementedError

    def _resolve(self, batch: list[_Child]) -> list[_Child]:
        """Find each row's guest; rows whose guest is unknown, ambiguous or locked are bad."""
        by_ident: dict[tuple[str, str], list[_Child]] = defaultdict(list)
        by_email: dict[str, list[_Child]] = defaultdict(list)
        for child in batch:
            link = child.link
            if "provider" in link:
                provider = link["provider"].strip()
                key = identity_key([link], identity_providers=[provider])
                if key is None:
                    self.bad(
                        child.row, "identifiers.0.id", "no_guest_link", "The identifier is empty."
                    )
                    continue
                by_ident[(provider, key[len(provider) + 1 :])].append(child)
            else:
                by_email[normalize_email(link["email"])].append(child)
        found: dict[Any, set[tuple[int, int | None]]] = defaultdict(set)
        if by_ident:
            providers, ids = zip(*by_ident, strict=True)
            self.cursor.execute(
                """SELECT i.provider, i.identifier, g.id, g.locked_by_batch_id
                     FROM records_identifier i
                     JOIN unnest(%s::text[], %s::text[]) AS v(provider, identifier)
                       ON i.provider = v.provider AND i.identifier = v.identifier
                     JOIN records_guest g ON g.id = i.guest_id""",
                [list(providers), list(ids)],
            )
            for provider, ident, gid, locked in self.cursor.fetchall():
                found[(provider, ident)].add((gid, locked))
        if by_email:
            self.cursor.execute(
                "SELECT email, id, locked_by_batch_id FROM records_guest WHERE email = ANY(%s)",
                [list(by_email)],
            )
            for email, gid, locked in self.cursor.fetchall():
                found[email].add((gid, locked))
        kept: list[_Child] = []
        groups = [(k, v, "identifiers.0.id", "identifier") for k, v in by_ident.items()] + [
            (k, v, "email", "email address") for k, v in by_email.items()
        ]
        for key, children, column, what in groups:
            guests = found.get(key, set())
            for child in children:
                if not guests:
                    self.bad(
                        child.row,
                        column,
                        "guest_not_staged",
                        f"No staged guest has this {what}; import the guest first.",
                    )
                elif len(guests) > 1:
                    self.bad(
                        child.row,
                        column,
                        "ambiguous_guest",
                        f"{len(guests)} staged guests have this {what}; link the row by an "
                        "identity identifier instead.",
                    )
                else:
                    ((gid, locked),) = guests
                    if locked is not None:
                        self.bad(child.row, column, "locked", locked_message(locked))
                    else:
                        child.guest_id = gid
                        kept.append(child)
        kept.sort(key=lambda c: c.row)
        return kept


class SubscriptionStager(ChildStager):
    """One subscription a row: it replaces the guest's subscription with the same name, point
    of sale and channel, or is added after the guest's others. Other subscriptions are kept."""

    strip = "subscriptions.0."

    def prepare_row(self, row: int, mapped: MappedRow) -> _Child | None:
        value, problems = clean_subscription(mapped.value, index=0)
        try:
            children = guest_children_from_value({"subscriptions": [value]})
        except UnstorableValue as exc:
            self.bad(row, exc.field.removeprefix(self.strip), exc.code, exc.message)
            return None
        return _Child(row, mapped.link or {}, [children.subscriptions[0][1:]], problems)

    def apply(self, batch: list[_Child]) -> set[int]:
        ids = sorted({c.guest_id for c in batch if c.guest_id is not None})
        self.cursor.execute(
            """SELECT guest_id, position, name, point_of_sale, channel, status, effective_date
                 FROM records_subscription WHERE guest_id = ANY(%s)""",
            [ids],
        )
        current: dict[int, dict[tuple[str, str, str], tuple[int, str, datetime | None]]] = (
            defaultdict(dict)
        )
        next_position: dict[int, int] = defaultdict(int)
        for gid, position, name, pos, channel, status, effective in self.cursor.fetchall():
            current[gid][(name, pos, channel)] = (position, status, effective)
            next_position[gid] = max(next_position[gid], position + 1)
        changes: dict[tuple[int, tuple[str, str, str]], tuple[int, str, datetime | None]] = {}
        for child in batch:
            gid = child.guest_id
            assert gid is not None
            name, pos, channel, status, effective = child.items[0]
            natural = (name, pos, channel)
            had = current[gid].get(natural)
            if child.problems:
                self.invalid(child.row, child.problems, strip=self.strip)
            if had is not None and had[1:] == (status, effective):
                self.counts.unchanged += 1
                self._outcome(child.row, "unchanged")
                continue
            if had is None:
                position = next_position[gid]
                next_position[gid] += 1
                self.counts.created += 1
                self._outcome(child.row, "new")
            else:
                position = had[0]
                self.counts.updated += 1
                self._outcome(child.row, "update")
            current[gid][natural] = (position, status, effective)
            changes[(gid, natural)] = (position, status, effective)
        if not changes or not self.writing:
            return set()
        keys = list(changes)
        self.cursor.execute(
            """DELETE FROM records_subscription s
                USING unnest(%s::bigint[], %s::integer[]) AS v(guest_id, position)
                WHERE s.guest_id = v.guest_id AND s.position = v.position""",
            [[k[0] for k in keys], [changes[k][0] for k in keys]],
        )
        self._copy(
            "records_subscription",
            ("guest_id", "position", "name", "point_of_sale", "channel", "status",
             "effective_date"),
            (
                (gid, p, *natural, status, eff)
                for (gid, natural), (p, status, eff) in changes.items()
            ),
        )  # fmt: skip
        return {gid for gid, _ in keys}


class ExtensionStager(ChildStager):
    """Extension groups: each group in a row replaces the guest's group of that name (CDP
    overwrites a group as a whole); the guest's other groups are kept."""

    def prepare_row(self, row: int, mapped: MappedRow) -> _Child | None:
        groups = []
        problems: list[Problem] = []
        raw_groups = mapped.value.get("extensions") or []
        for index, raw in enumerate(raw_groups):
            group, found = clean_extension(raw, index=index)
            problems.extend(found)
            if len(group) > 2:  # name and key alone: nothing to set
                groups.append(group)
        try:
            children = guest_children_from_value({"extensions": groups})
        except UnstorableValue as exc:
            self.bad(row, exc.field, exc.code, exc.message)
            return None
        return _Child(row, mapped.link or {}, list(children.extensions), problems)

    def apply(self, batch: list[_Child]) -> set[int]:
        ids = sorted({c.guest_id for c in batch if c.guest_id is not None})
        self.cursor.execute(
            """SELECT guest_id, name, key, attributes
                 FROM records_extension WHERE guest_id = ANY(%s)""",
            [ids],
        )
        current: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {
            # Django registers a text loader for jsonb on its connections; decode here.
            (gid, name): (key, orjson.loads(attrs) if isinstance(attrs, str | bytes) else attrs)
            for gid, name, key, attrs in self.cursor.fetchall()
        }
        changes: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
        for child in batch:
            gid = child.guest_id
            assert gid is not None
            if child.problems:
                self.invalid(child.row, child.problems)
            outcome = "unchanged"
            for name, key, attrs in child.items:
                had = current.get((gid, name))
                if had is not None and had == (key, attrs):
                    continue
                outcome = "new" if had is None and outcome != "update" else "update"
                current[(gid, name)] = changes[(gid, name)] = (key, attrs)
            self._outcome(child.row, outcome)
            if outcome == "unchanged":
                self.counts.unchanged += 1
            elif outcome == "new":
                self.counts.created += 1
            else:
                self.counts.updated += 1
        if not changes or not self.writing:
            return set()
        keys = list(changes)
        self.cursor.execute(
            """DELETE FROM records_extension e
                USING unnest(%s::bigint[], %s::text[]) AS v(guest_id, name)
                WHERE e.guest_id = v.guest_id AND e.name = v.name""",
            [[k[0] for k in keys], [k[1] for k in keys]],
        )
        self._copy(
            "records_extension",
            ("guest_id", "name", "key", "attributes"),
            ((gid, name, key, dump_value(attrs)) for (gid, name), (key, attrs) in changes.items()),
        )
        return {gid for gid, _ in keys}


STAGERS: dict[str, type[Stager]] = {
    "guest": GuestStager,
    "tracking": TrackingStager,
    "subscription": SubscriptionStager,
    "extension": ExtensionStager,
}


def stager_for(schema: str, **kwargs: Any) -> Stager:
    return STAGERS[schema](**kwargs)
