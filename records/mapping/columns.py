"""Source columns -> CDP-shaped values: the one column mapping every import path uses.

Flat files (CSV, XLSX) name their columns with CDP's field names and a dotted convention for
nested values (docs/import-formats.md):

- guest: `email`, `firstName`, ... ; `phoneNumbers` / `street` (one cell, items separated by
  `;` or `|`) or `phoneNumbers.0`, `phoneNumbers.1`, ...; `identifiers.<n>.provider|id|
  expiryDate`; `subscriptions.<n>.name|pointOfSale|channel|status|effectiveDate`;
  `ext.<attribute>` and `ext1.<attribute>` ... `ext5.<attribute>` for extension groups;
- tracking: `serviceIdentifier`, `occurredAt`, `channel`, `type`, `uotr`, `utms.<key>`,
  `feedback.reasonCode`, `feedback.notes`, `identifiers.<n>.*`;
- migration: `migrateFrom.identifiers.<n>.provider|id|expiryDate` and the same under
  `migrateTo` (cdp-batch-api.md section 3.1.4);
- guest files may carry `mode` (`upsert`, or `insert`, which goes to CDP as `create`:
  records.rules.modes); empty cells take the import's option;
- subscription and extension files: the guest link (`identifiers.0.provider` +
  `identifiers.0.id`, or `email`) plus `name`, `pointOfSale`, `channel`, `status`,
  `effectiveDate` (one subscription a row) or `ext.<attribute>` columns (extension groups);
- any flat file may carry `ref` (the record's UUID).

JSON sources pass through: a guest or tracking object exactly as in cdp-batch-api.md section 3,
or a batch line `{ref, schema, mode, value}`; child objects are the link keys plus one
subscription, or plus one extension group (`name`, `key`, attributes).

Problems with the file as a whole raise MappingError (nothing is imported); problems with one
row raise RowError (the row is bad). Neither message ever repeats a cell value.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from records.mapping.orders import (
    OrderFlatMapping,
    compile_order_header,
    known_order_columns,
    map_order_object,
    order_canonical_column,
)
from records.mapping.rows import (
    HEADERLESS_PROBLEM,
    ChildScope,
    MappedRow,
    MappingError,
    RowError,
    header_label,
    looks_like_data,
    looks_like_value,
    parse_ref,
)
from records.models import Schema
from records.rules import EXTENSION_NAMES, GUEST_FIELDS, MIGRATION_SIDES, parse_guest_mode
from records.rules.identifiers import IDENTIFIER_FIELDS
from records.rules.subscriptions import SUBSCRIPTION_FIELDS
from records.rules.tracking import FEEDBACK_FIELDS, TRACKING_FIELDS

MAX_INDEX = 49  # identifiers.<n>, subscriptions.<n>, phoneNumbers.<n>: n in 0..49

GUEST_SCALARS: tuple[str, ...] = tuple(
    k for k in GUEST_FIELDS if k not in ("identifiers", "subscriptions", "extensions")
)
GUEST_LISTS: frozenset[str] = frozenset(("phoneNumbers", "street"))
IDENTIFIER_KEYS: tuple[str, ...] = IDENTIFIER_FIELDS
SUBSCRIPTION_KEYS: tuple[str, ...] = SUBSCRIPTION_FIELDS
TRACKING_SCALARS: tuple[str, ...] = ("serviceIdentifier", "occurredAt", "channel", "type", "uotr")
FEEDBACK_KEYS: tuple[str, ...] = FEEDBACK_FIELDS
LINK_KEYS: frozenset[str] = frozenset(("identifiers", "email"))
ENVELOPE_KEYS: frozenset[str] = frozenset(("ref", "schema", "mode", "value"))
# The mode each schema is staged with; a batch line with another mode is refused (a guest
# `delete` line staged as an upsert would do the opposite of what its author meant). Guests
# take either of their modes (records.rules.modes), named by the line or a `mode` column.
MODES: dict[str, str] = {
    Schema.GUEST: "upsert",
    Schema.TRACKING: "insert",
    Schema.ORDER: "insert",
    Schema.MIGRATION: "guest",
}
# The identifier lists of a migration file's two sides, as child kinds of the dotted names.
MIGRATION_KINDS: tuple[str, ...] = tuple(f"{side}.identifiers" for side in MIGRATION_SIDES)
GUEST_MODE_PROBLEM = "mode must be upsert or insert (sent to CDP as create)."

_INDEXED = re.compile(
    r"(identifiers|subscriptions|phoneNumbers|street|migrateFrom\.identifiers"
    r"|migrateTo\.identifiers)\.(\d+)(?:\.(\w+))?"
)


# -- flat files ------------------------------------------------------------------------------


def known_columns(schema: str) -> list[str]:
    """Column names a flat file of this schema may use (templates with <n> / <attribute>)."""
    if schema == Schema.GUEST:
        return [
            "ref",
            "mode",
            *GUEST_SCALARS,
            *[f"identifiers.<n>.{k}" for k in IDENTIFIER_KEYS],
            *[f"subscriptions.<n>.{k}" for k in SUBSCRIPTION_KEYS],
            "phoneNumbers.<n>",
            "street.<n>",
            *[f"{name}.<attribute>" for name in EXTENSION_NAMES],
        ]
    if schema == Schema.ORDER:
        return known_order_columns()
    if schema == Schema.TRACKING:
        return [
            "ref",
            *TRACKING_SCALARS,
            "utms.<key>",
            *[f"feedback.{k}" for k in FEEDBACK_KEYS],
            *[f"identifiers.<n>.{k}" for k in IDENTIFIER_KEYS],
        ]
    if schema == Schema.MIGRATION:
        return ["ref", *[f"{kind}.<n>.{k}" for kind in MIGRATION_KINDS for k in IDENTIFIER_KEYS]]
    link = ["identifiers.0.provider", "identifiers.0.id", "email"]
    if schema == Schema.SUBSCRIPTION:
        return [*link, *SUBSCRIPTION_KEYS]
    return [*link, *[f"{name}.<attribute>" for name in EXTENSION_NAMES]]


def _suggestion_names(schema: str) -> list[str]:
    names = []
    for name in known_columns(schema):
        names.append(name.replace("<n>", "0").replace("<attribute>", "attribute"))
    return names


def _closest(name: str, schema: str) -> list[str]:
    candidates = _suggestion_names(schema)
    by_fold = {c.casefold(): c for c in candidates}
    found = difflib.get_close_matches(name.casefold(), list(by_fold), n=3, cutoff=0.6)
    return [by_fold[f] for f in found]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def unknown_columns_message(names: Sequence[str], schema: str, *, what: str = "column") -> str:
    """ "Unknown columns: "emial" (did you mean "email"?)." + what to do."""
    parts = []
    for name in names:
        close = _closest(name, schema) if not looks_like_value(name) else []
        quoted = " or ".join('"' + c + '"' for c in close)
        hint = f" (did you mean {quoted}?)" if close else ""
        parts.append(f"{header_label(name)}{hint}")
    plural = "s" if len(names) > 1 else ""
    return (
        f"Unknown {what}{plural} for {_article(schema)} {schema} file: {', '.join(parts)}. "
        f"Rename or remove "
        f"{'them' if plural else 'it'}, choose “Ignore unknown columns”, or map the file's own "
        "columns (docs/mapping.md). See docs/import-formats.md for the column names."
    )


@dataclass(slots=True)
class FlatMapping:
    """A compiled header: turns one row's cells into a MappedRow."""

    schema: str
    headers: list[str]
    scalars: list[tuple[int, str]]
    lists: dict[str, list[tuple[int, int]]]  # key -> [(col, n)]; n = -1 for the bare column
    children: dict[str, dict[int, list[tuple[int, str]]]]  # kind -> n -> [(col, key)]
    groups: dict[str, list[tuple[int, str]]]  # ext name / "utms" / "feedback" -> [(col, key)]
    ref_col: int | None
    scope: ChildScope
    mode_col: int | None = None
    # Derived in __post_init__ (the per-row hot path reads these).
    _children: list[tuple[str, list[list[tuple[int, str]]]]] = field(init=False)
    _groups: list[tuple[str, list[tuple[int, str]]]] = field(init=False)
    _lists: list[tuple[str, list[tuple[int, int]]]] = field(init=False)
    _width: int = field(init=False)
    _child_file: bool = field(init=False)

    def __post_init__(self) -> None:
        # Per-row work is the hot path of a flat import: order everything once, here.
        self._children = [
            (kind, [cols for _, cols in sorted(by_index.items())])
            for kind, by_index in self.children.items()
        ]
        self._groups = [
            (name, sorted(cols, key=lambda item: item[1])) for name, cols in self.groups.items()
        ]
        self._lists = list(self.lists.items())
        self._width = len(self.headers)
        self._child_file = self.schema in (Schema.SUBSCRIPTION, Schema.EXTENSION)

    def to_row(self, cells: Sequence[str]) -> MappedRow:
        """Build the CDP-shaped value; empty cells are absent values."""
        if len(cells) < self._width:
            cells = list(cells) + [""] * (self._width - len(cells))
        value: dict[str, Any] = {}
        for col, key in self.scalars:
            cell = cells[col]
            if cell and not cell.isspace():
                value[key] = cell
        for key, cols in self._lists:
            items = [cells[col] for col, _ in cols if cells[col] and not cells[col].isspace()]
            if items:
                value[key] = items if cols[0][1] >= 0 or len(items) > 1 else items[0]
        for kind, groups in self._children:
            objects = []
            for cols in groups:
                obj = {}
                for col, key in cols:
                    cell = cells[col]
                    if cell and not cell.isspace():
                        obj[key] = cell
                if obj:
                    objects.append(obj)
            if objects:
                value[kind] = objects
        if self._groups:
            extensions = []
            for name, cols in self._groups:
                attrs = {}
                for col, key in cols:
                    cell = cells[col]
                    if cell and not cell.isspace():
                        attrs[key] = cell
                if not attrs:
                    continue
                if name in ("utms", "feedback"):
                    value[name] = attrs
                else:
                    extensions.append({"name": name, "key": "default", **attrs})
            if extensions:
                value["extensions"] = extensions
        ref = None
        if self.ref_col is not None:
            ref = parse_ref(cells[self.ref_col].strip(), "ref")
        if self._child_file:
            return _child_row(self.schema, value, ref)
        if self.schema == Schema.GUEST:
            mode = None  # the import's option
            if self.mode_col is not None and cells[self.mode_col].strip():
                mode = parse_guest_mode(cells[self.mode_col])
                if mode is None:
                    raise RowError("mode", "unsupported_mode", GUEST_MODE_PROBLEM)
            return MappedRow(value=value, ref=ref, mode=mode, scope=self.scope)
        if self.schema == Schema.MIGRATION:
            value = {
                side: {"identifiers": value.pop(kind)}
                for side, kind in zip(MIGRATION_SIDES, MIGRATION_KINDS, strict=True)
                if kind in value
            }
        return MappedRow(value=value, ref=ref, mode=MODES[self.schema], scope=self.scope)


