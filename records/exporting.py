"""Exporting staged records as a flat file in the column layout the import reads back.

A steward exports the invalid guests, fixes them in a spreadsheet and imports the file again:
the columns are records.mapping.columns' convention (flatten_value is the inverse of its
FlatMapping.to_row) and the `ref` column keeps each record's identity in the audit trail.
Two passes over the rows (the columns of the union of the values, then the cells), so
memory holds one chunk of rows and the header, never the whole selection.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import orjson
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from records.mapping.columns import column_order, flatten_value

Rows = Callable[[], Iterable[tuple[str, str]]]  # a fresh iterator of (ref, cdp_value) each call


def export_header(schema: str, rows: Rows) -> list[str]:
    """The columns of every row's value, in the convention's order, `ref` first."""
    columns: set[str] = set()
    for _ref, text in rows():
        if text:
            columns.update(flatten_value(schema, orjson.loads(text)))
    return ["ref", *sorted(columns - {"ref"}, key=column_order(schema))]


def export_lines(schema: str, header: list[str], rows: Rows) -> Iterator[list[str]]:
    """Each row's cells under the header (the header line first)."""
    yield header
    for ref, text in rows():
        cells = flatten_value(schema, orjson.loads(text)) if text else {}
        cells["ref"] = str(ref)
        yield [cells.get(column, "") for column in header]


def csv_chunks(lines: Iterable[list[str]]) -> Iterator[str]:
    """CSV text, one line per chunk; a UTF-8 BOM first so spreadsheet programs read UTF-8."""
    buffer = io.StringIO()  # one line at a time: what a streaming response sends
    writer = csv.writer(buffer, lineterminator="\r\n")
    yield "\ufeff"
    for line in lines:
        writer.writerow(line)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def write_xlsx(lines: Iterable[list[str]], target: IO[bytes]) -> None:
    """An XLSX workbook of text cells (write-only: rows are streamed into the file)."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("records")
    for line in lines:
        # Text cells: "0123" and "1999-11-11T00:00Z" must come back as written.
        sheet.append([_text_cell(sheet, cell) for cell in line])
    workbook.save(target)


def _text_cell(sheet: Any, value: str) -> WriteOnlyCell:
    cell = WriteOnlyCell(sheet, value=value)
    # Text, never a formula or a number: "=..." stays a value, "0123" keeps its zero.
    cell.data_type = "s"
    cell.number_format = "@"
    return cell
