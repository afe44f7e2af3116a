"""The bench's data: one generated guest CSV, and the same rows as plain Guest columns.

The CSV comes from bench.import_memory's generator (two identifiers, a subscription and six
extension attributes a guest; about 950 bytes of CDP JSON each), so every approach reads the
same rows. The common approaches that work on model columns (django-import-export's
ModelResource) get a copy with one column per Guest field, made here outside their timing.
No Django imports: the parent process of the bench prepares files only.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator
from pathlib import Path

from bench.import_memory import write_csv

__all__ = ["MODEL_COLUMNS", "model_row", "read_rows", "write_model_columns_csv", "write_source"]

# Guest model fields a plain ModelResource imports (typed columns; no children, no CDP value).
MODEL_COLUMNS: tuple[str, ...] = (
    "identity_key",
    "email",
    "title",
    "first_name",
    "last_name",
    "gender",
    "date_of_birth",
    "phone_numbers",
    "street",
    "city",
    "state",
    "country",
    "post_code",
    "nationality",
    "language",
)


def write_source(path: Path, rows: int) -> None:
    """Write the guest CSV every approach imports (the generator of bench.import_memory)."""
    write_csv(path, rows)


def read_rows(path: Path, limit: int) -> Iterator[dict[str, str]]:
    """The first `limit` data rows of the guest CSV, as dicts keyed by the CDP-style header."""
    with path.open(newline="", encoding="utf-8") as handle:
        yield from itertools.islice(csv.DictReader(handle), limit)


def model_row(row: dict[str, str]) -> list[str]:
    """One guest CSV row as the MODEL_COLUMNS cells (lists joined with commas, as the
    import-export SimpleArrayWidget reads them)."""
    phones = ",".join(p.strip() for p in row["phoneNumbers"].split(";") if p.strip())
    street = ",".join(s for s in (row["street.0"], row["street.1"]) if s)
    return [
        f"{row['identifiers.0.provider']}:{row['identifiers.0.id']}",
        row["email"],
        row["title"],
        row["firstName"],
        row["lastName"],
        row["gender"],
        row["dateOfBirth"],
        phones,
        street,
        row["city"],
        row["state"],
        row["country"],
        row["postCode"],
        row["nationality"],
        row["language"],
    ]


def write_model_columns_csv(source: Path, target: Path, rows: int) -> None:
    """Copy the first `rows` guests of `source` into a CSV with one column per Guest field."""
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(MODEL_COLUMNS)
        for row in read_rows(source, rows):
            writer.writerow(model_row(row))