def _child_row(schema: str, value: dict[str, Any], ref: str | None) -> MappedRow:
    link = _link_from(value)
    if schema == Schema.SUBSCRIPTION:
        body = {k: value[k] for k in SUBSCRIPTION_KEYS if k in value}
    else:
        body = {"extensions": value.get("extensions", [])}
    return MappedRow(value=body, ref=ref, link=link)


def _link_from(value: Mapping[str, Any]) -> dict[str, str] | None:
    identifiers = value.get("identifiers")
    if isinstance(identifiers, list) and identifiers:
        first = identifiers[0]
        if isinstance(first, Mapping) and first.get("provider") and first.get("id"):
            provider, ident = first["provider"], first["id"]
            if isinstance(ident, int) and not isinstance(ident, bool):
                ident = str(ident)
            if isinstance(provider, str) and isinstance(ident, str):
                return {"provider": provider, "id": ident}
    email = value.get("email")
    if isinstance(email, str) and email.strip():
        return {"email": email}
    return None


def _canonical_names(schema: str) -> dict[str, str]:
    names = {n.casefold(): n for n in known_columns(schema) if "<" not in n}
    return names


def compile_header(
    schema: str, headers: Sequence[str], *, ignore_unknown: bool = False
) -> FlatMapping | OrderFlatMapping:
    """Compile a flat file's header row for `schema`; raise MappingError for a header that
    cannot be imported (unknown, duplicate or missing columns)."""
    if schema == Schema.ORDER:
        return compile_order_header(
            headers,
            ignore_unknown=ignore_unknown,
            unknown_message=lambda names: unknown_columns_message(names, schema),
        )
    fixed = _canonical_names(schema)
    group_names = _group_names(schema)
    scalars: list[tuple[int, str]] = []
    lists: dict[str, list[tuple[int, int]]] = {}
    children: dict[str, dict[int, list[tuple[int, str]]]] = {}
    groups: dict[str, list[tuple[int, str]]] = {}
    ref_col: int | None = None
    mode_col: int | None = None
    seen: dict[str, int] = {}
    unknown: list[str] = []
    duplicates: list[str] = []
    clean_headers = [h.strip() for h in headers]
    for col, header in enumerate(clean_headers):
        if not header:
            continue  # a trailing delimiter or an unnamed spreadsheet column
        canonical = _canonical_column(schema, header, fixed, group_names)
        if canonical is None:
            unknown.append(header)
            continue
        if canonical in seen:
            duplicates.append(canonical)
            continue
        seen[canonical] = col
        kind, a, b = canonical
        if kind == "ref":
            ref_col = col
        elif kind == "mode":
            mode_col = col
        elif kind == "scalar":
            scalars.append((col, a))
        elif kind == "list":
            lists.setdefault(a, []).append((col, b))
        elif kind == "child":
            children.setdefault(a, {}).setdefault(b[0], []).append((col, b[1]))
        else:
            groups.setdefault(a, []).append((col, b))
    # Every problem of the header at once: a steward fixes them in one go, not one per try.
    problems: list[str] = []
    if duplicates:
        names = ", ".join(f'"{_column_label(d)}"' for d in duplicates)
        problems.append(f"These columns appear more than once: {names}. Keep one of each.")
    if unknown and not ignore_unknown:
        if looks_like_data(clean_headers):
            raise MappingError(HEADERLESS_PROBLEM)
        problems.append(unknown_columns_message(unknown, schema))
    for key, cols in lists.items():
        if any(n < 0 for _, n in cols) and len(cols) > 1:
            problems.append(
                f'Use either one "{key}" column or "{key}.0", "{key}.1", ... columns, not both.'
            )
        cols.sort(key=lambda item: item[1])
    missing = _missing_required(schema, set(seen), children, groups)
    if missing:
        problems.append(missing)
    if problems:
        raise MappingError(" ".join(problems), problems=problems)
    for by_index in children.values():
        for cols in by_index.values():
            cols.sort(key=lambda item: _child_key_order(item[1]))
    ext_groups = frozenset(g for g in groups if g in EXTENSION_NAMES)
    scope = ChildScope(
        subscriptions="subscriptions" in children,
        extension_groups=ext_groups,
    )
    ordered_groups = {name: groups[name] for name in sorted(groups)}
    return FlatMapping(
        schema=schema,
        headers=clean_headers,
        scalars=scalars,
        lists=lists,
        children=children,
        groups=ordered_groups,
        ref_col=ref_col,
        scope=scope,
        mode_col=mode_col,
    )


