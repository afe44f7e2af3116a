"""Rows -> PostgreSQL COPY text format, formatted in bulk.

psycopg's `Copy.write_row` adapts every value through its dumper machinery, which costs more
than the rest of the import's Python work per guest; the import's values are few simple types
(text, int, bool, date, datetime, UUID text, lists of text, JSON text), so they are formatted
here and written to COPY in large blocks. Format: PostgreSQL docs, "COPY ... File Formats /
Text Format" (tab-separated, \\N for NULL, backslash escapes for \\ \\t \\n \\r).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"
BLOCK_ROWS = 2000


def _array_item(item: str) -> str:
    # Array literal quoting (before COPY escaping): "..." with \\ and \" inside.
    return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'


def escape(text: str) -> str:
    """Text in COPY text format."""
    # Four memchr scans beat str.translate by 10x on text that needs no escaping (nearly all).
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_ESCAPES)
    return text


def copy_field(value: Any) -> str:
    """One value in COPY text format."""
    if value is None:
        return NULL
    kind = type(value)
    if kind is str:
        return escape(value)
    if kind is int:
        return str(value)
    if kind is bool:
        return "t" if value else "f"
    if kind is datetime or kind is date:
        return value.isoformat()
    if kind is list or kind is tuple:
        if any(item is None for item in value):
            raise TypeError("NULL array items are not supported here.")
        return escape("{" + ",".join(_array_item(str(item)) for item in value) + "}")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return escape(str(value))


def copy_array(items: Sequence[str]) -> str:
    """A list of text as an array in COPY text format (copy_field of a list, faster for the
    usual items that need no array quoting)."""
    if not items:
        return "{}"
    for item in items:
        if '"' in item or "\\" in item:
            return copy_field(items)
    return escape('{"' + '","'.join(items) + '"}')


def copy_row(row: Sequence[Any]) -> str:
    """One row (or a run of its columns) in COPY text format, without the newline."""
    return "\t".join([escape(v) if type(v) is str else copy_field(v) for v in row])


def copy_lines(rows: Iterable[Sequence[Any]]) -> Iterable[str]:
    """Blocks of COPY text, BLOCK_ROWS rows each."""
    return copy_blocks(map(copy_row, rows))


def copy_blocks(lines: Iterable[str]) -> Iterable[str]:
    """Blocks of BLOCK_ROWS lines already in COPY text format (see copy_row)."""
    block: list[str] = []
    for line in lines:
        block.append(line)
        if len(block) >= BLOCK_ROWS:
            yield "\n".join(block) + "\n"
            block = []
    if block:
        yield "\n".join(block) + "\n"
