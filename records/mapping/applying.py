"""Applying a mapping document to a file: its header becomes the CDP column vocabulary.

A mapped file is read as if it were a CDP-shaped flat file: `plan_mapping` checks the
document against the file's header (every problem at once) and compiles, per CDP column, the
source cell and transform that fill it; `MappingPlan.cells` turns one source row into the
cells of that virtual CDP header, which records.mapping.columns then maps like any other file.
So one definition of the CDP columns, and one stager, serve every layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from records.mapping.columns import (
    HEADERLESS_PROBLEM,
    FlatMapping,
    MappingError,
    compile_header,
    header_label,
    looks_like_data,
)
from records.mapping.documents import (
    IGNORE,
    MappingDocument,
    is_append,
    normalise_header,
)
from records.mapping.transforms import Transform, compile_rule

# The group a child column belongs to: its constants (a provider, a subscription's name) are
# written only on rows that have a value in that group, so a row without a customer number
# gets no identifier {provider: CUSTOMER_NO} and nothing else.
_CHILD_GROUP = re.compile(r"(identifiers|subscriptions)\.(\d+)\.")


@dataclass(frozen=True, slots=True)
class MappingPlan:
    """A document compiled for one header: source row -> cells of the virtual CDP header."""

    header: list[str]  # the virtual CDP header (canonical column names)
    flat: FlatMapping  # that header compiled by the column vocabulary
    sources: tuple[tuple[int, Transform], ...]  # per virtual column fed from a source cell
    constants: tuple[str, ...]  # the values of the constant columns after them
    # For each constant column: the virtual columns of its child group (empty: always).
    constant_groups: tuple[tuple[int, ...], ...]

    def cells(self, row: Sequence[str]) -> list[str]:
        width = len(row)
        out = [fn(row[col]) if col < width else "" for col, fn in self.sources]
        for value, group in zip(self.constants, self.constant_groups, strict=True):
            if group and not any(out[i] and not out[i].isspace() for i in group):
                out.append("")
            else:
                out.append(value)
        return out


def plan_mapping(document: MappingDocument, header: Sequence[str]) -> MappingPlan:
    """Compile a document for a file's header; MappingError lists every problem at once
    (columns the mapping names that the file lacks, file columns the mapping does not know,
    and the resulting CDP columns' duplicates and missing required ones)."""
    problems: list[str] = []
    by_name: dict[str, int] = {}
    for col, cell in enumerate(header):
        if cell and cell.strip():
            by_name.setdefault(normalise_header(cell), col)
    known = {normalise_header(rule.source) for rule in document.columns}
    missing = [
        rule.source for rule in document.columns if normalise_header(rule.source) not in by_name
    ]
    if missing:
        names = ", ".join(f'"{m[:60]}"' for m in missing)
        problems.append(f"The file lacks columns the mapping reads: {names}.")
    extra = [h for h in header if h and h.strip() and normalise_header(h) not in known]
    if extra and document.unmapped_columns != IGNORE:
        if looks_like_data(header):
            problems.append(HEADERLESS_PROBLEM)
        else:
            names = ", ".join(header_label(h) for h in extra)
            problems.append(
                f"The file has columns the mapping does not cover: {names}. Map or ignore them "
                "in the mapping."
            )
    virtual: list[str] = []
    sources: list[tuple[int, Transform]] = []
    appended: dict[str, int] = {}
    for rule in document.columns:
        col = by_name.get(normalise_header(rule.source))
        if col is None or rule.ignored:
            continue
        transform = compile_rule(rule)
        for target in rule.targets:
            if is_append(target):
                key = target[:-2]
                target = f"{key}.{appended.get(key, 0)}"
                appended[key] = appended.get(key, 0) + 1
            virtual.append(target)
            sources.append((col, transform))
    constants = list(document.constants.items())
    groups: list[tuple[int, ...]] = []
    for target, _value in constants:
        match = _CHILD_GROUP.match(target)
        prefix = match.group(0) if match else None
        groups.append(
            tuple(i for i, name in enumerate(virtual) if prefix and name.startswith(prefix))
        )
        virtual.append(target)
    flat = None
    try:
        flat = compile_header(document.schema, virtual)
    except MappingError as exc:
        problems.extend(exc.problems)
    if problems or flat is None:
        raise MappingError(" ".join(problems), problems=problems)
    return MappingPlan(
        header=virtual,
        flat=flat,
        sources=tuple(sources),
        constants=tuple(value for _target, value in constants),
        constant_groups=tuple(groups),
    )


def mapped_rows(
    plan: MappingPlan, rows: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    """The source rows as cells of the plan's virtual CDP header (same row numbers)."""
    cells = plan.cells
    for number, row in rows:
        yield number, cells(row)