def _child_key_order(key: str) -> int:
    order = IDENTIFIER_KEYS + SUBSCRIPTION_KEYS
    return order.index(key) if key in order else len(order)


def _group_names(schema: str) -> tuple[str, ...]:
    if schema == Schema.TRACKING:
        return ("utms", "feedback")
    if schema in (Schema.GUEST, Schema.EXTENSION):
        return EXTENSION_NAMES
    return ()


def _canonical_column(
    schema: str, header: str, fixed: dict[str, str], group_names: tuple[str, ...]
) -> tuple[str, Any, Any] | None:
    """("ref"|"scalar"|"list"|"child"|"group", a, b) for a known column, else None."""
    name = fixed.get(header.casefold())
    if name == "ref":
        return ("ref", None, None)
    if name == "mode":
        return ("mode", None, None)
    child_schema = schema in (Schema.SUBSCRIPTION, Schema.EXTENSION)
    if name is not None and "." not in name:
        if schema == Schema.GUEST and name in GUEST_LISTS:
            return ("list", name, -1)
        return ("scalar", name, None)
    match = _INDEXED.fullmatch(header)
    if match is None:
        folded = header.casefold()
        for candidate in (
            "identifiers",
            "subscriptions",
            "phoneNumbers",
            "street",
            *MIGRATION_KINDS,
        ):
            prefix = candidate.casefold() + "."
            if folded.startswith(prefix):
                match = _INDEXED.fullmatch(candidate + header[len(candidate) :])
                break
    if match is not None:
        kind, n, key = match.group(1), int(match.group(2)), match.group(3)
        if n > MAX_INDEX:
            return None
        if kind in ("phoneNumbers", "street"):
            if schema != Schema.GUEST or key is not None:
                return None
            return ("list", kind, n)
        if (kind in MIGRATION_KINDS) != (schema == Schema.MIGRATION):
            return None  # a migration file has only its two sides' identifiers
        allowed = SUBSCRIPTION_KEYS if kind == "subscriptions" else IDENTIFIER_KEYS
        if kind == "subscriptions" and schema != Schema.GUEST:
            return None
        if child_schema and (kind != "identifiers" or n != 0 or key == "expiryDate"):
            return None
        key = next((k for k in allowed if key and k.casefold() == key.casefold()), None)
        if key is None:
            return None
        return ("child", kind, (n, key))
    group, dot, attr = header.partition(".")
    if dot and attr and "." not in attr:
        group_folded = group.casefold()
        for candidate in group_names:
            if candidate.casefold() == group_folded:
                if candidate == "feedback":
                    attr_name = next(
                        (k for k in FEEDBACK_KEYS if k.casefold() == attr.casefold()), None
                    )
                    if attr_name is None:
                        return None
                    return ("group", candidate, attr_name)
                # Extension attribute names and UTM keys are kept as written (case matters).
                return ("group", candidate, attr)
    return None


