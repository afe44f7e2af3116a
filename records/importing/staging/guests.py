"""Staging guests: upsert on identity_key, children replaced as the row's scope says."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from django.utils import timezone

from records.importing.copytext import NULL, copy_field, copy_row, escape
from records.importing.staging.base import (
    GUEST_TYPED,
    Stager,
    WriteResult,
    db_type,
    json_rows,
    json_values,
    live_batch_of,
    locked_message,
    rows_from_json,
)
from records.importing.staging.guest_plan import GuestRowPlan, Planned, guest_row_plan
from records.mapping import ALL_CHILDREN, ChildScope, FlatMapping, MappedRow
from records.models import Guest
from records.rules import (
    Problem,
    clean_guest,
    identifier_in_use,
    identity_key,
    insert_at_cdp_problem,
)
from records.rules.modes import GUEST_CREATE, GUEST_UPSERT, guest_at_cdp_sql
from records.selectors import live_batches_settle
from records.serializing import (
    GUEST_COLUMNS,
    GuestChildren,
    dump_value,
    guest_children_from_value,
    guest_fields_from_value,
    problems_as_json,
    value_hash,
)


@dataclass(slots=True)
class _Guest:
    row: int
    key: str | None  # None: no identity (staged invalid, matched to no staged guest)
    value: dict[str, Any]
    problems: list[Problem]
    typed: str  # the typed columns (GUEST_TYPED) as COPY text
    children: _ChildLines
    scope: ChildScope
    ref: str | None
    # The envelope mode (records.rules.modes): the row's `mode` column or the import's option.
    mode: str = GUEST_UPSERT
    existing_id: int | None = None  # the staged guest it updates
    # The value's canonical text, its hash and the problems as stored: made by the main
    # thread (the writer thread, which waits on PostgreSQL, is the import's critical path).
    digest: str = ""
    errors: list[dict[str, str]] = field(default_factory=list)
    line: str = ""  # the _LINE_COLUMNS as COPY text
    # The value's canonical text when a merge with the staged guest may read it again (the
    # value itself is let go: a batch of dicts kept alive made the cyclic garbage collector
    # walk them again and again, measured ~50 µs a row; strings and tuples of strings it
    # leaves alone).
    text: str = ""
    # Earlier rows of this file with the same identity, which this (later) row replaced.
    repeats: tuple[int, ...] = ()
    # Its identifiers of known providers: (position, provider, id).
    idents: tuple[tuple[int, str, str], ...] = ()
    # Problems the writer's checks found (also in `problems`; a merge keeps them).
    found: tuple[Problem, ...] = ()

    def add_problems(self, problems: list[Problem]) -> None:
        """Problems found by the writer's checks: the row is staged invalid (the value, and
        so the rest of its line, is unchanged)."""
        self.found = (*self.found, *problems)
        self.problems = [*self.problems, *problems]
        self.errors = problems_as_json(self.problems)
        rest = self.line.split("\t", 2)[2]  # after review_status and validation_errors
        self.line = copy_row(("invalid", dump_value(self.errors))) + "\t" + rest

    def serialize(self) -> None:
        text = dump_value(self.value)
        self.value = {}
        self.text = text if _needs_merge(self.scope) else ""
        self.digest = value_hash(text)
        if not self.problems:  # nearly every row
            self.errors = []
            key = NULL if self.key is None else escape(self.key)
            self.line = (
                f"new\t[]\t{self.row}\t{escape(text)}\t{self.digest}\t{key}\t{self.mode}\t"
                + self.typed
            )
            return
        self.errors = problems_as_json(self.problems)
        self.line = (
            copy_row(
                (
                    "invalid",
                    dump_value(self.errors),
                    self.row,
                    text,
                    self.digest,
                    self.key,
                    self.mode,
                )
            )
            + "\t"
            + self.typed
        )


# The columns of _Guest.line, the part of a guest's COPY row known before the write.
_LINE_COLUMNS = (
    "review_status", "validation_errors", "source_row", "cdp_value", "value_hash",
    "identity_key", "mode", *GUEST_TYPED,
)  # fmt: skip


# A guest's identifier, subscription and extension rows as COPY text after the guest_id
# column, one text per table ("\t...\n\t..."; "" for none): formatted by the main thread
# while the writer thread waits on PostgreSQL, so the writer only prefixes the id
# (_with_guest_id). One string rather than a list: nothing for the garbage collector to walk.
_ChildLines = tuple[str, str, str]


def _child_lines(children: GuestChildren) -> _ChildLines:
    return (
        "\n".join(["\t" + copy_row(item) for item in children.identifiers]),
        "\n".join(["\t" + copy_row(item) for item in children.subscriptions]),
        "\n".join(["\t" + copy_row((n, k, dump_value(a))) for n, k, a in children.extensions]),
    )


def _with_guest_id(prefix: str, lines: str) -> str:
    # A line break inside a value is escaped in COPY text, so each one starts a row.
    return prefix + lines.replace("\n", "\n" + prefix)


# The typed columns of a valid guest as COPY text, straight from its canonical value: the
# rules wrote every text, date and date-time in a form PostgreSQL reads as it is (a CDP date,
# "1985-12-24T00:00Z", is that day; a CDP date-time is ISO 8601), so the per-field converters
# of records.serializing (which also take the values of invalid rows) are not needed. The
# stored columns are the same either way (tests/records/test_importing.py checks it).
_TEXT_KINDS = {"text": 0, "list": 1, "date": 2, "datetime": 3}
_TYPED_SPECS: tuple[tuple[str, int, str], ...] = tuple(
    (
        key,
        _TEXT_KINDS[kind],
        "customer" if key == "guestType" else {"text": "", "list": "{}"}.get(kind, NULL),
    )
    for key, (_column, kind) in GUEST_COLUMNS.items()
)


def _valid_typed_text(value: dict[str, Any]) -> str:
    get = value.get
    out = []
    for key, kind, absent in _TYPED_SPECS:
        item = get(key)
        if item is None:
            out.append(absent)
        elif kind == 0:
            out.append(escape(item))
        elif kind == 1:
            out.append(copy_field(item))
        elif kind == 2:
            out.append(item[:10])  # the day of a CDP date
        else:
            out.append(item)
    return "\t".join(out)


def _valid_child_lines(value: dict[str, Any]) -> _ChildLines:
    """_child_lines for a valid guest (its children have every required field)."""
    identifiers = "\n".join(
        [
            f"\t{i}\t{escape(item['provider'])}\t{escape(item['id'])}\t"
            f"{item.get('expiryDate') or NULL}"
            for i, item in enumerate(value.get("identifiers", ()))
        ]
    )
    subscriptions = "\n".join(
        [
            f"\t{i}\t{escape(item['name'])}\t{escape(item['pointOfSale'])}\t{item['channel']}\t"
            f"{item['status']}\t{item.get('effectiveDate') or NULL}"
            for i, item in enumerate(value.get("subscriptions", ()))
        ]
    )
    extensions = "\n".join(
        [
            f"\t{escape(group['name'])}\t{escape(group['key'])}\t"
            + escape(dump_value({k: v for k, v in group.items() if k != "name" and k != "key"}))
            for group in value.get("extensions", ())
        ]
    )
    return identifiers, subscriptions, extensions


@dataclass(slots=True)
class _Existing:
    id: int
    value_hash: str
    locked_by: int | None
    ref: str
    cdp_value: str
    # Never sent to CDP: its ref is referenced by no batch, so a batch line may replace it.
    ref_adoptable: bool
    # Its stored problems (JSON text): a row with the same value but other problems (the
    # rules' data changed since, e.g. a provider was added) is written too.
    errors_json: str
    mode: str
    # CDP has (or may have) it: an insert-mode row for it is invalid (records.rules.modes).
    at_cdp: bool

    def has_errors(self, errors: list[dict[str, str]]) -> bool:
        return orjson.loads(self.errors_json) == errors


# The identity key and the _Existing fields of a staged guest `g`.
_EXISTING_COLUMNS = f"""g.identity_key, g.id, g.value_hash, {live_batch_of("g")}, g.ref::text,
    g.cdp_value, g.delivery_status = 'not_sent' AND g.delivered_hash = '',
    g.validation_errors::text, g.mode, {guest_at_cdp_sql("g")}"""


class GuestStager(Stager):
    """Guests: upsert on identity_key; children replaced as the row's scope says."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Updates existing guests: a build must not select while this transaction may still
        # change what it would take (the build then waits for the import to commit).
        live_batches_settle(model=Guest)
        self.batch: list[_Guest] = []
        # identity key / ref -> index in self.batch
        self.batch_keys: dict[str, int] = {}
        self.batch_refs: dict[str, int] = {}
        # (provider, id) of the batch's known-provider identifiers -> (identity key, row)
        self.batch_idents: dict[tuple[str, str], tuple[str, int]] = {}
        self.known_providers = frozenset(self.providers)
        # Which children the rows of the file's header replace (set with its row plan).
        self.plan_scope = ALL_CHILDREN

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.t_guest = self._temp_name("guest")
        self.t_seen = self._temp_name("seen")
        typed = ", ".join(f"{c} {db_type(Guest, c)}" for c in GUEST_TYPED)
        self.cursor.execute(
            f"""CREATE TEMP TABLE {self.t_guest} (
                    source_row integer, identity_key text, ref uuid, review_status text,
                    validation_errors jsonb, cdp_value text, value_hash text, mode text, {typed}
                ) ON COMMIT DROP"""
        )
        # Every identity seen in this file so far, with its first row: a guest repeated in one
        # file is reported whatever the batch boundaries (kept in PostgreSQL, not in memory).
        self.cursor.execute(
            f"CREATE TEMP TABLE {self.t_seen} (identity_key text PRIMARY KEY, source_row integer)"
            " ON COMMIT DROP"
        )

    def row_plan(self, mapping: FlatMapping) -> GuestRowPlan | None:
        if mapping.mode_col is not None:
            return None  # a mode per row: the rows take the general path, which reads it
        self.plan_scope = mapping.scope
        return guest_row_plan(mapping, self.providers)

    def add_planned(self, row: int, planned: Planned) -> None:
        """A row the header's plan took to its canonical value and typed columns (no
        problems)."""
        value, key, ref, typed = planned
        self._stage(
            row, value, [], key, ref, self.plan_scope, self.default_mode or GUEST_UPSERT, typed
        )

    def add(self, row: int, mapped: MappedRow) -> None:
        value, problems = clean_guest(mapped.value, identity_providers=self.providers)
        # No identity: clean_guest reported it (missing_identifier); the row is staged as
        # invalid for a steward to complete, under no key (it matches no staged guest).
        key = identity_key(value.get("identifiers", ()), identity_providers=self.providers)
        mode = mapped.mode or self.default_mode or GUEST_UPSERT
        self._stage(row, value, problems, key, mapped.ref, mapped.scope, mode)

    def _stage(
        self,
        row: int,
        value: dict[str, Any],
        problems: list[Problem],
        key: str | None,
        ref: str | None,
        scope: ChildScope,
        mode: str,
        typed: str | None = None,
    ) -> None:
        index = self.batch_keys.get(key) if key is not None else None
        if ref is not None:
            other = self.batch_refs.get(ref)
            if other is not None and other != index:
                earlier = self.batch[other].row
                self.bad(row, "ref", "duplicate_ref", f"Row {earlier} has the same ref.", key)
                return
        idents = self._known_identifiers(row, key, value, problems) if key is not None else ()
        if problems:
            fields = guest_fields_from_value(value)
            typed = copy_row([fields[c] for c in GUEST_TYPED])
            children = _child_lines(guest_children_from_value(value))
        else:  # nearly every row: the value's text is already what the columns take
            if typed is None:
                typed = _valid_typed_text(value)
            children = _valid_child_lines(value)
        guest = _Guest(row, key, value, problems, typed, children, scope, ref, mode)
        guest.idents = idents
        guest.serialize()
        if index is None:
            index = len(self.batch)
            self.batch.append(guest)
            if key is not None:
                self.batch_keys[key] = index
        else:
            # The same guest again in this batch: the later row wins, as a re-import would.
            earlier = self.batch[index]
            self.warning(row, "identifiers", "repeated_guest", _repeat_message(earlier.row), key)
            guest.repeats = (*earlier.repeats, earlier.row)
            if guest.ref is None:
                guest.ref = earlier.ref
            elif earlier.ref is not None and earlier.ref != guest.ref:
                del self.batch_refs[earlier.ref]
            self.batch[index] = guest
        if guest.ref is not None:
            self.batch_refs[guest.ref] = index
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def _known_identifiers(
        self, row: int, key: str, value: dict[str, Any], problems: list[Problem]
    ) -> tuple[tuple[int, str, str], ...]:
        """The row's identifiers of known providers; one that another guest of this batch
        has is a problem (CDP would resolve the two guests to one profile). The writer checks
        them against the staged guests (_check_shared_identifiers)."""
        idents = []
        known = self.known_providers
        for position, item in enumerate(value.get("identifiers", ())):
            provider, ident = item.get("provider"), item.get("id")
            if provider not in known or not ident:
                continue
            idents.append((position, provider, ident))
            other = self.batch_idents.setdefault((provider, ident), (key, row))
            if other[0] != key:
                where = f"the guest of row {other[1]} of this file"
                problems.append(identifier_in_use(f"identifiers.{position}.id", where))
        return tuple(idents)

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        self.batch_keys = {}
        self.batch_refs = {}
        self.batch_idents = {}
        if not batch:
            return
        self._prepare()
        # The checks against the table (repeats in the file, staged guests, refs) and the
        # write run on the writer thread: the connection is busy with the previous write
        # anyway, and the main thread goes on cleaning the next batch meanwhile.
        # (min: a row replaced by a later repeat leaves that later row in its place)
        self._submit(self._check_and_write, batch, first_row=min(g.row for g in batch))

    def _check_and_write(self, cursor: Any, batch: list[_Guest]) -> WriteResult:
        """Check a batch against the table and write what changed (on the writer thread:
        touches no shared state, reports through its WriteResult)."""
        result = WriteResult()
        self._note_repeats(cursor, batch, result)
        keys = [g.key for g in batch if g.key is not None]
        existing = self._existing(keys)
        if len(existing) < len(keys):
            existing.update(
                self._adopt_identityless(cursor, [k for k in keys if k not in existing])
            )
        batch = self._check_refs(cursor, batch, result)
        self._check_shared_identifiers(cursor, batch)
        writes: list[_Guest] = []
        refs: list[tuple[int, str]] = []
        for guest in batch:
            found = existing.get(guest.key) if guest.key is not None else None
            # The earlier rows it replaced count as updates of the guest (as a re-import).
            result.updated += len(guest.repeats)
            if guest.mode == GUEST_CREATE and found is not None and found.at_cdp:
                guest.add_problems([insert_at_cdp_problem()])
            merge = found is not None and _needs_merge(guest.scope) and found.cdp_value
            if merge:
                self._merge(guest, found)
            digest, errors = guest.digest, guest.errors
            new_ref = (
                found is not None
                and guest.ref is not None
                and guest.ref != found.ref
                and found.ref_adoptable
                and found.locked_by is None
            )
            same = (
                found is not None
                and digest == found.value_hash
                and found.has_errors(errors)
                and found.mode == guest.mode
            )
            if new_ref and same:
                # Same value under the file's ref (a batch line): only the ref changes.
                refs.append((found.id, guest.ref))
                result.updated += 1
                if errors:
                    result.invalid_row(guest.row, guest.problems, guest.key)
                result.outcomes.append((guest.row, "update"))
                continue
            if same:
                result.unchanged += 1
                if errors:
                    result.invalid_row(guest.row, guest.problems, guest.key)
                result.outcomes.append((guest.row, "unchanged"))
                continue
            if found is not None and found.locked_by is not None:
                _reject_locked(result, guest, found.locked_by)
                continue
            if errors:
                result.invalid_row(guest.row, guest.problems, guest.key)
            result.outcomes.append((guest.row, "update" if found is not None else "new"))
            guest.existing_id = found.id if found is not None else None
            # The writer needs the text, columns and children only: let the value go now
            # (with a batch in flight on the writer thread, two batches live in memory).
            guest.problems, guest.text = [], ""
            writes.append(guest)
            if new_ref and found is not None:
                refs.append((found.id, guest.ref))
        # In abort mode a bad row stops the writing (the transaction is rolled back anyway).
        writing = self.writing and not (self.abort and result.refused)
        if writes and writing:
            self._write_guests(cursor, writes, result)
        if refs and writing:
            self._adopt_refs(cursor, refs)
        return result

    def _adopt_refs(self, cursor: Any, refs: list[tuple[int, str]]) -> None:
        """Give updated guests the ref of their batch line (losslessness), when no batch has
        used their old ref yet; a delivered guest keeps its ref for the audit trail."""
        cursor.execute(
            f"""UPDATE records_guest AS g SET ref = v.ref
                 FROM {rows_from_json("v", ("id", "bigint"), ("ref", "uuid"))}
                WHERE g.id = v.id AND g.delivery_status = 'not_sent' AND g.delivered_hash = ''
                  AND {live_batch_of("g")} IS NULL""",
            [json_rows(refs)],
        )

    def _note_repeats(self, cursor: Any, batch: list[_Guest], result: WriteResult) -> None:
        """Warn of guests an earlier batch of this file staged already (this later row
        updates them: the check against the table finds them staged)."""
        keyed = [g for g in batch if g.key is not None]
        if not keyed:
            return
        seen = json_rows([(g.key, g.row) for g in keyed])
        batch_rows = rows_from_json("b", ("identity_key", "text"), ("source_row", "integer"))
        cursor.execute(
            f"""INSERT INTO {self.t_seen} (identity_key, source_row)
                SELECT * FROM {batch_rows}
                ON CONFLICT (identity_key) DO NOTHING""",
            [seen],
        )
        if cursor.rowcount == len(keyed):
            return  # the usual case: no key came back over the wire
        # Keys are unique within a batch, so a key whose recorded row is another row was
        # seen in an earlier batch.
        cursor.execute(
            f"""SELECT s.identity_key, s.source_row
                  FROM {batch_rows}
                  JOIN {self.t_seen} AS s ON s.identity_key = b.identity_key
                 WHERE s.source_row <> b.source_row""",
            [seen],
        )
        first_row = dict(cursor.fetchall())
        for guest in keyed:
            if guest.key in first_row:
                result.warn(guest.row, "identifiers", "repeated_guest",
                            _repeat_message(first_row[guest.key]), guest.key)  # fmt: skip

    def _existing(self, keys: list[str]) -> dict[str, _Existing]:
        # Called on the writer thread: a cursor of its own (the connection serialises).
        wanted, param = json_values(keys, "text")
        with self.writer_cursor() as cursor:
            cursor.execute(
                f"""SELECT {_EXISTING_COLUMNS} FROM records_guest g
                     WHERE g.identity_key = ANY({wanted})""",
                [param],
            )
            return {r[0]: _Existing(*r[1:]) for r in cursor.fetchall()}

    def _adopt_identityless(self, cursor: Any, keys: list[str]) -> dict[str, _Existing]:
        """Give staged guests without identity the key a row now has for one of their
        identifiers, so that the row updates them rather than staging the guest twice.

        A guest staged while its only identifier's provider was unknown (staged invalid, no
        key) becomes identifiable once the provider is added; the re-import of its file must
        find it. One index probe answers "are there any such guests" for most imports.
        """
        cursor.execute("SELECT EXISTS (SELECT 1 FROM records_guest WHERE identity_key IS NULL)")
        if not cursor.fetchone()[0]:
            return {}
        wanted = json_rows([(key, *key.split(":", 1)) for key in keys])
        keyed = rows_from_json("w", ("key", "text"), ("provider", "text"), ("identifier", "text"))
        cursor.execute(
            f"""WITH candidate AS (
                    SELECT g.id, w.key
                      FROM {keyed}
                      JOIN records_identifier i
                        ON i.provider = w.provider AND i.identifier = w.identifier
                      JOIN records_guest g ON g.id = i.guest_id
                     WHERE g.identity_key IS NULL AND {live_batch_of("g")} IS NULL),
                -- one guest per key (the unique index), then one key per guest
                per_key AS (SELECT DISTINCT ON (key) key, id FROM candidate ORDER BY key, id),
                hit AS (SELECT DISTINCT ON (id) id, key FROM per_key ORDER BY id, key)
                UPDATE records_guest AS g SET identity_key = hit.key
                  FROM hit WHERE g.id = hit.id
             RETURNING {_EXISTING_COLUMNS}""",
            [wanted],
        )
        return {key: _Existing(*rest) for key, *rest in cursor.fetchall()}

    def _check_shared_identifiers(self, cursor: Any, batch: list[_Guest]) -> None:
        """A row whose known-provider identifier belongs to another staged guest is invalid,
        named by that guest's ref: CDP would resolve both to one profile and the later one
        would overwrite the other's data (no silent identity merges)."""
        wanted = [
            (guest.row, position, provider, ident, guest.key)
            for guest in batch
            for position, provider, ident in guest.idents
        ]
        if not wanted:
            return
        columns = (("row", "integer"), ("position", "integer"), ("provider", "text"),
                   ("identifier", "text"), ("key", "text"))  # fmt: skip
        cursor.execute(
            f"""SELECT w.row, w.position, g.ref::text
                 FROM {rows_from_json("w", *columns)}
                 JOIN records_identifier i
                   ON i.provider = w.provider AND i.identifier = w.identifier
                 JOIN records_guest g ON g.id = i.guest_id
                WHERE g.identity_key IS DISTINCT FROM w.key""",
            [json_rows(wanted)],
        )
        found: dict[int, list[Problem]] = {}
        for row, position, ref in cursor.fetchall():
            problem = identifier_in_use(f"identifiers.{position}.id", f"staged guest {ref}")
            found.setdefault(row, []).append(problem)
        if not found:
            return
        for guest in batch:
            problems = found.get(guest.row)
            if problems is not None:
                guest.add_problems(problems)

    def _check_refs(self, cursor: Any, batch: list[_Guest], result: WriteResult) -> list[_Guest]:
        refs = [g.ref for g in batch if g.ref is not None]
        if not refs:
            return batch
        # The previous batch's refs are in the table: its write ran before this one, on the
        # same (single) writer thread.
        wanted, param = json_values(refs, "uuid")
        cursor.execute(
            f"SELECT ref::text, identity_key FROM records_guest WHERE ref = ANY({wanted})",
            [param],
        )
        owner = dict(cursor.fetchall())
        kept = []
        for guest in batch:
            # A guest without identity owns its ref alone: no later row can be matched to it.
            if guest.ref in owner and (guest.key is None or owner[guest.ref] != guest.key):
                message = "This ref already belongs to another staged guest; refs are unique."
                _reject(result, guest, "ref", "ref_in_use", message)
                continue
            kept.append(guest)
        return kept

    def _merge(self, guest: _Guest, found: _Existing) -> None:
        """Give the row the children its file does not carry, kept from the staged guest."""
        old = orjson.loads(found.cdp_value)
        current = orjson.loads(guest.text)
        merged = dict(current)
        if not guest.scope.subscriptions and old.get("subscriptions"):
            merged["subscriptions"] = old["subscriptions"]
        names = guest.scope.extension_groups
        if names is not None:
            kept = [g for g in old.get("extensions", ()) if g.get("name") not in names]
            if kept:
                groups = kept + list(current.get("extensions", ()))
                merged["extensions"] = sorted(groups, key=lambda g: g.get("name", ""))
        if merged == current:
            return
        value, problems = clean_guest(merged, identity_providers=self.providers)
        guest.children = _child_lines(guest_children_from_value(value))
        guest.value, guest.problems = value, problems + list(guest.found)
        guest.serialize()

    def _write_guests(
        self,
        cursor: Any,
        writes: list[_Guest],
        result: WriteResult,
    ) -> None:
        new = [g for g in writes if g.existing_id is None]
        known = [g for g in writes if g.existing_id is not None]
        returned: dict[int, tuple[int, bool]] = {}  # source row -> (guest id, inserted)
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
            ids, param = json_values(updated_ids, "bigint")
            for table in ("records_identifier", "records_subscription", "records_extension"):
                cursor.execute(f"DELETE FROM {table} WHERE guest_id = ANY({ids})", [param])
        identifiers, subscriptions, extensions = [], [], []
        for guest in writes:
            hit = returned.get(guest.row)
            if hit is None:
                # Locked by a batch between our check and the write (another transaction).
                _reject_locked(result, guest, None)
                continue
            gid, inserted = hit
            if inserted:
                result.created += 1
            else:
                result.updated += 1
            ident_lines, sub_lines, ext_lines = guest.children
            prefix = str(gid)
            if ident_lines:
                identifiers.append(_with_guest_id(prefix, ident_lines))
            if sub_lines:
                subscriptions.append(_with_guest_id(prefix, sub_lines))
            if ext_lines:
                extensions.append(_with_guest_id(prefix, ext_lines))
        if identifiers:
            self._copy_text(
                "records_identifier",
                ("guest_id", "position", "provider", "identifier", "expiry_date"),
                identifiers,
                cursor,
            )
        if subscriptions:
            self._copy_text(
                "records_subscription",
                ("guest_id", "position", "name", "point_of_sale", "channel", "status",
                 "effective_date"),
                subscriptions,
                cursor,
            )  # fmt: skip
        if extensions:
            self._copy_text(
                "records_extension",
                ("guest_id", "name", "key", "attributes"),
                extensions,
                cursor,
            )

    def _copy_new(self, cursor: Any, new: list[_Guest]) -> dict[int, tuple[int, bool]] | None:
        """COPY guests no staged guest matched straight into the table (the fast path of an
        initial load); None when one was inserted by a concurrent import meanwhile."""
        # One text of the ids (as text: they only prefix COPY lines), not a row per id.
        cursor.execute(
            "SELECT string_agg(nextval(pg_get_serial_sequence('records_guest', 'id'))::text,"
            " ',') FROM generate_series(1, %s)",
            [len(new)],
        )
        ids = cursor.fetchone()[0].split(",")
        now = copy_row((timezone.now(),))
        middle = f"{copy_row((self.import_run_id,))}\tnot_sent\t\t"
        tail = f"\t{now}\t{now}"
        columns = (
            "import_run_id", "delivery_status", "delivered_hash", *_LINE_COLUMNS,
            "created_at", "updated_at",
        )  # fmt: skip
        # A guest without a ref from its file gets one from the column's default
        # (gen_random_uuid(), in C, as the rows arrive), so those rows leave the column out.
        with_ref = [(gid, g) for gid, g in zip(ids, new, strict=True) if g.ref]
        without = [(gid, g) for gid, g in zip(ids, new, strict=True) if not g.ref]
        cursor.execute("SAVEPOINT import_new_guests")
        try:
            if without:
                lines = (f"{gid}\t{middle}{g.line}{tail}" for gid, g in without)
                self._copy_text("records_guest", ("id", *columns), lines, cursor)
            if with_ref:
                lines = (f"{gid}\t{g.ref}\t{middle}{g.line}{tail}" for gid, g in with_ref)
                self._copy_text("records_guest", ("id", "ref", *columns), lines, cursor)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT import_new_guests")
            return None
        cursor.execute("RELEASE SAVEPOINT import_new_guests")
        return {g.row: (gid, True) for gid, g in zip(ids, new, strict=True)}

    def _upsert(self, cursor: Any, writes: list[_Guest]) -> dict[int, tuple[int, bool]]:
        """COPY into the temporary table, then INSERT ... ON CONFLICT (identity_key) DO UPDATE
        (a guest locked by a batch meanwhile is left alone and not returned)."""
        cursor.execute(f"TRUNCATE {self.t_guest}")
        self._copy_text(
            self.t_guest,
            ("ref", *_LINE_COLUMNS),
            (copy_row((g.ref,)) + "\t" + g.line for g in writes),
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
                "mode",
                *GUEST_TYPED,
            )
        )
        cursor.execute(
            f"""INSERT INTO records_guest (
                    ref, mode, review_status, validation_errors, import_run_id, source_row,
                    cdp_value, value_hash, delivery_status, delivered_hash, identity_key,
                    {typed}, created_at, updated_at)
                SELECT COALESCE(ref, gen_random_uuid()), mode, review_status,
                       validation_errors, %s, source_row, cdp_value, value_hash, 'not_sent', '',
                       identity_key, {typed}, now(), now()
                  FROM {self.t_guest}
                ON CONFLICT (identity_key) DO UPDATE SET {updates}, updated_at = now()
                 WHERE {live_batch_of("records_guest")} IS NULL
                RETURNING source_row, id, (xmax = 0)""",
            [self.import_run_id],
        )
        return {r[0]: (r[1], r[2]) for r in cursor.fetchall()}


def _repeat_message(earlier: int) -> str:
    return (
        f"The same guest (same identity) is in row {earlier} of this file; this later row "
        "updates it."
    )


def _reject(result: WriteResult, guest: _Guest, column: str, code: str, message: str) -> None:
    """Refuse a guest's row and the earlier rows of the file it replaced."""
    for row in (*guest.repeats, guest.row):
        result.reject(row, column, code, message, guest.key)


def _reject_locked(result: WriteResult, guest: _Guest, batch_id: int | None) -> None:
    """A guest in a live batch cannot change (the loop counted its repeats as updates)."""
    _reject(result, guest, "identifiers", "locked", locked_message(batch_id))
    result.updated -= len(guest.repeats)


def _needs_merge(scope: ChildScope) -> bool:
    return not scope.subscriptions or scope.extension_groups is not None
