"""Streaming readers for source files: CSV (any delimiter, encoding, BOM), XLSX, JSON, NDJSON.

Each reader holds at most one row (plus a read buffer) in memory, counts the bytes it has
consumed for the progress bar, and turns anything wrong with the file as a whole into a
FileProblem with a sentence for the user (never a cell value).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import IO, Any

import orjson
from openpyxl import load_workbook
from openpyxl.utils import range_boundaries

# Encodings offered to the user ("" = detect: a BOM decides, else UTF-8).
ENCODINGS: dict[str, str] = {
    "": "Detect (UTF-8, or as the byte-order mark says)",
    "utf-8": "UTF-8",
    "cp1252": "Windows-1252 (Western European, Excel on Windows)",
    "latin-1": "Latin-1 (ISO-8859-1)",
    "iso-8859-15": "Latin-9 (ISO-8859-15)",
    "utf-16": "UTF-16 (Excel “Unicode text”)",
}
DELIMITERS: dict[str, str] = {
    "": "Detect",
    ",": "Comma",
    ";": "Semicolon",
    "\t": "Tab",
    "|": "Pipe",
}
# By the name a form field or a command line gives them ("tab" survives both; "\t" may not).
DELIMITER_BY_NAME: dict[str, str] = {
    label.lower(): char for char, label in DELIMITERS.items() if char
}

HEAD_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
# Longest cell the CSV parser will hold: far above IMPORT_MAX_CELL_CHARS (such cells are bad
# rows), but bounded, so an unbalanced quote cannot pull the whole file into one cell.
CSV_FIELD_LIMIT = 1_000_000
MAX_JSON_RECORD_CHARS = 16 * 1024 * 1024

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (an Excel .xlsx workbook?)"),
    (b"\xd0\xcf\x11\xe0", "an old Excel .xls (or other Office) file"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3", "an SQLite database"),
)


class FileProblem(Exception):
    """The file as a whole cannot be imported; message is a sentence for the user."""

    def __init__(self, message: str, *, code: str = "file") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for progress)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.count += n
        return n


@dataclass(slots=True)
class Source:
    """An opened source file: its format, header (flat files) and a row iterator."""

    format: str  # csv | xlsx | json | ndjson
    encoding: str = ""
    delimiter: str = ""
    header: list[str] | None = None
    rows: Iterator[tuple[int, Any]] = field(default_factory=lambda: iter(()))
    counter: CountingReader | None = None
    # Data rows expected (from the sheet's dimension; 0 = unknown, the caller may count lines).
    rows_estimate: int = 0
    # Closed when the source is; XLSX keeps its workbook and perhaps a temporary copy.
    closers: list[Any] = field(default_factory=list)

    @property
    def bytes_read(self) -> int:
        return self.counter.count if self.counter is not None else 0

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()


def detect_format(name: str, head: bytes) -> str:
    """The format by file name, then by content."""
    lower = name.lower()
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if lower.endswith(".xlsx") or lower.endswith(".xlsm"):
        return "xlsx"
    if lower.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    if lower.endswith(".json"):
        return "ndjson" if stripped.startswith(b"{") else "json"
    if lower.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "ndjson"
    return "csv"


def check_not_binary(head: bytes, *, expected: str) -> None:
    """Refuse a file whose first bytes show it is not text (images, archives, junk)."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            hint = " Choose the XLSX format for Excel workbooks." if magic == b"PK\x03\x04" else ""
            raise FileProblem(f"This file is {what}, not {expected}.{hint}", code="binary_file")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return
    sample = head[:8192]
    if b"\x00" in sample:
        raise FileProblem(
            f"This file holds binary data (NUL bytes), not {expected}. "
            "Check that you chose the right file.",
            code="binary_file",
        )
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    if sample and controls / len(sample) > 0.05:
        raise FileProblem(
            f"This file holds binary data (control characters), not {expected}. "
            "Check that you chose the right file.",
            code="binary_file",
        )