def _column_label(canonical: tuple[str, Any, Any]) -> str:
    kind, a, b = canonical
    if kind in ("ref", "mode"):
        return kind
    if kind == "scalar":
        return a
    if kind == "list":
        return a if b < 0 else f"{a}.{b}"
    if kind == "child":
        return f"{a}.{b[0]}.{b[1]}"
    return f"{a}.{b}"


def _missing_required(
    schema: str,
    seen: set[tuple[str, Any, Any]],
    children: dict[str, dict[int, list[tuple[int, str]]]],
    groups: dict[str, list[tuple[int, str]]],
) -> str:
    """The sentence naming the required columns the header lacks, or ""."""
    missing: list[str] = []
    identifiers = children.get("identifiers", {})
    for kind in ("identifiers", *MIGRATION_KINDS):
        for n, cols in sorted(children.get(kind, {}).items()):
            keys = {key for _, key in cols}
            for needed in ("provider", "id"):
                if needed not in keys:
                    missing.append(f"{kind}.{n}.{needed}")
    if schema == Schema.MIGRATION:
        for kind in MIGRATION_KINDS:
            if 0 not in children.get(kind, {}):
                missing.extend([f"{kind}.0.provider", f"{kind}.0.id"])
    elif schema == Schema.GUEST:
        if 0 not in identifiers:
            missing[:0] = ["identifiers.0.provider", "identifiers.0.id"]
    elif schema == Schema.TRACKING:
        for key in ("serviceIdentifier", "occurredAt", "type"):
            if ("scalar", key, None) not in seen:
                missing.append(key)
    else:
        has_email = ("scalar", "email", None) in seen
        if 0 not in identifiers and not has_email:
            missing.append("identifiers.0.provider + identifiers.0.id (or email)")
        if schema == Schema.SUBSCRIPTION:
            for key in ("name", "pointOfSale", "channel", "status"):
                if ("scalar", key, None) not in seen:
                    missing.append(key)
        elif not any(name in EXTENSION_NAMES for name in groups):
            missing.append("ext.<attribute> (at least one extension attribute)")
    if not missing:
        return ""
    unique = list(dict.fromkeys(missing))
    plural = "s" if len(unique) > 1 else ""
    return (
        f"Missing required column{plural} for a {schema} file: "
        f"{', '.join(unique)}. See docs/import-formats.md."
    )


