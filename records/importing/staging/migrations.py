"""Staging guest migrations: matched on their two identities, so a re-import updates them."""

from __future__ import annotations

from typing import Any

from records.importing.staging.base import Stager, WriteResult
from records.mapping import MappedRow
from records.models import GuestMigration
from records.rules import clean_migration, identity_key
from records.selectors import live_batch_id_sql, live_batches_settle
from records.serializing import dump_value, problems_as_json, value_hash


class MigrationStager(Stager):
    """Guest migrations: INSERT ... ON CONFLICT (from_identity_key, to_identity_key) DO UPDATE,
    unless a live batch holds the staged one (then the row is refused, as for guests)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Updates staged migrations: a build must not select while this may still change them.
        live_batches_settle(model=GuestMigration)
        self.batch: list[tuple[Any, ...]] = []
        self.batch_refs: dict[str, int] = {}
        # (from key, to key) -> first row of this file: the same migration twice is one.
        self.seen: dict[tuple[str, str], int] = {}

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.t_migration = self._temp_name("migration")
        self.cursor.execute(
            f"""CREATE TEMP TABLE {self.t_migration} (
                    source_row integer, ref uuid, review_status text, validation_errors jsonb,
                    cdp_value text, value_hash text, migrate_from jsonb, migrate_to jsonb,
                    from_identity_key text, to_identity_key text
                ) ON COMMIT DROP"""
        )

    def add(self, row: int, mapped: MappedRow) -> None:
        value, problems = clean_migration(mapped.value, identity_providers=self.providers)
        if mapped.ref is not None:
            earlier = self.batch_refs.get(mapped.ref)
            if earlier is not None:
                self.bad(row, "ref", "duplicate_ref", f"Row {earlier} has the same ref.")
                return
            self.batch_refs[mapped.ref] = row
        keys = [
            identity_key(value[side]["identifiers"], identity_providers=self.providers)
            for side in ("migrateFrom", "migrateTo")
        ]
        if keys[0] is not None and keys[1] is not None:
            pair = (keys[0], keys[1])
            earlier = self.seen.setdefault(pair, row)
            if earlier != row:
                self.bad(
                    row,
                    "migrateFrom.identifiers",
                    "repeated_migration",
                    f"Row {earlier} of this file is the same migration (same two guests).",
                )
                return
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
                dump_value(value["migrateFrom"]["identifiers"]),
                dump_value(value["migrateTo"]["identifiers"]),
                keys[0],
                keys[1],
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
        if not self.writing:
            return
        self._submit(self._write, batch)

    def _write(self, cursor: Any, batch: list[tuple[Any, ...]]) -> WriteResult:
        """Check the rows against the staged migrations, then insert or update what changed."""
        result = WriteResult()
        pairs = [(r[8], r[9]) for r in batch if r[8] is not None and r[9] is not None]
        refs = [r[1] for r in batch if r[1] is not None]
        found: dict[tuple[str, str], tuple[str, int | None]] = {}
        owners: dict[str, tuple[str, str]] = {}
        if pairs:
            cursor.execute(
                f"""SELECT g.from_identity_key, g.to_identity_key, g.value_hash,
                           {live_batch_id_sql(model=GuestMigration, record="g.id")}
                      FROM records_guestmigration g
                      JOIN unnest(%s::text[], %s::text[]) AS p(f, t)
                        ON g.from_identity_key = p.f AND g.to_identity_key = p.t""",
                [[p[0] for p in pairs], [p[1] for p in pairs]],
            )
            found = {(f, t): (digest, held) for f, t, digest, held in cursor.fetchall()}
        if refs:
            cursor.execute(
                "SELECT ref::text, from_identity_key, to_identity_key"
                " FROM records_guestmigration WHERE ref = ANY(%s::uuid[])",
                [refs],
            )
            owners = {ref: (f, t) for ref, f, t in cursor.fetchall()}
        writes = []
        for item in batch:
            row, ref, pair = item[0], item[1], (item[8], item[9])
            if ref is not None and ref in owners and owners[ref] != pair:
                result.reject(row, "ref", "ref_in_use", "A staged guest migration has this ref.")
                continue
            existing = found.get(pair)
            if existing is not None and existing[0] == item[5]:
                result.unchanged += 1
                continue
            if existing is not None and existing[1] is not None:
                message = (
                    f"This migration is in batch {existing[1]}, which has not finished; "
                    "re-import it after the batch ends."
                )
                result.reject(row, "migrateFrom.identifiers", "locked", message)
                continue
            writes.append(item)
        if not writes:
            return result
        columns = (
            "source_row", "ref", "review_status", "validation_errors", "cdp_value",
            "value_hash", "migrate_from", "migrate_to", "from_identity_key", "to_identity_key",
        )  # fmt: skip
        cursor.execute(f"TRUNCATE {self.t_migration}")
        self._copy(self.t_migration, columns, writes, cursor)
        updates = ", ".join(
            f"{c} = EXCLUDED.{c}"
            for c in (
                "review_status", "validation_errors", "import_run_id", "source_row",
                "cdp_value", "value_hash", "migrate_from", "migrate_to",
            )
        )  # fmt: skip
        cursor.execute(
            f"""INSERT INTO records_guestmigration (
                    ref, mode, review_status, validation_errors, import_run_id, source_row,
                    cdp_value, value_hash, delivery_status, delivered_hash, migrate_from,
                    migrate_to, from_identity_key, to_identity_key, created_at, updated_at)
                SELECT COALESCE(ref, gen_random_uuid()), 'guest', review_status,
                       validation_errors, %s, source_row, cdp_value, value_hash, 'not_sent', '',
                       migrate_from, migrate_to, from_identity_key, to_identity_key, now(), now()
                  FROM {self.t_migration}
                ON CONFLICT (from_identity_key, to_identity_key) DO UPDATE SET {updates},
                       updated_at = now()
                RETURNING (xmax = 0)""",
            [self.import_run_id],
        )
        for (inserted,) in cursor.fetchall():
            if inserted:
                result.created += 1
            else:
                result.updated += 1
        return result
