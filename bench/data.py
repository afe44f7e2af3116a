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
from typing import Any

from bench.import_memory import write_csv

__all__ = [
    "MAPPING_DOCUMENT",
    "MODEL_COLUMNS",
    "model_row",
    "read_rows",
    "write_mapped_source",
    "write_model_columns_csv",
    "write_source",
]

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


# The mapped import: the same guests in a CRM's own layout (its column names, `M`/`F`,
# `Mister`, `dd.mm.yyyy` dates, a country name, a 1/0 opt-in, no provider columns), read
# through a mapping document with the transforms of docs/mapping.md.
MAPPED_COLUMNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("E-Mail", "email", {"target": ["email", "identifiers[0].id"], "case": "lower"}),
    ("Customer No", "identifiers.1.id", {"target": "identifiers[1].id"}),
    ("Salutation", "title", {"target": "title", "values": {"Mister": "Mr", "Ms.": "Ms"}}),
    ("First Name", "firstName", {"target": "firstName"}),
    ("Surname", "lastName", {"target": "lastName"}),
    ("Sex", "gender", {"target": "gender", "values": {"M": "male", "F": "female"}}),
    ("Birth Date", "dateOfBirth", {"target": "dateOfBirth", "date_format": "%d.%m.%Y"}),
    ("Phone", "phoneNumbers", {"target": "phoneNumbers"}),
    ("Address 1", "street.0", {"target": "street[]"}),
    ("Address 2", "street.1", {"target": "street[]"}),
    ("Town", "city", {"target": "city"}),
    ("County", "state", {"target": "state"}),
    ("Country", "country", {"target": "country", "values": {"Ireland": "IE"}}),
    ("Postcode", "postCode", {"target": "postCode"}),
    ("Language", "language", {"target": "language"}),
    ("Nationality", "nationality", {"target": "nationality"}),
    ("Opt-in", "subscriptions.0.status",
     {"target": "subscriptions[0].status", "values": {"1": "SUBSCRIBED", "0": "UNSUBSCRIBED"}}),
    ("Opt-in date", "subscriptions.0.effectiveDate", {"target": "subscriptions[0].effectiveDate"}),
    ("Tier", "ext.loyaltyTier", {"target": "ext.loyaltyTier"}),
    ("Points", "ext.loyaltyPoints", {"target": "ext.loyaltyPoints"}),
    ("Member since", "ext.memberSince", {"target": "ext.memberSince"}),
    ("Store", "ext.favouriteStore", {"target": "ext.favouriteStore"}),
    ("Contact by", "ext.preferredContact", {"target": "ext.preferredContact"}),
    ("Segment", "ext.marketingSegment", {"target": "ext.marketingSegment"}),
)  # fmt: skip
MAPPING_DOCUMENT: dict[str, Any] = {
    "format": "cdpstage-mapping",
    "version": 1,
    "name": "bench CRM layout",
    "schema": "guest",
    "columns": [{"source": source, **spec} for source, _, spec in MAPPED_COLUMNS],
    "constants": {
        "identifiers[0].provider": "email",
        "identifiers[1].provider": "CRM_ID",
        "subscriptions[0].name": "newsletter",
        "subscriptions[0].channel": "EMAIL",
        "subscriptions[0].pointOfSale": "shop.example.com",
    },
    "unmapped_columns": "refuse",
}
_CRM_CODES = {
    "title": {"Mr": "Mister", "Ms": "Ms."},
    "gender": {"male": "M", "female": "F"},
    "country": {"IE": "Ireland"},
    "subscriptions.0.status": {"SUBSCRIBED": "1", "UNSUBSCRIBED": "0"},
}


def _crm_cell(column: str, value: str) -> str:
    if column == "dateOfBirth":
        year, month, day = value.split("-")
        return f"{day}.{month}.{year}"
    if column == "email":
        return " " + value.upper()  # a leading space and capitals, as CRMs export them
    return _CRM_CODES.get(column, {}).get(value, value)


def write_mapped_source(source: Path, target: Path, rows: int) -> None:
    """The first `rows` guests of `source` in the CRM layout MAPPING_DOCUMENT reads."""
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _, _ in MAPPED_COLUMNS])
        for row in read_rows(source, rows):
            writer.writerow([_crm_cell(column, row[column]) for _, column, _ in MAPPED_COLUMNS])