# -- JSON ------------------------------------------------------------------------------------


def map_json_object(schema: str, obj: Any, *, ignore_unknown: bool = False) -> MappedRow:
    """A JSON object (CDP value, batch line, or child object) as a MappedRow.

    Raises RowError for an object that cannot be staged, MappingError for unknown keys
    (unless ignore_unknown, which drops them).
    """
    if not isinstance(obj, Mapping):
        raise RowError("", "not_an_object", "Each record must be a JSON object.")
    ref = mode = None
    if "value" in obj and "schema" in obj:
        extra = [k for k in obj if k not in ENVELOPE_KEYS]
        if extra and not ignore_unknown:
            raise MappingError(unknown_columns_message(extra, schema, what="batch line key"))
        line_schema = obj.get("schema")
        if schema not in MODES:
            raise RowError(
                "schema",
                "wrong_schema",
                f"Batch lines hold guests, orders or tracking events; a {schema} file takes "
                f"{schema} objects (see docs/import-formats.md).",
            )
        if line_schema != schema:
            raise RowError(
                "schema",
                "wrong_schema",
                f"This batch line's schema is not {schema}; this import takes {schema} records.",
            )
        mode = obj.get("mode")
        if schema == Schema.GUEST:
            mode = parse_guest_mode(mode)
            if mode is None:
                raise RowError("mode", "unsupported_mode", GUEST_MODE_PROBLEM)
        elif mode != MODES[schema]:
            raise RowError(
                "mode",
                "unsupported_mode",
                f"Only mode {MODES[schema]} can be staged for {schema} records.",
            )
        if obj.get("ref") not in (None, ""):
            ref = parse_ref(obj.get("ref"), "ref")
        obj = obj["value"]
        if not isinstance(obj, Mapping):
            raise RowError("value", "not_an_object", "The batch line's value must be an object.")
    if schema == Schema.GUEST:
        value = _known_keys(obj, frozenset(GUEST_FIELDS), schema, ignore_unknown)
        value = _sorted_extensions(value)
        scope = ChildScope(
            subscriptions="subscriptions" in value,
            extension_groups=None if "extensions" in value else frozenset(),
        )
        return MappedRow(value=value, ref=ref, mode=mode, scope=scope)
    if schema == Schema.ORDER:
        return map_order_object(
            obj,
            ref=ref,
            ignore_unknown=ignore_unknown,
            unknown_message=lambda names: unknown_columns_message(names, schema, what="field"),
        )
    if schema == Schema.MIGRATION:
        value = _known_keys(obj, frozenset(MIGRATION_SIDES), schema, ignore_unknown)
        return MappedRow(value=value, ref=ref, mode=MODES[schema])
    if schema == Schema.TRACKING:
        value = _known_keys(obj, frozenset(TRACKING_FIELDS), schema, ignore_unknown)
        return MappedRow(value=value, ref=ref, mode=mode or MODES[schema])
    link = _link_from(obj)
    if schema == Schema.SUBSCRIPTION:
        known = frozenset(SUBSCRIPTION_KEYS) | LINK_KEYS
        body = _known_keys(obj, known, schema, ignore_unknown)
        return MappedRow(
            value={k: body[k] for k in SUBSCRIPTION_KEYS if k in body}, ref=ref, link=link
        )
    group = {k: v for k, v in obj.items() if k not in LINK_KEYS}
    return MappedRow(value={"extensions": [group]}, ref=ref, link=link)


