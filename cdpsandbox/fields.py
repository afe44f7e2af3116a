"""Generic field checkers for record values: each takes (value, path) and raises Rejected.

The schemas that use them live in `validation.py`; codes and messages follow S-LOG (§1.5).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

# S-LOG (§1.5): wrong data type, or an attribute not defined in the schema.
VALIDATION_ERROR = "Validation error"

UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
# §3: ISO-8601 in UTC; samples are "2025-03-07T16:15:11.000Z" and "1985-12-24T00:00Z".
DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?Z$")
# S-FORMAT refers to "email validation rules" we could not read (§3.1); a plain shape check.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
ATTRIBUTE_RE = re.compile(r"^[A-Za-z0-9]+$")  # S-GEXT: alphanumeric attribute names


class Rejected(Exception):
    """A record failed: `code` is the log code as a string, `message` the documented text."""

    def __init__(self, code: str, message: str, detail: str = "") -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail


def invalid(detail: str) -> Rejected:
    """A 400 "Validation error" (S-LOG: wrong data type or attribute not in the schema)."""
    return Rejected("400", VALIDATION_ERROR, detail)


def text(value: Any, path: str) -> None:
    """A JSON string."""
    if not isinstance(value, str):
        raise invalid(f"{path} must be a string")


def nonempty_text(value: Any, path: str) -> None:
    """A JSON string with something besides whitespace."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{path} must be a non-empty string")


def number(value: Any, path: str) -> None:
    """A JSON number (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{path} must be a number")


def parse_datetime(value: Any) -> datetime | None:
    """Parse an ISO-8601 UTC ("Z") timestamp; None when it is not one."""
    if not isinstance(value, str):
        return None
    match = DATETIME_RE.match(value)
    if not match:
        return None
    year, month, day, hour, minute, second, _fraction = match.groups()
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), tzinfo=UTC
        )
    except ValueError:
        return None


def utc_datetime(value: Any, path: str) -> None:
    """An ISO-8601 UTC date-time ending in "Z"."""
    if parse_datetime(value) is None:
        raise invalid(f"{path} must be an ISO-8601 UTC date-time such as 2025-03-07T16:15:11.000Z")


def past_utc_datetime(value: Any, path: str) -> None:
    """An ISO-8601 UTC date-time in the past."""
    moment = parse_datetime(value)
    if moment is None:
        raise invalid(f"{path} must be an ISO-8601 UTC date-time such as 1985-12-24T00:00Z")
    if moment >= datetime.now(tz=UTC):
        raise invalid(f"{path} must be in the past")  # S-GUEST: dateOfBirth


def one_of(allowed: Iterable[str]) -> Callable[[Any, str], None]:
    """A checker for an enum; values are case-sensitive, as CDP enums are."""
    allowed = frozenset(allowed)

    def check(value: Any, path: str) -> None:
        if value not in allowed:
            raise invalid(f"{path} must be one of {', '.join(sorted(allowed))}")

    return check


def matches(regex: str, what: str) -> Callable[[Any, str], None]:
    """A checker for strings matching `regex`, described to users as `what`."""
    compiled = re.compile(regex)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str) or not compiled.match(value):
            raise invalid(f"{path} must be {what}")

    return check


def text_list(value: Any, path: str) -> None:
    """A JSON array of strings (phoneNumbers, street)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(f"{path} must be a JSON array of strings")


def email_address(value: Any, path: str) -> None:
    """Something shaped like an email address."""
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_RE.match(value):
        raise invalid(f"{path} is not a valid email address")


def object_list(value: Any, path: str) -> list[dict[str, Any]]:
    """A JSON array of objects; returns it for further checks."""
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid(f"{path} must be a JSON array of objects")
    return value


def check_fields(
    obj: dict[str, Any],
    rules: dict[str, Callable[[Any, str], None]],
    path: str,
    *,
    required: Iterable[str] = (),
    strict: bool = True,
) -> None:
    """Apply `rules` to present keys; unknown keys fail when `strict` (S-LOG: not in schema)."""
    for name in required:
        if name not in obj:
            raise invalid(f"{path}{name} is required")
    for name, value in obj.items():
        rule = rules.get(name)
        if rule is None:
            if strict:
                raise invalid(f"{path}{name} is not an attribute of this schema")
            continue
        # Null is not a documented value for any attribute: omit empty fields instead.
        if value is None:
            raise invalid(f"{path}{name} must not be null (omit it instead)")
        rule(value, f"{path}{name}")


def identifier_list(value: Any, path: str) -> None:
    """`identifiers[]`: provider and id required, expiryDate optional (S-GID)."""
    for index, item in enumerate(object_list(value, path)):
        check_fields(
            item,
            {"provider": nonempty_text, "id": nonempty_text, "expiryDate": utc_datetime},
            f"{path}[{index}].",
            required=("provider", "id"),
        )


def extension_groups(value: Any, path: str, *, names: tuple[str, ...], max_groups: int) -> None:
    """Extension objects: `name` in `names`, `key` "default", <=100 alphanumeric attributes."""
    groups = object_list(value, path)
    if len(groups) > max_groups:
        raise invalid(f"{path} holds at most {max_groups} extension object(s)")
    seen_names: set[str] = set()
    seen_attributes: set[str] = set()
    for index, group in enumerate(groups):
        where = f"{path}[{index}]"
        name = group.get("name")
        if name not in names:
            raise invalid(f"{where}.name must be one of {', '.join(names)}")
        if name in seen_names:
            raise invalid(f"{where}.name {name} appears twice")
        seen_names.add(name)
        if group.get("key") != "default":
            raise invalid(f'{where}.key must be "default"')
        attributes = {k: v for k, v in group.items() if k not in ("name", "key")}
        if len(attributes) > 100:
            raise invalid(f"{where} holds more than 100 attributes")
        for attribute, attr_value in attributes.items():
            if not ATTRIBUTE_RE.match(attribute):
                raise invalid(f"{where}.{attribute}: attribute names are alphanumeric only")
            if attribute in seen_attributes:
                raise invalid(f"{where}.{attribute}: attribute names must be unique across groups")
            seen_attributes.add(attribute)
            # S-OEXT: string, boolean, integer or number.
            if not isinstance(attr_value, str | bool | int | float):
                raise invalid(f"{where}.{attribute} must be a string, boolean or number")


def text_map(value: Any, path: str) -> None:
    """A JSON object whose values are strings (utms)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid(f"{path} must be an object of strings")


def json_object(value: Any, path: str) -> None:
    """Any JSON object."""
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object")


def is_uuid(value: str) -> bool:
    """True for a canonical 8-4-4-4-12 UUID string (any version, §1.2 / Q10)."""
    if not UUID_RE.match(value):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