def resolve_encoding(chosen: str, head: bytes) -> str:
    """The codec to decode with: a byte-order mark wins over the choice (it cannot lie about
    UTF-8/UTF-16); UTF-8 is read as utf-8-sig so a BOM is dropped."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    name = (chosen or "utf-8").strip().lower()
    try:
        name = codecs.lookup(name).name
    except LookupError:
        raise FileProblem(f'"{chosen}" is not an encoding this server knows.') from None
    return "utf-8-sig" if name == "utf-8" else name


def _decode_problem(exc: UnicodeDecodeError, encoding: str, where: str) -> FileProblem:
    shown = {"utf-8-sig": "UTF-8"}.get(encoding, encoding)
    return FileProblem(
        f"The file is not valid {shown} text ({where}). Choose the encoding it was saved in "
        "(for example Windows-1252 or Latin-1) and import it again.",
        code="undecodable",
    )


def _empty_problem() -> FileProblem:
    return FileProblem("The file is empty.", code="empty_file")


def _header_only_problem() -> FileProblem:
    return FileProblem("The file has a header row but no data rows.", code="no_rows")


def detect_delimiter(header_line: str) -> str:
    """The delimiter that splits the header line into the most columns (outside quotes)."""
    counts = dict.fromkeys(DELIMITER_BY_NAME.values(), 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def open_csv(raw: IO[bytes], *, encoding: str, delimiter: str) -> Source:
    """A CSV reader over a binary stream: rows are (row number, cells), header is row 1."""
    counter = CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=HEAD_BYTES)
    head = buffered.peek(HEAD_BYTES)[:HEAD_BYTES]
    if not head.strip(b"\xef\xbb\xbf\xff\xfe \t\r\n"):
        raise _empty_problem()
    check_not_binary(head, expected="a CSV text file")
    codec = resolve_encoding(encoding, head)
    try:
        head_text = head.decode(codec, errors="strict")
    except UnicodeDecodeError as exc:
        if exc.end < len(head) - 4:  # not merely a character cut at the end of the sample
            where = f"at byte {exc.start + 1}"
            raise _decode_problem(exc, codec, where) from None
        head_text = head[: exc.start].decode(codec, errors="ignore")
    first_line = head_text.lstrip("\ufeff").splitlines()[0] if head_text.strip() else ""
    chosen = delimiter if delimiter in DELIMITERS and delimiter else detect_delimiter(first_line)
    text = io.TextIOWrapper(buffered, encoding=codec, errors="strict", newline="")
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(text, delimiter=chosen, quotechar='"', doublequote=True, strict=False)
    state = {"row": 0}

    def next_record() -> list[str] | None:
        try:
            record = next(reader)
        except StopIteration:
            return None
        except UnicodeDecodeError as exc:
            raise _decode_problem(exc, codec, f"in or after row {state['row'] + 1}") from None
        except csv.Error as exc:
            raise FileProblem(_csv_error_message(str(exc), state["row"] + 1), code="csv") from None
        state["row"] += 1
        return record

    header: list[str] | None = None
    while header is None:
        record = next_record()
        if record is None:
            raise _empty_problem()
        if any(cell.strip() for cell in record):
            header = [cell.lstrip("\ufeff").strip() for cell in record]

    def rows() -> Iterator[tuple[int, list[str]]]:
        found = False
        while True:
            record = next_record()
            if record is None:
                break
            if not record or not any(record):
                continue
            found = True
            yield state["row"], record
        if not found:
            raise _header_only_problem()

    return Source(
        format="csv",
        encoding=codec,
        delimiter=chosen,
        header=header,
        rows=rows(),
        counter=counter,
        closers=[text.detach],
    )


def _csv_error_message(error: str, row: int) -> str:
    if "field larger than field limit" in error:
        return (
            f"Row {row} has a cell longer than {CSV_FIELD_LIMIT:,} characters, or a quote "
            'that is never closed. Check the quotes (") around that row.'
        )
    if "NUL" in error:
        return f"Row {row} holds binary data (NUL bytes); this is not a CSV text file."
    return f"The CSV file cannot be read at row {row}: {error}."


def cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV export would hold."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def open_xlsx(raw: IO[bytes], *, sheet: str = "", header_row: int | None = None) -> Source:
    """One worksheet of an XLSX workbook, read row by row (openpyxl read-only mode).

    Workbooks as people send them: the sheet is the one named (a workbook with several
    visible sheets and none named is refused, naming them, never half read); notes rows above
    the header are skipped (`header_row`, or the first of the top rows with the most cells);
    a merged range gives every cell its value; a dimension claiming the whole sheet (a
    formatted column) does not make a million empty rows.
    """
    closers: list[Any] = []
    path = getattr(raw, "name", None)
    if not (isinstance(path, str) and os.path.isfile(path)):
        # openpyxl needs a seekable file; storages such as S3 stream, so spool to disk first.
        spool = tempfile.NamedTemporaryFile(suffix=".xlsx", delete=False)  # noqa: SIM115
        with spool:
            while chunk := raw.read(CHUNK_BYTES):
                spool.write(chunk)
        path = spool.name
        closers.append(lambda: os.unlink(spool.name))
    with open(path, "rb") as probe:
        head = probe.read(HEAD_BYTES)
    if not head:
        raise _empty_problem()
    if not head.startswith(b"PK\x03\x04"):
        check_not_binary(head, expected="an XLSX workbook")
        raise FileProblem(
            "This file is not an XLSX workbook. Choose CSV or JSON for text files.",
            code="not_xlsx",
        )
    try:
        workbook = load_workbook(path, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl, zipfile.BadZipFile and XML errors of a damaged file
        raise FileProblem(
            "This file cannot be read as an XLSX workbook (damaged, encrypted or another "
            "format). Save it again from Excel as .xlsx, or as CSV.",
            code="not_xlsx",
        ) from exc
    closers.append(workbook.close)
    worksheet = _chosen_sheet(workbook, sheet)
    estimate = worksheet.max_row or 0
    if estimate >= XLSX_MAX_ROWS or (worksheet.max_column or 0) >= XLSX_MAX_COLUMNS:
        estimate = 0  # the dimension claims the whole sheet: it says nothing
    # Rows as wide as their data, not as the (perhaps whole-sheet) dimension claims.
    worksheet.reset_dimensions()
    merges = _merged_ranges(worksheet)
    header_number, header, rows = _xlsx_header(_xlsx_rows(worksheet, merges), header_row)
    while header and not header[-1]:
        header.pop()

    def data_rows() -> Iterator[tuple[int, list[str]]]:
        found = False
        for number, row_values in rows:
            if not any(v.strip() for v in row_values):
                continue
            found = True
            yield number, row_values
        if not found:
            raise _header_only_problem()

    return Source(
        format="xlsx",
        header=header,
        rows=data_rows(),
        closers=closers,
        rows_estimate=max(estimate - header_number, 0),
    )


# Excel's limits: a dimension at them is a formatted whole column or row, not data.
XLSX_MAX_ROWS = 1_048_576
XLSX_MAX_COLUMNS = 16_384
# Top rows looked at for the header when it is not given (notes rows come first).
HEADER_SEARCH_ROWS = 20
_MERGE_CELL = re.compile(rb'<(?:\w+:)?mergeCell\s+ref="([A-Z]+[0-9]+:[A-Z]+[0-9]+)"')


def _chosen_sheet(workbook: Any, name: str) -> Any:
    visible = [ws for ws in workbook.worksheets if ws.sheet_state == "visible"]
    if name:
        for ws in workbook.worksheets:
            if ws.title == name:
                return ws
        names = ", ".join(ws.title for ws in visible) or "none"
        raise FileProblem(
            f"The workbook has no sheet named {name[:60]!r} (its sheets: {names}).",
            code="sheet",
        )
    if not visible:
        raise _empty_problem()
    if len(visible) > 1:
        names = ", ".join(ws.title for ws in visible)
        raise FileProblem(
            f"The workbook has {len(visible)} sheets ({names}); choose the one to import "
            "(Sheet, or --sheet).",
            code="sheet",
        )
    return visible[0]


def _merged_ranges(worksheet: Any) -> list[tuple[int, int, int, int]]:
    """(min_col, min_row, max_col, max_row) of each merged range: read-only worksheets do not
    load them, so the sheet's XML is scanned for its <mergeCell> elements (they follow the
    rows; a byte scan of the decompressed part costs a fraction of parsing it)."""
    refs: set[bytes] = set()
    tail = b""
    with worksheet._get_source() as source:  # the sheet's XML part in the archive
        while chunk := source.read(CHUNK_BYTES):
            text = tail + chunk  # a match cut by the chunk boundary is whole in the next text
            refs.update(match.group(1) for match in _MERGE_CELL.finditer(text))
            tail = text[-200:]
    return sorted((range_boundaries(ref.decode()) for ref in refs), key=lambda r: (r[1], r[0]))


def _xlsx_rows(
    worksheet: Any, merges: list[tuple[int, int, int, int]]
) -> Iterator[tuple[int, list[str]]]:
    """(row number, cell texts) of every row, merged ranges filled with their first value."""
    pending = list(merges)  # by first row
    active: list[tuple[tuple[int, int, int, int], str]] = []
    for number, cells in enumerate(worksheet.iter_rows(), start=1):
        values = []
        for cell in cells:
            if getattr(cell, "data_type", None) == "f":
                raise FileProblem(
                    f"Cell {cell.coordinate} holds a formula. Save the sheet with values "
                    "instead of formulas (copy the cells, then Paste Special > Values) and "
                    "import it again.",
                    code="formula",
                )
            values.append(cell_text(cell.value))
        if pending or active:
            while pending and pending[0][1] == number:
                bounds = pending.pop(0)
                first = values[bounds[0] - 1] if len(values) >= bounds[0] else ""
                active.append((bounds, first))
            active = [(b, v) for b, v in active if b[3] >= number]
            for (min_col, _r, max_col, _m), value in active:
                if len(values) < max_col:
                    values.extend([""] * (max_col - len(values)))
                for col in range(min_col - 1, max_col):
                    values[col] = value
            # Ranges whose first row was skipped (before the sheet's first row): none in a
            # valid file; drop any left behind so they cannot match later rows.
            while pending and pending[0][1] < number:
                pending.pop(0)
        yield number, values


def _xlsx_header(
    rows: Iterator[tuple[int, list[str]]], header_row: int | None
) -> tuple[int, list[str], Iterator[tuple[int, list[str]]]]:
    """(row number, header, the rows after it) of the sheet.

    Without header_row: the first of the top non-empty rows with the most cells (a notes row
    such as "Export of 30 Nov" fills one cell; the header fills every column).
    """
    if header_row is not None:
        for number, values in rows:
            if number == header_row:
                if not any(v.strip() for v in values):
                    raise FileProblem(f"Row {header_row} of the sheet is empty.", code="header")
                return number, [v.strip() for v in values], rows
        raise _empty_problem()
    looked: list[tuple[int, list[str]]] = []
    for number, values in rows:
        if any(v.strip() for v in values):
            looked.append((number, values))
            if len(looked) >= HEADER_SEARCH_ROWS:
                break
    if not looked:
        raise _empty_problem()
    filled = [sum(1 for v in values if v.strip()) for _n, values in looked]
    at = filled.index(max(filled))
    number, header = looked[at]
    return number, [v.strip() for v in header], itertools.chain(looked[at + 1 :], rows)


def open_ndjson(raw: IO[bytes], *, encoding: str) -> Source:
    """One JSON object per line; rows are (line number, parsed object)."""
    counter = CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=HEAD_BYTES)
    head = buffered.peek(HEAD_BYTES)[:HEAD_BYTES]
    if not head.strip(b"\xef\xbb\xbf\xff\xfe \t\r\n"):
        raise _empty_problem()
    check_not_binary(head, expected="a JSON text file")
    codec = resolve_encoding(encoding, head)
    text = io.TextIOWrapper(buffered, encoding=codec, errors="strict", newline=None)

    def rows() -> Iterator[tuple[int, Any]]:
        number = 0
        found = False
        while True:
            try:
                line = text.readline(MAX_JSON_RECORD_CHARS + 1)
            except UnicodeDecodeError as exc:
                raise _decode_problem(exc, codec, f"on or after line {number + 1}") from None
            if not line:
                break
            number += 1
            if len(line) > MAX_JSON_RECORD_CHARS:
                raise FileProblem(
                    f"Line {number} is longer than {MAX_JSON_RECORD_CHARS:,} characters.",
                    code="line_too_long",
                )
            stripped = line.strip()
            if not stripped:
                continue
            try:
                obj = orjson.loads(stripped)
            except orjson.JSONDecodeError as exc:
                raise FileProblem(
                    f"Line {number} is not valid JSON ({_json_reason(exc)}, column "
                    f"{exc.colno}). Each line must hold one complete JSON object.",
                    code="malformed_json",
                ) from None
            found = True
            yield number, obj
        if not found:
            raise _empty_problem()

    return Source(
        format="ndjson", encoding=codec, rows=rows(), counter=counter, closers=[text.detach]
    )


def _json_reason(exc: json.JSONDecodeError) -> str:
    # The decoder's own wording ("Expecting ',' delimiter") names syntax, never the data.
    return exc.msg.rstrip(".").split(":")[0]


def open_json_array(raw: IO[bytes], *, encoding: str) -> Source:
    """A JSON array of objects, parsed one element at a time; rows are (position, object).

    The whole array is never held in memory: the decoder works on a sliding text buffer.
    """
    counter = CountingReader(raw)
    buffered = io.BufferedReader(counter, buffer_size=HEAD_BYTES)
    head = buffered.peek(HEAD_BYTES)[:HEAD_BYTES]
    if not head.strip(b"\xef\xbb\xbf\xff\xfe \t\r\n"):
        raise _empty_problem()
    check_not_binary(head, expected="a JSON text file")
    codec = resolve_encoding(encoding, head)
    text = io.TextIOWrapper(buffered, encoding=codec, errors="strict", newline=None)
    return Source(
        format="json",
        encoding=codec,
        rows=_json_array_rows(text, codec),
        counter=counter,
        closers=[text.detach],
    )


class _Buffer:
    """A sliding window over a text stream that knows the line number of its start."""

    def __init__(self, text: IO[str], codec: str) -> None:
        self.text = text
        self.codec = codec
        self.buf = ""
        self.pos = 0
        self.line = 1  # line number of buf[0]
        self.eof = False

    def fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.text.read(CHUNK_BYTES)
        except UnicodeDecodeError as exc:
            raise _decode_problem(
                exc, self.codec, f"on or after line {self.line_at(self.pos)}"
            ) from None
        if not chunk:
            self.eof = True
            return False
        if self.pos:
            self.line += self.buf.count("\n", 0, self.pos)
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += chunk
        return True

    def skip_space(self) -> str:
        """The next non-blank character ("" at the end), without consuming it."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n\ufeff":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def line_at(self, index: int) -> int:
        return self.line + self.buf.count("\n", 0, index)

    def column_at(self, index: int) -> int:
        return index - (self.buf.rfind("\n", 0, index) + 1) + 1

    def problem(self, index: int, what: str) -> FileProblem:
        return FileProblem(
            f"The JSON is malformed on line {self.line_at(index)}, column "
            f"{self.column_at(index)}: {what}.",
            code="malformed_json",
        )


