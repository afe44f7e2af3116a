"""Staging orders: matched by CDP's identity of an order (reference id + ordered-at time).

An order of the file that is new is inserted with its items; one already staged is updated
(the later row wins) and its items replaced; an unchanged one is left alone. What cannot be
staged: an order a live batch holds, a ref another order has. An order CDP already has whose
content changed is staged as invalid (records.rules.order_redelivery_problems): a second insert
would be a second order at CDP, for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from records.importing.staging.base import Stager, WriteResult, db_type
from records.mapping import MappedRow
from records.models import Order, OrderItem
from records.rules import (
    Problem,
    clean_order,
    identity_key,
    order_key,
    order_redelivery_problems,
)
from records.selectors import live_batch_id_sql
from records.serializing import (
    ORDER_COLUMNS,
    ORDER_ITEM_COLUMNS,
    UnstorableValue,
    dump_value,
    order_fields_from_value,
    order_items_from_value,
    problems_as_json,
    value_hash,
)

ORDER_TYPED: tuple[str, ...] = tuple(column for column, _ in ORDER_COLUMNS.values())
ITEM_TYPED: tuple[str, ...] = (
    "position",
    *(column for column, _ in ORDER_ITEM_COLUMNS.values()),
)
_JSON_ORDER = frozenset(c for c, kind in ORDER_COLUMNS.values() if kind in ("object", "array"))
_JSON_ITEM = frozenset(c for c, kind in ORDER_ITEM_COLUMNS.values() if kind == "array")


@dataclass(slots=True)
class _Order:
    row: int
    ref: str | None
    key: str | None
    contact_key: str
    text: str
    digest: str
    problems: list[Problem]
    fields: dict[str, Any]
    items: list[dict[str, Any]]


@dataclass(slots=True)
class _Staged:
    """An order of the table with the key of a row of the file."""

    id: int
    value_hash: str
    delivered_hash: str
    ref: str
    live_batch: int | None


def order_locked_message(batch_id: int) -> str:
    return f"This order is in batch {batch_id}, which has not finished; re-import it after it ends."


class OrderStager(Stager):
    """Orders with their items: inserted, or matched by order key and updated."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch: list[_Order] = []
        self.batch_keys: dict[str, int] = {}  # order key -> index in self.batch
        self.batch_refs: dict[str, int] = {}  # ref -> source row

    def _prepare(self) -> None:
        if self._prepared:
            return
        self._prepared = True
        self.t_order = self._temp_name("order")
        self.t_item = self._temp_name("orderitem")
        typed = ", ".join(f"{c} {db_type(Order, c)}" for c in ORDER_TYPED)
        self.cursor.execute(
            f"""CREATE TEMP TABLE {self.t_order} (
                    source_row integer, ref uuid, order_key text, review_status text,
                    validation_errors jsonb, cdp_value text, value_hash text,
                    contact_identity_key text, {typed}
                ) ON COMMIT DROP"""
        )

    def add(self, row: int, mapped: MappedRow) -> None:
        value, problems = clean_order(mapped.value, identity_providers=self.providers)
        try:
            fields = order_fields_from_value(value)
            items = order_items_from_value(value)
        except UnstorableValue as exc:
            self.bad(row, exc.field, exc.code, exc.message)
            return
        if mapped.ref is not None:
            earlier = self.batch_refs.get(mapped.ref)
            if earlier is not None:
                self.bad(row, "ref", "duplicate_ref", f"Row {earlier} has the same ref.")
                return
            self.batch_refs[mapped.ref] = row
        text = dump_value(value)
        contact = value.get("contact", {})
        contact_key = identity_key(
            contact.get("identifiers", ()), identity_providers=self.providers
        )
        order = _Order(
            row=row,
            ref=mapped.ref,
            key=order_key(value),
            contact_key=contact_key or "",
            text=text,
            digest=value_hash(text),
            problems=problems,
            fields=fields,
            items=items,
        )
        self._outcome(row, "new")
        earlier_index = self.batch_keys.get(order.key) if order.key is not None else None
        if earlier_index is not None:
            # One order twice in a file: the later row wins, as for guests (DESIGN.md 2.1).
            earlier = self.batch[earlier_index]
            self.warning(
                row,
                "referenceId",
                "repeated_order",
                f"Row {earlier.row} has the same order (reference id and ordered-at time); this "
                "later row replaces it.",
            )
            if order.ref is None:
                order.ref = earlier.ref
            self.batch[earlier_index] = order
            return
        if order.key is not None:
            self.batch_keys[order.key] = len(self.batch)
        self.batch.append(order)
        if len(self.batch) >= self.batch_rows:
            self.flush()

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        self.batch_keys = {}
        self.batch_refs = {}
        if not batch:
            return
        self._prepare()
        # The checks read what earlier batches wrote: they run on the writer thread, after it.
        self._submit(self._write, batch, first_row=min(o.row for o in batch))

    def _write(self, cursor: Any, batch: list[_Order]) -> WriteResult:
        result = WriteResult()
        staged = self._staged(cursor, [o.key for o in batch if o.key is not None])
        taken = self._refs_taken(cursor, batch)
        kept: list[tuple[_Order, _Staged | None]] = []
        for order in sorted(batch, key=lambda o: o.row):
            found = staged.get(order.key) if order.key is not None else None
            if order.ref is not None and taken.get(order.ref, order.key) != order.key:
                result.reject(order.row, "ref", "ref_in_use", "Another staged order has this ref.")
                continue
            if found is not None and found.live_batch is not None:
                result.reject(
                    order.row, "referenceId", "locked", order_locked_message(found.live_batch)
                )
                continue
            delivered = found.delivered_hash if found is not None else ""
            order.problems += order_redelivery_problems(
                value_hash=order.digest, delivered_hash=delivered
            )
            if order.problems:
                result.invalid_row(order.row, order.problems)
            if found is not None and found.value_hash == order.digest:
                result.unchanged += 1
                continue
            if found is not None and order.ref is not None and order.ref != found.ref:
                result.warn(
                    order.row,
                    "ref",
                    "ref_kept",
                    "The staged order keeps its own ref (batches and CDP's log may name it); "
                    "this row's ref is not used.",
                )
            kept.append((order, found))
        if not kept or not self.writing or (self.abort and result.refused):
            return result
        self._insert(cursor, kept, result)
        return result

    def _staged(self, cursor: Any, keys: list[str]) -> dict[str, _Staged]:
        if not keys:
            return {}
        cursor.execute(
            f"""SELECT o.order_key, o.id, o.value_hash, o.delivered_hash, o.ref::text,
                       {live_batch_id_sql(model=Order, record="o.id")}
                  FROM records_order o WHERE o.order_key = ANY(%s)""",
            [keys],
        )
        return {row[0]: _Staged(*row[1:]) for row in cursor.fetchall()}

    def _refs_taken(self, cursor: Any, batch: list[_Order]) -> dict[str, str | None]:
        """The refs of the file's rows that staged orders have: ref -> that order's key."""
        refs = [o.ref for o in batch if o.ref is not None]
        if not refs:
            return {}
        cursor.execute(
            "SELECT ref::text, order_key FROM records_order WHERE ref = ANY(%s::uuid[])", [refs]
        )
        return dict(cursor.fetchall())

    def _insert(
        self, cursor: Any, kept: list[tuple[_Order, _Staged | None]], result: WriteResult
    ) -> None:
        """COPY the orders into the temporary table, one INSERT ... ON CONFLICT (order_key) into
        the table, then the items of every order written (those of updated orders replaced)."""
        columns = (
            "source_row", "ref", "order_key", "review_status", "validation_errors", "cdp_value",
            "value_hash", "contact_identity_key", *ORDER_TYPED,
        )  # fmt: skip
        rows = []
        for order, _found in kept:
            errors = problems_as_json(order.problems)
            rows.append(
                (
                    order.row,
                    order.ref,
                    order.key,
                    "invalid" if errors else "new",
                    dump_value(errors),
                    order.text,
                    order.digest,
                    order.contact_key,
                    *[
                        dump_value(order.fields[c]) if c in _JSON_ORDER else order.fields[c]
                        for c in ORDER_TYPED
                    ],
                )
            )
        cursor.execute(f"TRUNCATE {self.t_order}")
        self._copy(self.t_order, columns, rows, cursor)
        typed = ", ".join(ORDER_TYPED)
        updates = ", ".join(
            f"{c} = EXCLUDED.{c}"
            for c in (
                "review_status", "validation_errors", "import_run_id", "source_row", "cdp_value",
                "value_hash", "contact_identity_key", *ORDER_TYPED,
            )
        )  # fmt: skip
        cursor.execute(
            f"""INSERT INTO records_order (
                    ref, mode, review_status, validation_errors, import_run_id, source_row,
                    cdp_value, value_hash, delivery_status, delivered_hash, order_key,
                    contact_identity_key, {typed}, created_at, updated_at)
                SELECT COALESCE(ref, gen_random_uuid()), 'insert', review_status,
                       validation_errors, %s, source_row, cdp_value, value_hash, 'not_sent', '',
                       order_key, contact_identity_key, {typed}, now(), now()
                  FROM {self.t_order}
                ON CONFLICT (order_key) DO UPDATE SET {updates}, updated_at = now()
                RETURNING id, source_row, (xmax = 0)""",
            [self.import_run_id],
        )
        written = {source_row: (pk, inserted) for pk, source_row, inserted in cursor.fetchall()}
        replaced = [pk for pk, inserted in written.values() if not inserted]
        if replaced:
            cursor.execute("DELETE FROM records_orderitem WHERE order_id = ANY(%s)", [replaced])
        items = []
        for order, _found in kept:
            pk, inserted = written[order.row]
            if inserted:
                result.created += 1
            else:
                result.updated += 1
            for item in order.items:
                items.append(
                    (
                        pk,
                        *[dump_value(item[c]) if c in _JSON_ITEM else item[c] for c in ITEM_TYPED],
                    )
                )
        if items:
            self._copy(OrderItem._meta.db_table, ("order_id", *ITEM_TYPED), items, cursor)
