"""Mapping documents: how one source layout becomes the CDP column vocabulary (docs/mapping.md).

A mapping document is plain JSON, so it can be kept in a repository and used by automation:

    {"format": "cdpstage-mapping", "version": 1, "schema": "guest",
     "columns": [{"source": "E-Mail", "target": ["email", "identifiers[0].id"], "case": "lower"},
                 {"source": "Birth date", "target": "dateOfBirth", "date_format": "%Y/%m/%d"},
                 {"source": "Opt-in", "target": "subscriptions[0].status",
                  "values": {"1": "SUBSCRIBED", "0": "UNSUBSCRIBED"}},
                 {"source": "address1", "target": "street[]"},
                 {"source": "Notes", "target": "ignore"}],
     "constants": {"identifiers[0].provider": "email", "subscriptions[0].name": "newsletter"},
     "unmapped_columns": "refuse"}

`parse_document` checks a document and reports every problem at once; `to_json` writes the
canonical form (what the admin saves and `mapping_export` prints). Applying a document to a
file is records.mapping.applying's job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from records.mapping.columns import canonical_column
from records.models import Schema

FORMAT = "cdpstage-mapping"
VERSION = 1
IGNORE = "ignore"
CASES = ("lower", "upper")
EXCEL_SERIAL = "excel"
UNMAPPED_CHOICES = ("refuse", "ignore")
# Targets that take several items: `street[]` appends to the list in column order (the join
# of address1..address4), and a `split` cell fills it from one cell.
LIST_TARGETS = ("street", "phoneNumbers")
_BRACKET = re.compile(r"\[(\d+)\]")
_SPACES = re.compile(r"\s+")


class MappingDocumentError(ValueError):
    """A mapping document that cannot be used; `problems` lists every one of them."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = list(problems)
        self.message = " ".join(problems)


@dataclass(frozen=True, slots=True)
class ColumnRule:
    """One source column: where its value goes and how it is transformed on the way."""

    source: str
    targets: tuple[str, ...]  # canonical column names, `street[]`-style appends, or ()=ignore
    trim: bool = True
    case: str | None = None
    date_format: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    split: str | None = None

    @property
    def ignored(self) -> bool:
        return not self.targets


@dataclass(frozen=True, slots=True)
class MappingDocument:
    """A parsed, checked mapping document."""

    schema: str
    columns: tuple[ColumnRule, ...]
    constants: Mapping[str, str] = field(default_factory=dict)
    unmapped_columns: str = "refuse"
    name: str = ""

    @property
    def fingerprint(self) -> str:
        return header_fingerprint([c.source for c in self.columns])


def normalise_header(name: str) -> str:
    """A header cell as layouts are compared: case, surrounding and repeated spaces ignored."""
    return _SPACES.sub(" ", name.strip()).casefold()


def header_fingerprint(header: Sequence[str]) -> str:
    """The layout's fingerprint: its set of normalised column names (order may change between
    two exports of the same system; the names do not)."""
    names = sorted({normalise_header(h) for h in header if h and h.strip()})
    return hashlib.sha256("\x1f".join(names).encode()).hexdigest()


def normalise_target(target: str) -> str:
    """`identifiers[1].id` -> `identifiers.1.id`; `street[]` stays (an append)."""
    return _BRACKET.sub(r".\1", target.strip())


def is_append(target: str) -> bool:
    return target.endswith("[]") and target[:-2] in LIST_TARGETS