def _json_array_rows(text: IO[str], codec: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    b = _Buffer(text, codec)
    first = b.skip_space()
    if first == "":
        raise _empty_problem()
    if first != "[":
        raise FileProblem(
            "A .json file must hold an array of objects ([{...}, {...}]), or one object per "
            "line (NDJSON).",
            code="malformed_json",
        )
    b.pos += 1
    number = 0
    if b.skip_space() == "]":
        raise FileProblem("The JSON array is empty.", code="no_rows")
    while True:
        while True:
            try:
                obj, end = decoder.raw_decode(b.buf, b.pos)
                break
            except json.JSONDecodeError as exc:
                # The element may just be cut by the buffer's end: read on, within a bound.
                if len(b.buf) - b.pos > MAX_JSON_RECORD_CHARS or not b.fill():
                    raise b.problem(exc.pos, _json_reason(exc)) from None
        number += 1
        b.pos = end
        yield number, obj
        after = b.skip_space()
        if after == ",":
            b.pos += 1
            if b.skip_space() == "":
                raise b.problem(b.pos, "the array is not closed with ]")
            continue
        if after == "]":
            b.pos += 1
            if b.skip_space() != "":
                raise b.problem(b.pos, "unexpected text after the closing ]")
            return
        if after == "":
            raise b.problem(b.pos, "the array is not closed with ]")
        raise b.problem(b.pos, "expecting , or ] between array items")


def open_source(
    raw: IO[bytes],
    *,
    format: str,
    encoding: str = "",
    delimiter: str = "",
    sheet: str = "",
    header_row: int | None = None,
) -> Source:
    """Open a source stream in the given format; raises FileProblem for an unusable file.
    `sheet` and `header_row` are the worksheet and header row of an XLSX workbook."""
    if format == "csv":
        return open_csv(raw, encoding=encoding, delimiter=delimiter)
    if format == "xlsx":
        return open_xlsx(raw, sheet=sheet, header_row=header_row)
    if format == "ndjson":
        return open_ndjson(raw, encoding=encoding)
    if format == "json":
        return open_json_array(raw, encoding=encoding)
    raise FileProblem(f"Unknown file format {format!r}.")


def count_newlines(raw: IO[bytes]) -> int:
    """Lines in a stream, read in 1 MB chunks (a fast estimate of the row count)."""
    lines = 0
    last = b""
    while chunk := raw.read(CHUNK_BYTES):
        lines += chunk.count(b"\n")
        last = chunk
    if last and not last.endswith(b"\n"):
        lines += 1
    return lines