def _known_keys(
    obj: Mapping[str, Any], known: frozenset[str], schema: str, ignore_unknown: bool
) -> dict[str, Any]:
    if known.issuperset(obj):
        return dict(obj)
    if not ignore_unknown:
        raise MappingError(
            unknown_columns_message([k for k in obj if k not in known], schema, what="field")
        )
    return {k: v for k, v in obj.items() if k in known}


def _sorted_extensions(value: dict[str, Any]) -> dict[str, Any]:
    """Extension groups by name and their attributes sorted: the order the admin path rebuilds
    (Extension rows are ordered by name; JSONB does not keep attribute order)."""
    extensions = value.get("extensions")
    if not isinstance(extensions, list) or not all(isinstance(e, Mapping) for e in extensions):
        return value
    groups = []
    for group in extensions:
        head = {k: group[k] for k in ("name", "key") if k in group}
        rest = {k: group[k] for k in sorted(group, key=str) if k not in ("name", "key")}
        groups.append({**head, **rest})
    groups.sort(key=lambda g: str(g.get("name") or "ext"))
    value["extensions"] = groups
    return value


def canonical_column(schema: str, name: str) -> str | None:
    """A column name as the convention writes it ("E-mail" is not one, "EMAIL" is "email"), or
    None when a file of this schema has no such column."""
    if schema == Schema.ORDER:
        return order_canonical_column(name)
    found = _canonical_column(schema, name.strip(), _canonical_names(schema), _group_names(schema))
    return None if found is None else _column_label(found)


