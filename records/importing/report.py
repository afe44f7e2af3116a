"""The error report of an import: a CSV (row, column, code, reason) streamed to a temporary
file as problems are found, then saved to storage. Reasons never contain a cell value."""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass

from django.core.files import File
from django.core.files.storage import Storage

HEADER = ("row", "column", "code", "reason")
KEEP_FIRST = 5


@dataclass(frozen=True, slots=True)
class ReportLine:
    row: int | None
    column: str
    code: str
    reason: str

    def as_sentence(self) -> str:
        where = f"row {self.row}" if self.row is not None else "file"
        column = f", {self.column}" if self.column else ""
        return f"{where}{column}: {self.reason}"


class ErrorReport:
    """Collects problems on disk (never in memory), keeping only the first few for messages."""

    def __init__(self) -> None:
        self._raw = tempfile.TemporaryFile("w+b")  # noqa: SIM115
        self._file = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(HEADER)
        self.lines = 0
        self.first: list[ReportLine] = []
        # The refused row with the lowest number: in all-or-nothing mode, the one that blocked
        # the import (the first lines may be rows staged as invalid, which block nothing).
        self.first_refused: ReportLine | None = None

    def add(self, row: int | None, column: str, code: str, reason: str) -> None:
        self._writer.writerow(("" if row is None else row, column, code, reason))
        self.lines += 1
        if len(self.first) < KEEP_FIRST:
            self.first.append(ReportLine(row, column, code, reason))

    def note_refused(self, row: int | None, column: str, code: str, reason: str) -> None:
        """Remember a refused row (its line reaches the report in row order, later)."""
        current = self.first_refused
        if current is None or (row is not None and (current.row is None or row < current.row)):
            self.first_refused = ReportLine(row, column, code, reason)

    def save(self, storage: Storage, name: str) -> str:
        """Write the report to storage under (about) name; returns the stored name."""
        self._file.flush()
        self._raw.seek(0)
        return storage.save(name, File(self._raw, name=name))

    def close(self) -> None:
        self._file.close()
