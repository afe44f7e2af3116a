"""The column vocabulary of order files (cdp-batch-api.md 3.2): one order a row.

A flat file (CSV, XLSX) carries an order with its items on one row, the way a guest row carries
its identifiers: columns are the CDP field paths, with a number for each item of a list —

- the order: `referenceId`, `channel`, `pointOfSale`, `status`, `orderedAt`, `currencyCode`,
  `price`, `paymentType`, `cardType`, and `ext.<attribute>` for its extension;
- its contact: `contact.<field>` (`contact.firstName`, `contact.email`, ...),
  `contact.street` / `contact.phoneNumbers` (one cell, `;` or `|` between lines) or
  `contact.street.<n>`, and `contact.identifiers.<n>.provider|id|expiryDate`;
- its items: `orderItems.<n>.<field>` (`orderItems.0.name`, `orderItems.1.price`, ...) and
  `orderItems.<n>.ext.<attribute>`;
- its consumers: `consumers.<n>.<field>`, `consumers.<n>.identifiers.<m>.<key>` and
  `consumers.<n>.orderItems.<m>.referenceId` (the items the consumer consumes);
- `ref`: the record's UUID, as in every flat file.

Flight segments (airline vertical only) come from JSON sources only. JSON objects and batch
lines are CDP orders as they are. Why one row per order rather than a row per item: an order
is inserted once, whole (order items cannot be upserted, S-OITEM), so a row is exactly one
record, its problems are reported on one row, and a file's rows never depend on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from records.mapping.rows import (
    HEADERLESS_PROBLEM,
    MappedRow,
    MappingError,
    looks_like_data,
    parse_ref,
)
from records.rules.orders import CONSUMER_FIELDS, CONTACT_FIELDS, ORDER_FIELDS, ORDER_ITEM_FIELDS

__all__ = [
    "OrderFlatMapping",
    "compile_order_header",
    "known_order_columns",
    "map_order_object",
    "order_canonical_column",
]

MODE = "insert"  # the only mode orders are staged in (cdp-batch-api.md 2.1 matrix)
MAX_INDEX = 49  # orderItems.<n>, consumers.<n>, identifiers.<n>: n in 0..49

IDENTIFIER_KEYS: tuple[str, ...] = ("provider", "id", "expiryDate")
ORDER_SCALARS: tuple[str, ...] = tuple(
    k for k in ORDER_FIELDS if k not in ("contact", "orderItems", "consumers", "extensions")
)
ITEM_SCALARS: tuple[str, ...] = tuple(
    k for k in ORDER_ITEM_FIELDS if k not in ("extensions", "flightSegments")
)
CONTACT_LISTS: tuple[str, ...] = ("street", "phoneNumbers")
CONTACT_SCALARS: tuple[str, ...] = tuple(
    k for k in CONTACT_FIELDS if k not in ("identifiers", *CONTACT_LISTS)
)
CONSUMER_LISTS: tuple[str, ...] = ("phoneNumbers",)
CONSUMER_SCALARS: tuple[str, ...] = tuple(
    k for k in CONSUMER_FIELDS if k not in ("identifiers", "orderItems", *CONSUMER_LISTS)
)
EXTENSION = "ext"
# The columns a header must have: the order's identity at CDP, whom it belongs to, and its
# first item (the rest are reported per row, with every other problem of the row).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "referenceId",
    "orderedAt",
    "contact.identifiers.0.provider",
    "contact.identifiers.0.id",
    "orderItems.0.referenceId",
)

# A column as a path into the CDP order: names and list indexes, e.g.
# ("orderItems", 0, "extensions", 0, "roomType") for `orderItems.0.ext.roomType`.
Path = tuple[str | int, ...]


def known_order_columns() -> list[str]:
    """Column names an order file may use (templates with <n> / <attribute>)."""
    return [
        "ref",
        *ORDER_SCALARS,
        f"{EXTENSION}.<attribute>",
        *[f"contact.{k}" for k in CONTACT_SCALARS],
        *[f"contact.{k}" for k in CONTACT_LISTS],
        *[f"contact.{k}.<n>" for k in CONTACT_LISTS],
        *[f"contact.identifiers.<n>.{k}" for k in IDENTIFIER_KEYS],
        *[f"orderItems.<n>.{k}" for k in ITEM_SCALARS],
        f"orderItems.<n>.{EXTENSION}.<attribute>",
        *[f"consumers.<n>.{k}" for k in CONSUMER_SCALARS],
        *[f"consumers.<n>.{k}" for k in CONSUMER_LISTS],
        *[f"consumers.<n>.{k}.<n>" for k in CONSUMER_LISTS],
        *[f"consumers.<n>.identifiers.<n>.{k}" for k in IDENTIFIER_KEYS],
        "consumers.<n>.orderItems.<n>.referenceId",
    ]


def _name(segment: str, names: Sequence[str]) -> str | None:
    folded = segment.casefold()
    return next((name for name in names if name.casefold() == folded), None)


def _index(segment: str) -> int | None:
    if segment.isdigit() and int(segment) <= MAX_INDEX:
        return int(segment)
    return None


def _extension_path(rest: list[str]) -> Path | None:
    # `ext.<attribute>`: attribute names are kept as written (case matters at CDP).
    if len(rest) == 2 and rest[0].casefold() == EXTENSION and rest[1]:
        return ("extensions", 0, rest[1])
    return None


def _person_path(
    rest: list[str], scalars: Sequence[str], lists: Sequence[str], *, links: bool
) -> Path | None:
    """The path of a contact's or consumer's column below its prefix."""
    if not rest:
        return None
    head = rest[0]
    if len(rest) == 1:
        name = _name(head, (*scalars, *lists))
        return None if name is None else (name,)
    if len(rest) == 2:
        name, n = _name(head, lists), _index(rest[1])
        return None if name is None or n is None else (name, n)
    if len(rest) == 3:
        n = _index(rest[1])
        if n is None:
            return None
        if _name(head, ("identifiers",)):
            key = _name(rest[2], IDENTIFIER_KEYS)
            return None if key is None else ("identifiers", n, key)
        if links and _name(head, ("orderItems",)) and _name(rest[2], ("referenceId",)):
            return ("orderItems", n, "referenceId")
    return None


def order_path(header: str) -> Path | None:
    """The path of a known order column, in canonical spelling; None for an unknown one."""
    segments = header.strip().split(".")
    if len(segments) == 1:
        name = _name(segments[0], ("ref", *ORDER_SCALARS))
        return None if name is None else (name,)
    head, rest = segments[0], segments[1:]
    if head.casefold() == EXTENSION:
        return _extension_path(segments)
    if _name(head, ("contact",)):
        path = _person_path(rest, CONTACT_SCALARS, CONTACT_LISTS, links=False)
        return None if path is None else ("contact", *path)
    n = _index(rest[0])
    if n is None:
        return None
    if _name(head, ("orderItems",)):
        if len(rest) == 2:
            key = _name(rest[1], ITEM_SCALARS)
            return None if key is None else ("orderItems", n, key)
        path = _extension_path(rest[1:])
        return None if path is None else ("orderItems", n, *path)
    if _name(head, ("consumers",)):
        path = _person_path(rest[1:], CONSUMER_SCALARS, CONSUMER_LISTS, links=True)
        return None if path is None else ("consumers", n, *path)
    return None


def path_label(path: Path) -> str:
    """A path as its column name (`orderItems.0.ext.roomType`)."""
    parts = [str(p) for p in path]
    label = ".".join(parts)
    return label.replace("extensions.0.", f"{EXTENSION}.")


def order_canonical_column(name: str) -> str | None:
    """An order column as the convention writes it, or None when there is no such column."""
    path = order_path(name)
    return None if path is None else path_label(path)


@dataclass(slots=True)
class OrderFlatMapping:
    """A compiled order header: turns one row's cells into a MappedRow (one order)."""

    headers: list[str]
    columns: list[tuple[int, Path]]
    ref_col: int | None
    schema: str = "order"

    def to_row(self, cells: Sequence[str]) -> MappedRow:
        """Build the CDP-shaped order; empty cells are absent values."""
        tree: dict[Any, Any] = {}
        width = len(cells)
        for col, path in self.columns:
            cell = cells[col] if col < width else ""
            if cell and not cell.isspace():
                node = tree
                for segment in path[:-1]:
                    node = node.setdefault(segment, {})
                node[path[-1]] = cell
        value = _with_extensions(_as_lists(tree))
        ref = None
        if self.ref_col is not None and self.ref_col < width:
            ref = parse_ref(cells[self.ref_col].strip(), "ref")
        return MappedRow(value=value, ref=ref, mode=MODE)


