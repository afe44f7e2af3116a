"""What a mapped source row is, and the errors of mapping one (shared by every schema's
column vocabulary: records.mapping.columns, records.mapping.orders)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL_CHILDREN",
    "HEADERLESS_PROBLEM",
    "ChildScope",
    "MappedRow",
    "MappingError",
    "RowError",
    "header_label",
    "looks_like_data",
    "looks_like_value",
    "parse_ref",
]


class MappingError(ValueError):
    """The file's columns (or a JSON object's keys) cannot be imported; nothing is.

    `problems` lists each problem as its own sentence (the message joins them).
    """

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems) or [message]


class RowError(ValueError):
    """One row cannot be staged (a bad row); `column` names the column or field."""

    def __init__(self, column: str, code: str, message: str) -> None:
        super().__init__(message)
        self.column = column
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ChildScope:
    """Which children of an existing guest a guest row replaces (the rest are kept).

    identifiers are always replaced (they carry the identity); subscriptions only when the
    file has subscription columns (or the JSON object a `subscriptions` key); extension groups
    by name (`None`: all groups, as a JSON object with an `extensions` key says).
    """

    subscriptions: bool
    extension_groups: frozenset[str] | None


ALL_CHILDREN = ChildScope(subscriptions=True, extension_groups=None)


@dataclass(slots=True)
class MappedRow:
    """A source row as CDP-shaped data, ready for the rules.

    value: the guest / tracking value, or for a subscription file one subscription, for an
    extension file a list of extension groups. link: for child files, {"provider", "id"} or
    {"email"} naming the guest. ref/mode: from a batch line or a `ref` column.
    """

    value: dict[str, Any]
    ref: str | None = None
    mode: str | None = None
    link: dict[str, str] | None = None
    scope: ChildScope = ALL_CHILDREN


# A header cell that looks like a value (an address, a phone number, a date): the file has
# probably no header row, and its "column names" are a person's data, never repeated.
_VALUE_LIKE = re.compile(r"[^@\s]+@[^@\s]+|[+\d][\d\s./:()-]*|\d{4}-\d\d-\d\d.*")
HEADERLESS_PROBLEM = (
    "The first row looks like data, not column names: add a header row (or, for a sheet, "
    "give the header row). Nothing of the row is repeated here."
)


def looks_like_value(cell: str) -> bool:
    return bool(_VALUE_LIKE.fullmatch(cell.strip()))


def looks_like_data(header: Sequence[str]) -> bool:
    """Whether a "header" is a data row: at least half its cells look like values."""
    cells = [h for h in header if h and h.strip()]
    return bool(cells) and sum(map(looks_like_value, cells)) * 2 >= len(cells)


def header_label(cell: str) -> str:
    """A header cell as a message may quote it (never a value from a headerless file)."""
    return "(a value, not a column name)" if looks_like_value(cell) else f'"{cell.strip()[:60]}"'


def parse_ref(raw: Any, column: str) -> str | None:
    if raw in (None, ""):
        return None
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        raise RowError(column, "invalid_ref", "ref must be a UUID.") from None
