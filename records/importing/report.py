"""The error report of an import: a CSV streamed to a temporary file as problems are found,
then saved to storage.

One line per problem: row, column, severity (refused: the row was not staged; invalid: staged
with this problem for a steward to fix; warning: staged, worth knowing), code, reason, and the
row's identity ("provider:id", shown only to viewers with view_pii: see `report_for_viewer`).
Reasons never contain a cell value. The size is capped: the first `max_lines` lines are listed,
then the report ends with the number of lines of each code (so a file of a million broken
rows gives a report a person can open).
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from django.core.files import File
from django.core.files.storage import Storage

HEADER = ("row", "column", "severity", "code", "reason", "identity")
IDENTITY_COLUMN = HEADER.index("identity")
REFUSED, INVALID, WARNING = "refused", "invalid", "warning"
KEEP_FIRST = 5
DEFAULT_MAX_LINES = 10_000


@dataclass(frozen=True, slots=True)
class ReportLine:
    row: int | None
    column: str
    severity: str
    code: str
    reason: str

    def as_sentence(self) -> str:
        where = f"row {self.row}" if self.row is not None else "file"
        column = f", {self.column}" if self.column else ""
        return f"{where}{column}: {self.reason}"


class ErrorReport:
    """Collects problems on disk (never in memory), keeping only the first few for messages."""

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES) -> None:
        self._raw = tempfile.TemporaryFile("w+b")  # noqa: SIM115
        self._file = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(HEADER)
        self.max_lines = max(max_lines, 0)
        self.lines = 0  # every problem, listed or only counted
        self.listed = 0
        self.by_code: Counter[tuple[str, str]] = Counter()  # (severity, code) -> lines
        self.first: list[ReportLine] = []
        self.first_refused: ReportLine | None = None

    def add(
        self,
        row: int | None,
        column: str,
        code: str,
        reason: str,
        *,
        severity: str = REFUSED,
        identity: str | None = None,
    ) -> None:
        self.lines += 1
        self.by_code[severity, code] += 1
        if self.listed < self.max_lines:
            self.listed += 1
            self._writer.writerow(
                ("" if row is None else row, column, severity, code, reason, identity or "")
            )
        if len(self.first) < KEEP_FIRST or (self.first_refused is None and severity == REFUSED):
            line = ReportLine(row, column, severity, code, reason)
            if len(self.first) < KEEP_FIRST:
                self.first.append(line)
            if self.first_refused is None and severity == REFUSED:
                self.first_refused = line

    def save(self, storage: Storage, name: str) -> str:
        """Write the report to storage under (about) name; returns the stored name."""
        if self.listed < self.lines:
            for (severity, code), count in sorted(self.by_code.items()):
                self._writer.writerow(
                    ("", "", severity, code, f"{count:,} lines of this code in all "
                     f"(the report lists the first {self.max_lines:,} lines).", "")
                )  # fmt: skip
        self._file.flush()
        self._raw.seek(0)
        return storage.save(name, File(self._raw, name=name))

    def close(self) -> None:
        self._file.close()


def report_for_viewer(stored: IO[bytes], *, view_pii: bool) -> Iterator[bytes]:
    """A stored report's bytes for one viewer: the identity column emptied unless view_pii."""
    if view_pii:
        yield from iter(lambda: stored.read(64 * 1024), b"")
        return
    text = io.TextIOWrapper(stored, encoding="utf-8", newline="")
    out = io.StringIO()
    writer = csv.writer(out)
    for row in csv.reader(text):
        if len(row) > IDENTITY_COLUMN and row[0] != HEADER[0]:
            row[IDENTITY_COLUMN] = ""
        writer.writerow(row)
        if out.tell() >= 64 * 1024:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()