# -- the way back: a CDP value as the cells of a flat file ----------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def flatten_value(schema: str, value: Mapping[str, Any]) -> dict[str, str]:
    """A guest or tracking value as {column: cell} in this module's convention: the layout
    compile_header reads back, so an exported file re-imports as the same value."""
    cells: dict[str, str] = {}
    for key, item in value.items():
        if key in MIGRATION_SIDES and isinstance(item, Mapping):
            for n, child in enumerate(item.get("identifiers") or ()):
                if isinstance(child, Mapping):
                    for child_key, child_value in child.items():
                        cells[f"{key}.identifiers.{n}.{child_key}"] = _cell(child_value)
        elif key in ("identifiers", "subscriptions") and isinstance(item, list):
            for n, child in enumerate(item):
                if isinstance(child, Mapping):
                    for child_key, child_value in child.items():
                        cells[f"{key}.{n}.{child_key}"] = _cell(child_value)
        elif key in GUEST_LISTS and isinstance(item, list):
            for n, entry in enumerate(item):
                cells[f"{key}.{n}"] = _cell(entry)
        elif key == "extensions" and isinstance(item, list):
            for group in item:
                if isinstance(group, Mapping):
                    name = group.get("name") or "ext"
                    for attr, attr_value in group.items():
                        if attr not in ("name", "key"):
                            cells[f"{name}.{attr}"] = _cell(attr_value)
        elif key in ("utms", "feedback") and isinstance(item, Mapping):
            for attr, attr_value in item.items():
                cells[f"{key}.{attr}"] = _cell(attr_value)
        else:
            cells[key] = _cell(item)
    return cells


def column_order(schema: str) -> Any:
    """A sort key putting columns in the order of known_columns (then by position, name)."""
    templates = known_columns(schema)

    def key(column: str) -> tuple[int, int, str]:
        if column in templates:
            return (templates.index(column), 0, column)
        indexed = re.fullmatch(r"(\w+(?:\.identifiers)?)\.(\d+)(?:\.(\w+))?", column)
        if indexed:
            template = f"{indexed.group(1)}.<n>" + (
                f".{indexed.group(3)}" if indexed.group(3) else ""
            )
            number = int(indexed.group(2))
        elif "." in column:
            template, number = column.split(".", 1)[0] + ".<attribute>", 0
            if template not in templates:
                template = column.split(".", 1)[0] + ".<key>"
        else:
            template, number = column, 0
        where = templates.index(template) if template in templates else len(templates)
        return (where, number, column)

    return key
