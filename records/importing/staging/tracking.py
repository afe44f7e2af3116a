"""Staging tracking events: inserted; a rerun of the same run adds nothing twice."""

from __future__ import annotations

from typing import Any

from records.importing.staging.base import (
    TRACKING_TYPED,
    Stager,
    WriteResult,
    db_type,
    json_values,
)
from records.mapping import MappedRow
from records.models import TrackingEvent
from records.rules import clean_tracking, identity_key
from records.serializing import (
    UnstorableValue,
    dump_value,
    problems_as_json,
    tracking_fields_from_value,
    value_hash,
)


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
        typed = ", ".join(f"{c} {db_type(TrackingEvent, c)}" for c in TRACKING_TYPED)
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
            wanted, param = json_values(refs, "uuid")
            self.cursor.execute(
                f"SELECT ref::text FROM records_trackingevent WHERE ref = ANY({wanted})", [param]
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
