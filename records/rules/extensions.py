"""Guest data extension rules (S-GEXT, S-GEXTDM): groups ext/ext1..ext5, key default, at most
100 alphanumeric camelCase attributes per group, names unique across the guest's groups."""

import re
from collections.abc import Sequence
from typing import Any

from .codes import EXTENSION_KEY, EXTENSION_NAMES
from .fields import MAX_LONG_TEXT_LENGTH, is_mapping, scalar_value
from .normalizers import normalize_lower
from .problems import Problem, invalid_type, too_long

MAX_EXTENSION_GROUPS = len(EXTENSION_NAMES)  # ext + ext1..ext5: six
MAX_EXTENSION_ATTRIBUTES = 100  # per group
ATTRIBUTE_NAME_PATTERN = re.compile(r"[a-z][A-Za-z0-9]*")  # alphanumeric camelCase

# Attribute names are column names: a few hundred per file at most, checked once each.
_valid_names: set[str] = set()
_MAX_VALID_NAMES = 10_000


def clean_extension(value: Any, *, index: int) -> tuple[dict[str, Any], list[Problem]]:
    """Validate one extension group {"name": "ext", "key": "default", <attr>: <value>, ...}.

    Attributes follow name and key in sorted order, so equal groups serialise identically.
    Flat-file values are strings and stay strings (no type guessing); JSON keeps its types.
    A missing name means "ext", a missing key "default". Cross-group rules (unique names and
    attributes) are the guest's: see check_extension_groups.
    """
    problems: list[Problem] = []
    out = extension_into(value, index, problems)
    return out, problems


def extension_into(value: Any, index: int, problems: list[Problem]) -> dict[str, Any]:
    """clean_extension's body: append problems to the caller's list, return the value."""
    base = f"extensions.{index}"
    if not is_mapping(value):
        problems.append(invalid_type(base, "Extension", "an object"))
        return {}
    name = _extension_name(value.get("name"), base, problems)
    key = _extension_key(value.get("key"), base, problems)
    group = name if name in EXTENSION_NAMES else base  # the flat-file column prefix
    attributes: dict[str, Any] = {}
    for attr, raw in value.items():
        if raw is None or attr == "name" or attr == "key":
            continue
        if attr not in _valid_names and not _valid_name(attr):
            problems.append(
                Problem(
                    f"{group}.{attr}",
                    "invalid_attribute_name",
                    "Extension attribute names must start with a lower-case letter and "
                    "contain only letters and digits (camelCase).",
                )
            )
            if not isinstance(attr, str):
                continue
        if type(raw) is str:
            raw = raw.strip()
            if not raw:
                continue
            if len(raw) > MAX_LONG_TEXT_LENGTH:
                problems.append(
                    too_long(f"{group}.{attr}", "Extension attribute", MAX_LONG_TEXT_LENGTH)
                )
        elif not scalar_value(raw):
            problems.append(
                Problem(
                    f"{group}.{attr}",
                    "invalid_attribute_value",
                    "Extension attribute values must be text, a number or true/false, "
                    "not a list, an object or an empty number.",
                )
            )
            continue
        attributes[attr] = raw
    if len(attributes) > MAX_EXTENSION_ATTRIBUTES:
        problems.append(
            Problem(
                base,
                "too_many_attributes",
                f"Extension group has {len(attributes)} attributes; "
                f"at most {MAX_EXTENSION_ATTRIBUTES} are allowed.",
            )
        )
    out: dict[str, Any] = {"name": name, "key": key}
    for attr in sorted(attributes):
        out[attr] = attributes[attr]
    return out


def _valid_name(attr: Any) -> bool:
    if not isinstance(attr, str) or ATTRIBUTE_NAME_PATTERN.fullmatch(attr) is None:
        return False
    if len(_valid_names) < _MAX_VALID_NAMES:
        _valid_names.add(attr)
    return True


def _extension_name(raw: Any, base: str, problems: list[Problem]) -> str:
    if raw is None or raw == "":
        # One group named "ext" is the documented default; only ext1..ext5 need naming.
        return EXTENSION_NAMES[0]
    if not isinstance(raw, str):
        problems.append(invalid_type(f"{base}.name", "Extension name", "text"))
        return EXTENSION_NAMES[0]
    name = normalize_lower(raw) or EXTENSION_NAMES[0]
    if name not in EXTENSION_NAMES:
        problems.append(
            Problem(
                f"{base}.name",
                "invalid_choice",
                f"Extension name must be one of: {', '.join(EXTENSION_NAMES)}.",
            )
        )
    return name


def _extension_key(raw: Any, base: str, problems: list[Problem]) -> str:
    if raw is None or raw == "":
        return EXTENSION_KEY
    if not isinstance(raw, str):
        problems.append(invalid_type(f"{base}.key", "Extension key", "text"))
        return EXTENSION_KEY
    key = normalize_lower(raw) or EXTENSION_KEY
    if key != EXTENSION_KEY:
        problems.append(
            Problem(f"{base}.key", "invalid_choice", f"Extension key must be {EXTENSION_KEY}.")
        )
    return key


def check_extension_groups(
    groups: Sequence[tuple[int, dict[str, Any]]], problems: list[Problem]
) -> None:
    """Cross-group rules for (input index, cleaned group) pairs of one guest.

    A group is overwritten as a whole and attribute names are unique across all groups
    (S-GEXT), so two groups with one name, or one attribute in two groups, would lose data.
    """
    if len(groups) > MAX_EXTENSION_GROUPS:
        problems.append(
            Problem(
                "extensions",
                "too_many_extensions",
                f"A guest has at most {MAX_EXTENSION_GROUPS} extension groups "
                f"({', '.join(EXTENSION_NAMES)}).",
            )
        )
    if len(groups) == 1:
        return
    seen_groups: set[str] = set()
    seen_attributes: dict[str, str] = {}
    for index, group in groups:
        name = group["name"]
        if name in seen_groups:
            problems.append(
                Problem(
                    f"extensions.{index}.name",
                    "duplicate_extension",
                    "Extension group name is used by another group of this guest.",
                )
            )
        seen_groups.add(name)
        for attr in group:
            if attr == "name" or attr == "key":
                continue
            other = seen_attributes.get(attr)
            if other is None:
                seen_attributes[attr] = name
                continue
            problems.append(
                Problem(
                    f"{name}.{attr}",
                    "duplicate_attribute",
                    f"Extension attribute is also defined in group {other}; attribute "
                    "names must be unique across all extension groups.",
                )
            )
