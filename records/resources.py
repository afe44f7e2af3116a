"""django-import-export resources: the admin's preview/confirm import for small files.

They run the one import pipeline (records.mapping -> records.rules -> the staging engine) on
the dataset django-import-export read from the upload:

- preview (dry run): every row is staged inside a transaction that is then rolled back, and
  the result lists bad rows as errors with their row numbers (so the confirm button is not
  offered) and shows every other row as new / update / unchanged with its rule problems;
- confirm: the dataset becomes an import run carried out in the request by
  records.services.imports.import_run_execute, exactly as a background run would be.

Large files belong in "Import a file" (a background import run); this screen reads the whole
file into memory, as django-import-export does.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import orjson
from django.core.files.base import ContentFile
from django.db import transaction
from import_export import resources
from import_export.fields import Field
from import_export.results import Error, Result, RowResult

from records.importing import ErrorReport, FileProblem, Source, StageOptions, stage_source
from records.importing.readers import cell_text
from records.mapping import known_columns
from records.models import ImportRun, Schema

# Keys that only a JSON object (not a flat file) has at its top level.
_JSON_KEYS = frozenset(("identifiers", "subscriptions", "extensions", "value", "utms", "feedback"))


class ImportProblem(Exception):
    """A row's problem as django-import-export shows it (the message is the whole story)."""


class _CollectingReport(ErrorReport):
    """An error report that also keeps every line by row (preview files are small)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_row: dict[int | None, list[str]] = defaultdict(list)

    def add(self, row: int | None, column: str, code: str, reason: str) -> None:
        super().add(row, column, code, reason)
        self.by_row[row].append(f"{column}: {reason}" if column else reason)


class StagingResult(Result):
    """A Result whose row errors carry the file's own row numbers (header = row 1)."""

    def row_errors(self) -> list[tuple[int, list[Error]]]:
        return [(row.number, row.errors) for row in self.rows if row.errors]


class StagingResource(resources.Resource):
    """Base resource: `schema` names what the file holds."""

    schema: str = ""

    @classmethod
    def get_display_name(cls) -> str:
        return f"CDP {cls.schema} file"

    def get_user_visible_fields(self) -> list[Field]:
        return [Field(column_name=name) for name in known_columns(self.schema)]

    def get_import_fields(self) -> list[Field]:
        return self.get_user_visible_fields()

    def import_data(
        self,
        dataset: Any,
        dry_run: bool = False,
        raise_errors: bool = False,
        use_transactions: bool | None = None,
        collect_failed_rows: bool = False,
        rollback_on_validation_errors: bool = False,
        **kwargs: Any,
    ) -> Result:
        """Preview (dry_run) or import a tablib Dataset through the staging pipeline."""
        source, json_like = dataset_source(dataset)
        if dry_run:
            return self._preview(source)
        return self._confirm(dataset, json_like, kwargs.get("file_name"), kwargs.get("user"))

    def _preview(self, source: Source) -> Result:
        result = StagingResult()
        result.diff_headers = ["Row", "Outcome", "Problems"]
        report = _CollectingReport()
        outcomes: dict[int, str] = {}
        try:
            with transaction.atomic():
                stage_source(
                    source,
                    options=StageOptions(schema=self.schema, on_error=ImportRun.OnError.SKIP),
                    import_run_id=None,
                    report=report,
                    outcomes=outcomes,
                )
                transaction.set_rollback(True)
        except FileProblem as problem:
            result.append_base_error(Error(ImportProblem(problem.message)))
            return result
        finally:
            report.close()
        result.total_rows = len(outcomes)
        labels = {"new": "New", "update": "Update", "unchanged": "Unchanged"}
        import_types = {
            "new": RowResult.IMPORT_TYPE_NEW,
            "update": RowResult.IMPORT_TYPE_UPDATE,
            "unchanged": RowResult.IMPORT_TYPE_SKIP,
            "bad": RowResult.IMPORT_TYPE_ERROR,
        }
        for number in sorted(outcomes):
            outcome = outcomes[number]
            problems = report.by_row.get(number, [])
            row = RowResult()
            row.number = number
            row.import_type = import_types[outcome]
            if outcome == "bad":
                row.errors = [Error(ImportProblem("; ".join(problems)), number=number)]
            else:
                row.diff = [str(number), labels[outcome], "; ".join(problems) or "—"]
            result.increment_row_result_total(row)
            result.append_row_result(row)
        return result

    def _confirm(self, dataset: Any, json_like: bool, file_name: str | None, user: Any) -> Result:
        from records.services.imports import import_run_create, import_run_execute

        stem = os.path.splitext(os.path.basename(file_name or f"{self.schema}s"))[0]
        if json_like:
            content = b"".join(orjson.dumps(obj) + b"\n" for _, obj in _json_rows(dataset))
            name, file_format = f"{stem}.ndjson", ImportRun.Format.NDJSON
        else:
            content = _flat_csv(dataset).encode()
            name, file_format = f"{stem}.csv", ImportRun.Format.CSV
        run = import_run_create(
            uploaded_file=ContentFile(content, name=name),
            schema=self.schema,
            format=file_format,
            user=user,
            enqueue=False,
        )
        run = import_run_execute(import_run_id=run.pk, attempt=run.attempt) or run
        result = StagingResult()
        if run.status == ImportRun.Status.FAILED:
            result.append_base_error(Error(ImportProblem(run.message)))
            return result
        result.totals[RowResult.IMPORT_TYPE_NEW] = run.rows_created
        result.totals[RowResult.IMPORT_TYPE_UPDATE] = run.rows_updated
        result.totals[RowResult.IMPORT_TYPE_SKIP] = run.rows_unchanged
        result.total_rows = run.rows_read
        result.import_run = run
        return result


def dataset_source(dataset: Any) -> tuple[Source, bool]:
    """A tablib Dataset as a pipeline Source; True when it came from JSON objects."""
    headers = [str(h).strip() if h is not None else "" for h in (dataset.headers or [])]
    json_like = bool(_JSON_KEYS.intersection(headers)) or any(
        isinstance(cell, dict | list) for row in dataset for cell in row
    )
    if json_like:
        return Source(format="json", rows=_json_rows(dataset)), True
    rows = ((index + 2, [cell_text(cell) for cell in row]) for index, row in enumerate(dataset))
    return Source(format="csv", header=headers, rows=_non_blank(rows)), False


def _non_blank(rows: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
    found = False
    for number, cells in rows:
        if any(cell.strip() for cell in cells):
            found = True
            yield number, cells
    if not found:
        raise FileProblem("The file has a header row but no data rows.", code="no_rows")


def _json_rows(dataset: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    headers = list(dataset.headers or [])
    for index, row in enumerate(dataset):
        yield index + 1, {h: v for h, v in zip(headers, row, strict=False) if v is not None}


def _flat_csv(dataset: Any) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(dataset.headers or [])
    for row in dataset:
        writer.writerow([cell_text(cell) for cell in row])
    return out.getvalue()


class GuestResource(StagingResource):
    """Guests: one row per guest (identifier, subscription and ext.<attribute> columns)."""

    schema = Schema.GUEST


class SubscriptionResource(StagingResource):
    """Subscriptions of staged guests, linked by identifier or email."""

    schema = Schema.SUBSCRIPTION


class ExtensionResource(StagingResource):
    """Extension attributes of staged guests, linked by identifier or email."""

    schema = Schema.EXTENSION


class TrackingEventResource(StagingResource):
    """Tracking events."""

    schema = Schema.TRACKING