def _check_target(schema: str, raw: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        problems.append(f"{where}: the target must be a CDP field name such as email.")
        return None
    target = normalise_target(raw)
    if is_append(target):
        if schema != Schema.GUEST:
            problems.append(f"{where}: {target} is a guest field; this mapping is for {schema}.")
            return None
        return target
    canonical = canonical_column(schema, target)
    if canonical is None:
        problems.append(
            f'{where}: "{raw.strip()[:60]}" is not a {schema} field (see docs/mapping.md for '
            "the targets: CDP field names, identifiers[n].id, subscriptions[n].status, "
            "street[], ext.<attribute>)."
        )
        return None
    return canonical


def parse_document(data: Any, *, schema: str | None = None) -> MappingDocument:
    """Check a mapping document (parsed JSON) and return it; MappingDocumentError lists every
    problem. `schema`, when given, is the schema the caller imports (they must agree)."""
    problems: list[str] = []
    if not isinstance(data, Mapping):
        raise MappingDocumentError(["A mapping document is a JSON object (see docs/mapping.md)."])
    if data.get("format", FORMAT) != FORMAT:
        problems.append(f'"format" must be "{FORMAT}".')
    if data.get("version", VERSION) != VERSION:
        problems.append(f"This CDP Stage reads mapping documents of version {VERSION}.")
    doc_schema = data.get("schema")
    if doc_schema not in Schema.values:
        raise MappingDocumentError(
            [*problems, f'"schema" must be one of {", ".join(Schema.values)}.']
        )
    if schema is not None and doc_schema != schema:
        problems.append(f"This mapping is for {doc_schema} files; the import is of {schema}.")
    raw_columns = data.get("columns")
    if not isinstance(raw_columns, list) or not raw_columns:
        problems.append('"columns" must list the source columns.')
        raw_columns = []
    columns: list[ColumnRule] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(raw_columns, start=1):
        rule = _parse_column(doc_schema, raw, number, problems)
        if rule is None:
            continue
        key = normalise_header(rule.source)
        if key in seen:
            problems.append(
                f'Column {number}: "{rule.source[:60]}" is already mapped by column {seen[key]}.'
            )
            continue
        seen[key] = number
        columns.append(rule)
    constants = _parse_constants(doc_schema, data.get("constants", {}), problems)
    unmapped = data.get("unmapped_columns", "refuse")
    if unmapped not in UNMAPPED_CHOICES:
        problems.append('"unmapped_columns" must be "refuse" or "ignore".')
    name = data.get("name", "")
    if not isinstance(name, str):
        problems.append('"name" must be text.')
        name = ""
    if problems:
        raise MappingDocumentError(problems)
    return MappingDocument(
        schema=doc_schema,
        columns=tuple(columns),
        constants=constants,
        unmapped_columns=unmapped,
        name=name.strip(),
    )


def _parse_column(schema: str, raw: Any, number: int, problems: list[str]) -> ColumnRule | None:
    where = f"Column {number}"
    if not isinstance(raw, Mapping):
        problems.append(f"{where}: each column is an object with a source and a target.")
        return None
    unknown = sorted(set(raw) - {"source", "target", "trim", "case", "date_format", "values",
                                 "split"})  # fmt: skip
    if unknown:
        problems.append(f"{where}: unknown settings {', '.join(unknown)}.")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        problems.append(f"{where}: the source column's name is missing.")
        return None
    where = f'Column {number} ("{source.strip()[:60]}")'
    raw_targets = raw.get("target", IGNORE)
    if isinstance(raw_targets, str):
        raw_targets = [raw_targets]
    if not isinstance(raw_targets, list) or not raw_targets:
        problems.append(f"{where}: the target is a field name, a list of them, or ignore.")
        return None
    targets: list[str] = []
    for raw_target in raw_targets:
        if raw_target == IGNORE:
            continue
        target = _check_target(schema, raw_target, where, problems)
        if target is not None:
            targets.append(target)
    case = raw.get("case")
    if case not in (None, "", *CASES):
        problems.append(f'{where}: case is "lower" or "upper" (names keep their own case).')
    date_format = raw.get("date_format") or None
    if date_format is not None and (
        not isinstance(date_format, str) or (date_format != EXCEL_SERIAL and "%" not in date_format)
    ):
        problems.append(
            f'{where}: date_format is a strptime format such as "%d.%m.%Y", or "excel" for '
            "Excel serial numbers."
        )
    values = raw.get("values") or {}
    if not isinstance(values, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        problems.append(f'{where}: values maps source text to CDP text, e.g. {{"M": "male"}}.')
        values = {}
    split = raw.get("split") or None
    if split is not None:
        list_target = all(is_append(t) or t in LIST_TARGETS for t in targets) and targets
        if not isinstance(split, str) or not list_target:
            problems.append(f"{where}: split needs a separator and a list target (street, "
                            "phoneNumbers).")  # fmt: skip
    trim = raw.get("trim", True)
    if not isinstance(trim, bool):
        problems.append(f"{where}: trim is true or false.")
        trim = True
    return ColumnRule(
        source=source.strip(),
        targets=tuple(targets),
        trim=trim,
        case=case or None,
        date_format=date_format if isinstance(date_format, str) else None,
        values=dict(values),
        split=split if isinstance(split, str) else None,
    )


def _parse_constants(schema: str, raw: Any, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        problems.append('"constants" maps a target to the text every row gets.')
        return {}
    constants: dict[str, str] = {}
    for raw_target, value in raw.items():
        where = f'Constant "{str(raw_target)[:60]}"'
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{where}: the value must be non-empty text.")
            continue
        target = _check_target(schema, raw_target, where, problems)
        if target is None:
            continue
        if is_append(target):
            problems.append(f"{where}: a constant fills one field, not a list.")
            continue
        constants[target] = value.strip()
    return constants


def to_json(document: MappingDocument) -> dict[str, Any]:
    """The canonical JSON form of a document (defaults left out)."""
    columns = []
    for rule in document.columns:
        item: dict[str, Any] = {"source": rule.source}
        if rule.ignored:
            item["target"] = IGNORE
        else:
            item["target"] = rule.targets[0] if len(rule.targets) == 1 else list(rule.targets)
        if not rule.trim:
            item["trim"] = False
        if rule.case:
            item["case"] = rule.case
        if rule.date_format:
            item["date_format"] = rule.date_format
        if rule.values:
            item["values"] = dict(rule.values)
        if rule.split:
            item["split"] = rule.split
        columns.append(item)
    data: dict[str, Any] = {"format": FORMAT, "version": VERSION}
    if document.name:
        data["name"] = document.name
    data.update(schema=document.schema, columns=columns)
    if document.constants:
        data["constants"] = dict(document.constants)
    data["unmapped_columns"] = document.unmapped_columns
    return data