def _as_lists(node: Any) -> Any:
    """Nodes keyed by list indexes become lists, in index order (gaps close up)."""
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(key, int) for key in node):
        return [_as_lists(node[key]) for key in sorted(node)]
    return {key: _as_lists(item) for key, item in node.items()}


def _with_extensions(value: dict[str, Any]) -> dict[str, Any]:
    """`ext.<attribute>` cells as the extension object CDP takes: name, key, attributes."""

    def groups(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"name": EXTENSION, "key": "default", **attrs} for attrs in items]

    if "extensions" in value:
        value["extensions"] = groups(value["extensions"])
    for item in value.get("orderItems", ()):
        if "extensions" in item:
            item["extensions"] = groups(item["extensions"])
    return value


def compile_order_header(
    headers: Sequence[str],
    *,
    ignore_unknown: bool,
    unknown_message: Callable[[list[str]], str],
) -> OrderFlatMapping:
    """Compile an order file's header; MappingError names every problem of it at once."""
    clean_headers = [h.strip() for h in headers]
    columns: list[tuple[int, Path]] = []
    ref_col: int | None = None
    seen: set[Path] = set()
    unknown: list[str] = []
    duplicates: list[str] = []
    for col, header in enumerate(clean_headers):
        if not header:
            continue
        path = order_path(header)
        if path is None:
            unknown.append(header)
            continue
        if path in seen:
            duplicates.append(path_label(path))
            continue
        seen.add(path)
        if path == ("ref",):
            ref_col = col
        else:
            columns.append((col, path))
    problems: list[str] = []
    if duplicates:
        names = ", ".join(f'"{d}"' for d in duplicates)
        problems.append(f"These columns appear more than once: {names}. Keep one of each.")
    if unknown and not ignore_unknown:
        if looks_like_data(clean_headers):
            raise MappingError(HEADERLESS_PROBLEM)
        problems.append(unknown_message(unknown))
    bare_and_numbered = sorted(
        {path_label(p) for p in seen if isinstance(p[-1], str)}
        & {path_label(p[:-1]) for p in seen if isinstance(p[-1], int)}
    )
    for name in bare_and_numbered:
        problems.append(
            f'Use either one "{name}" column or "{name}.0", "{name}.1", ... columns, not both.'
        )
    labels = {path_label(p) for p in seen}
    missing = [name for name in REQUIRED_COLUMNS if name not in labels]
    if missing:
        plural = "s" if len(missing) > 1 else ""
        problems.append(
            f"Missing required column{plural} for an order file: {', '.join(missing)}. "
            "See docs/orders.md."
        )
    if problems:
        raise MappingError(" ".join(problems), problems=problems)
    return OrderFlatMapping(headers=clean_headers, columns=columns, ref_col=ref_col)


def map_order_object(
    obj: Mapping[str, Any],
    *,
    ref: str | None,
    ignore_unknown: bool,
    unknown_message: Callable[[list[str]], str],
) -> MappedRow:
    """A CDP order object (the value of a batch line, or a JSON record) as a MappedRow.

    Unknown keys of the order itself make the file unreadable (MappingError), unless
    ignore_unknown drops them; unknown keys deeper down are the rules' (unknown_field).
    """
    known = frozenset(ORDER_FIELDS)
    extra = [key for key in obj if key not in known]
    if extra and not ignore_unknown:
        raise MappingError(unknown_message(extra))
    value = {key: item for key, item in obj.items() if key in known}
    return MappedRow(value=value, ref=ref, mode=MODE)
