"""The first rows of a flat file, before anything is staged: for suggesting and previewing a
mapping (the admin's mapping step and `stage_import --suggest-mapping`)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import IO, Any

from records.importing.readers import FileProblem, detect_format, open_source
from records.mapping import MappingError, RowError
from records.mapping.applying import plan_mapping
from records.mapping.documents import MappingDocument
from records.models import Schema
from records.rules import Problem, clean_guest, clean_migration, clean_order, clean_tracking

# Rows read for suggestions (values decide targets and value maps); the page shows fewer.
SAMPLE_ROWS = 200
FLAT = ("csv", "xlsx")


@dataclass(frozen=True, slots=True)
class SourcePreview:
    format: str
    header: list[str]
    rows: list[list[str]]  # the first SAMPLE_ROWS data rows, each as wide as the header
    numbers: list[int]  # their row numbers in the file


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One source row as CDP will receive it, with what the rules say of it."""

    number: int
    value: dict[str, Any]
    problems: list[Problem]


def source_preview(
    raw: IO[bytes],
    *,
    name: str,
    format: str | None = None,
    encoding: str = "",
    delimiter: str = "",
    sheet: str = "",
    header_row: int | None = None,
) -> SourcePreview:
    """The header and first rows of a CSV or XLSX file; FileProblem for anything else."""
    head = raw.read(64 * 1024)
    raw.seek(0)
    detected = format or detect_format(name, head)
    if detected not in FLAT:
        raise FileProblem(
            "Only CSV and XLSX files have columns to map; JSON files use CDP's field names.",
            code="columns",
        )
    source = open_source(
        raw,
        format=detected,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet,
        header_row=header_row,
    )
    try:
        header = [h.strip() for h in source.header or []]
        width = len(header)
        rows, numbers = [], []
        for number, cells in islice(source.rows, SAMPLE_ROWS):
            row = list(cells[:width])
            rows.append(row + [""] * (width - len(row)))
            numbers.append(number)
    finally:
        source.close()
    return SourcePreview(format=detected, header=header, rows=rows, numbers=numbers)


def preview_mapped(
    document: MappingDocument, preview: SourcePreview, *, providers: list[str], limit: int = 5
) -> list[PreviewRow]:
    """The first rows through the mapping and the CDP rules; MappingError for the header."""
    plan = plan_mapping(document, preview.header)
    out = []
    for number, cells in zip(preview.numbers[:limit], preview.rows[:limit], strict=True):
        try:
            mapped = plan.flat.to_row(plan.cells(cells))
        except RowError as exc:
            out.append(PreviewRow(number, {}, [Problem(exc.column, exc.code, exc.message)]))
            continue
        if document.schema == Schema.GUEST:
            value, problems = clean_guest(mapped.value, identity_providers=providers)
        elif document.schema == Schema.TRACKING:
            value, problems = clean_tracking(mapped.value, identity_providers=providers)
        elif document.schema == Schema.ORDER:
            value, problems = clean_order(mapped.value, identity_providers=providers)
        elif document.schema == Schema.MIGRATION:
            value, problems = clean_migration(mapped.value, identity_providers=providers)
        else:
            value, problems = mapped.value, []
        out.append(PreviewRow(number, value, problems))
    return out


__all__ = ["MappingError", "PreviewRow", "SourcePreview", "preview_mapped", "source_preview"]
