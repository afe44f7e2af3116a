"""A flat file's guest rows straight to their canonical value: the compiled per-column plan.

The general path of a flat row builds a CDP-shaped dict (FlatMapping.to_row), then
clean_guest walks it key by key, finds each child list, skips its blank items and checks for
unknown keys: generic work a header already settles. A plan is compiled once per header: in
the canonical key order, each mapped column knows its cell, its field path and the rules'
own cleaner (records.rules: the same function clean_guest calls, never a copy). A row whose
cells every cleaner takes without a problem, with an identity, comes out of the plan with the
value clean_guest would give; a row with any problem gives None and takes the general path,
so what the report says of a row is always the general path's word
(tests/records/test_importing_plan.py compares both paths on valid and broken rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from records.importing.copytext import NULL, copy_array, escape
from records.mapping import FlatMapping
from records.mapping.rows import parse_ref
from records.models import Schema
from records.rules import EXTENSION_KEY, GUEST_TYPE, Problem, identity_key
from records.rules.extensions import check_extension_groups, extension_into
from records.rules.fields import Cleaner
from records.rules.guest import GUEST_SCALAR_CLEANERS
from records.rules.identifiers import check_identity, identifier_into
from records.rules.subscriptions import subscription_into
from records.serializing import GUEST_COLUMNS

# A scalar or list field the header has (or with a default): (its position among the typed
# columns, key, cleaner, one cell's column or None, the list's columns or None, the value when
# the row has none, its typed column's kind).
_Field = tuple[int, str, Cleaner, int | None, tuple[int, ...] | None, str | None, int]
# A child list: its objects' columns, in index order, each ((column, key), ...).
_Objects = tuple[tuple[tuple[int, str], ...], ...]

# What a plan gives for a row: (value, identity key, ref, typed columns as COPY text).
Planned = tuple[dict[str, Any], str, str | None, str]

# The kinds of typed columns (records.serializing.GUEST_COLUMNS).
TEXT, LIST, DATE, DATETIME = range(4)
_KINDS = {"text": TEXT, "list": LIST, "date": DATE, "datetime": DATETIME}

# Field paths of the children by position (the general path formats the same ones).
_PATHS = 50


class GuestRowPlan:
    """cells -> (canonical value, identity key, ref, typed columns as COPY text) for a row
    without problems, else None."""

    def __init__(self, mapping: FlatMapping, identity_providers: Sequence[str]) -> None:
        self.providers = list(identity_providers)
        self.width = len(mapping.headers)
        self.ref_col = mapping.ref_col
        self.scope = mapping.scope
        scalars = {key: col for col, key in mapping.scalars}
        lists = mapping.lists
        fields: list[_Field] = []
        # The typed columns' COPY text when absent; a row's own values replace them.
        absent: list[str] = []
        for position, (key, clean) in enumerate(GUEST_SCALAR_CLEANERS):
            default = GUEST_TYPE if key == "guestType" else None
            kind = _KINDS[GUEST_COLUMNS[key][1]]
            absent.append("" if kind == TEXT else "{}" if kind == LIST else NULL)
            col, cols = None, None
            if key in scalars:
                col = scalars[key]
            elif key in lists:
                if len(lists[key]) == 1 and lists[key][0][1] < 0:  # one cell, the whole list
                    col = lists[key][0][0]
                else:
                    cols = tuple(c for c, _ in lists[key])
            elif default is None:
                continue  # not in this file: absent from every row
            fields.append((position, key, clean, col, cols, default, kind))
        self.fields = tuple(fields)
        self.absent = absent
        self.identifiers = _objects(mapping, "identifiers")
        self.subscriptions = _objects(mapping, "subscriptions")
        self.extensions = tuple(
            (name, tuple(cols)) for name, cols in mapping.groups.items()
        )  # sorted by name, each group's columns by attribute (compile_header)
        self.identifier_paths = tuple(f"identifiers.{i}" for i in range(_PATHS))
        self.subscription_paths = tuple(f"subscriptions.{i}" for i in range(_PATHS))

    def __call__(self, cells: Sequence[str]) -> Planned | None:
        if len(cells) < self.width:
            cells = list(cells) + [""] * (self.width - len(cells))
        problems: list[Problem] = []
        out: dict[str, Any] = {}
        typed = self.absent.copy()  # the typed columns as COPY text
        for position, key, clean, col, cols, default, kind in self.fields:
            if col is not None:
                raw: Any = cells[col]
                if not raw or raw.isspace():
                    raw = None
            elif cols is not None:
                raw = [cells[c] for c in cols if cells[c] and not cells[c].isspace()] or None
            else:
                raw = None
            cleaned = clean(raw, key, problems) if raw is not None else default
            if cleaned is None:
                continue
            out[key] = cleaned
            # The rules wrote each value as PostgreSQL reads it (a CDP date, "1985-12-24T00:00Z",
            # is that day; a CDP date-time is ISO 8601).
            if kind == TEXT:
                typed[position] = escape(cleaned)
            elif kind == LIST:
                typed[position] = copy_array(cleaned)
            elif kind == DATE:
                typed[position] = cleaned[:10]
            else:
                typed[position] = cleaned
        if problems:
            return None

        identifiers = []
        for index, obj in enumerate(_filled(cells, self.identifiers)):
            if index >= _PATHS:
                return None
            ident = identifier_into(obj, self.identifier_paths[index], self.providers, problems)
            if ident:
                identifiers.append(ident)
        if identifiers:
            out["identifiers"] = identifiers
        check_identity(identifiers, self.providers, problems)

        subscriptions = []
        for index, obj in enumerate(_filled(cells, self.subscriptions)):
            if index >= _PATHS:
                return None
            subscription = subscription_into(obj, self.subscription_paths[index], problems)
            if subscription:
                subscriptions.append(subscription)
        if subscriptions:
            out["subscriptions"] = subscriptions

        groups = []
        for index, item in enumerate(_filled_groups(cells, self.extensions)):
            group = extension_into(item, index, problems)
            if len(group) > 2:  # a group without attributes would wipe the group in CDP
                groups.append((index, group))
        if groups:
            check_extension_groups(groups, problems)
            out["extensions"] = [group for _, group in groups]
        if problems:
            return None
        ref = parse_ref(cells[self.ref_col].strip(), "ref") if self.ref_col is not None else None
        key = identity_key(identifiers, identity_providers=self.providers)
        return out, key, ref, "\t".join(typed)


def _objects(mapping: FlatMapping, kind: str) -> _Objects:
    by_index = mapping.children.get(kind, {})
    return tuple(tuple(by_index[n]) for n in sorted(by_index))


def _filled(cells: Sequence[str], objects: _Objects) -> list[dict[str, str]]:
    """The child objects with a non-blank cell, as FlatMapping.to_row builds them."""
    filled = []
    for cols in objects:
        obj = {key: cells[col] for col, key in cols if cells[col] and not cells[col].isspace()}
        if obj:
            filled.append(obj)
    return filled


def _filled_groups(
    cells: Sequence[str], groups: tuple[tuple[str, tuple[tuple[int, str], ...]], ...]
) -> list[dict[str, str]]:
    """The extension groups with a non-blank cell, as FlatMapping.to_row builds them."""
    filled = []
    for name, cols in groups:
        attrs = {key: cells[col] for col, key in cols if cells[col] and not cells[col].isspace()}
        if attrs:
            filled.append({"name": name, "key": EXTENSION_KEY, **attrs})
    return filled


def guest_row_plan(mapping: FlatMapping, identity_providers: Sequence[str]) -> GuestRowPlan | None:
    """The plan of a guest file's header (None for other schemas)."""
    if mapping.schema != Schema.GUEST:
        return None
    return GuestRowPlan(mapping, identity_providers)
