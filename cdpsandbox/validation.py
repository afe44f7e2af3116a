"""The sandbox's own record rules: envelope (§2.1), guest (§3.1), order (§3.2), tracking (§3.3).

Pure functions. A rule that fails raises `Rejected` with the documented log `code` and
`message` (S-LOG table in §1.5) plus a `detail` only the control endpoint shows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Documented log messages (§1.5). The identity text is the one real logs show (B-KEZHAN).
VALIDATION_ERROR = "Validation error"
NOT_ENOUGH_IDENTITY = "Not enough identifying information"
NOT_ENOUGH_IDENTITY_DELETE = "Not Enough Identifying Info"  # S-GDEL spelling
PARSE_FAILED = "Failed to parse import line"
UNSUPPORTED_MODE = "Unsupported mode"

# S-LOG: the modes the platform knows; anything else is 402.
KNOWN_MODES = frozenset({"insert", "create", "upsert", "merge", "delete", "gdpr_delete"})
# §2.1 matrix, accepting every documented variant (§7): guest `merge` (2015, older 2.1 page),
# guest `create` (implied by the 409 "create" row of S-LOG), order `upsert` (S-ORDER, Q5),
# tracking `insert` (G-NOTES only). Guest `insert` is "not supported" (S-GUEST, BX15).
MODES_BY_SCHEMA: dict[str, frozenset[str]] = {
    "guest": frozenset({"upsert", "merge", "create", "delete", "gdpr_delete"}),
    "migration": frozenset({"guest"}),
    "order": frozenset({"insert", "upsert", "delete"}),
    "tracking": frozenset({"insert"}),
}
ENVELOPE_KEYS = frozenset({"ref", "schema", "mode", "value"})

UUID_RE = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
# §3: ISO-8601 in UTC; samples are "2025-03-07T16:15:11.000Z" and "1985-12-24T00:00Z".
DATETIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?Z$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
ATTRIBUTE_RE = re.compile(r"^[A-Za-z0-9]+$")  # S-GEXT: alphanumeric attribute names

TITLES = frozenset(
    [
        "Br",
        "Brigadier",
        "Capt",
        "Colonel",
        "Dame",
        "Dr",
        "Elder",
        "Fr",
        "General",
        "Hon",
        "Judge",
        "Lord",
        "Master",
        "Miss",
        "Mr",
        "Mrs",
        "Ms",
        "Mstr",
        "Prof",
        "Rabbi",
        "Rev",
        "Shaikha",
        "Sheikh",
        "Sir",
        "Sister",
        "Sr",
        "Lady",
    ]  # Lady: BX15 list
)
GENDERS = frozenset({"male", "female", "unknown"})
SUBSCRIPTION_STATUSES = frozenset({"PENDING", "SUBSCRIBED", "UNSUBSCRIBED", "UNKNOWN"})
ORDER_CHANNELS = frozenset(
    [
        "AIRPORT_KIOSK",
        "BRANCH",
        "CALL_CENTER",
        "GDS",
        "KIOSK",
        "MOBILE_APP",
        "MOBILE_WEB",
        "OFFLINE",
        "OTA",
        "OTHER",
        "WEB",
    ]
)
# Current list + data-lake `UNKNOWN` + the 2015 list (misspellings sic), §3.2.
ORDER_STATUSES = frozenset(
    [
        "PURCHASED",
        "PAYMENT_PENDING",
        "CONFIRMED",
        "CANCELLED",
        "REFUNDED",
        "UNKNOWN",
        "RESERVED",
        "DECLINED",
        "PENDING",
        "PARTIALY_CONFIRMED",
        "PARTIALY_REFUNDED",
    ]
)
PAYMENT_TYPES = frozenset({"Card", "Paypal", "Voucher", "ATM", "Cash", "Other"})
CARD_TYPES = frozenset({"Mastercard", "Visa", "Diners", "American Express"})
GUEST_EXTENSION_NAMES = ("ext", "ext1", "ext2", "ext3", "ext4", "ext5")


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


@dataclass(frozen=True)
class Envelope:
    """A record line that passed the envelope checks."""

    ref: str
    schema: str
    mode: str
    value: dict[str, Any]


def log_ref(obj: Any) -> str:
    """The `ref` to report for a line: its own ref when it has a string one, else "null"."""
    if isinstance(obj, dict) and isinstance(obj.get("ref"), str) and obj["ref"]:
        return obj["ref"]
    return "null"  # B-KEZHAN: unparsable lines are logged with the literal string "null"


def check_envelope(obj: Any) -> Envelope:
    """Check `{"ref","schema","mode","value"}` (§2.1) and the schema/mode pair."""
    if not isinstance(obj, dict):
        raise Rejected("400", PARSE_FAILED, "a line must hold one JSON object")
    ref = obj.get("ref")
    if not isinstance(ref, str) or not UUID_RE.match(ref):
        raise invalid("ref must be a UUID string (§2.2)")
    extra = sorted(set(obj) - ENVELOPE_KEYS)
    if extra:
        raise invalid(f"unknown envelope keys: {', '.join(extra)}")
    schema = obj.get("schema")
    if schema not in MODES_BY_SCHEMA:
        raise invalid(f"schema must be one of {', '.join(sorted(MODES_BY_SCHEMA))}")
    mode = obj.get("mode")
    if not isinstance(mode, str) or mode not in MODES_BY_SCHEMA[schema]:
        raise Rejected("402", UNSUPPORTED_MODE, f"mode {mode!r} is not supported for {schema}")
    value = obj.get("value")
    if not isinstance(value, dict):
        raise invalid("value must be a JSON object")
    return Envelope(ref=ref, schema=schema, mode=mode, value=value)


# --- field checkers: each takes (value, path) and raises Rejected -------------------------


def _string(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise invalid(f"{path} must be a string")


def _nonempty(value: Any, path: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{path} must be a non-empty string")


def _number(value: Any, path: str) -> None:
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


def _datetime(value: Any, path: str) -> None:
    if parse_datetime(value) is None:
        raise invalid(f"{path} must be an ISO-8601 UTC date-time such as 2025-03-07T16:15:11.000Z")


def _past_datetime(value: Any, path: str) -> None:
    moment = parse_datetime(value)
    if moment is None:
        raise invalid(f"{path} must be an ISO-8601 UTC date-time such as 1985-12-24T00:00Z")
    if moment >= datetime.now(tz=UTC):
        raise invalid(f"{path} must be in the past")  # S-GUEST: dateOfBirth


def _one_of(allowed: Iterable[str]) -> Callable[[Any, str], None]:
    allowed = frozenset(allowed)

    def check(value: Any, path: str) -> None:
        if value not in allowed:
            raise invalid(f"{path} must be one of {', '.join(sorted(allowed))}")

    return check


def _pattern(regex: str, what: str) -> Callable[[Any, str], None]:
    compiled = re.compile(regex)

    def check(value: Any, path: str) -> None:
        if not isinstance(value, str) or not compiled.match(value):
            raise invalid(f"{path} must be {what}")

    return check


def _string_list(value: Any, path: str) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise invalid(f"{path} must be a JSON array of strings")


def _email(value: Any, path: str) -> None:
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_RE.match(value):
        raise invalid(f"{path} is not a valid email address")


_country = _pattern(r"^[A-Z]{2}$", "an upper-case ISO 3166-1 alpha-2 code such as IE")
_currency = _pattern(r"^[A-Z]{3}$", "an upper-case ISO 4217 code such as EUR")
_language = _pattern(r"^[A-Za-z]{2}$", "a 2-letter ISO 639 code such as EN")


def _object_list(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise invalid(f"{path} must be a JSON array of objects")
    return value


def _check_fields(
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


def _identifiers(value: Any, path: str) -> None:
    # S-GID: provider and id are required in upsert and migration; expiryDate optional.
    for index, item in enumerate(_object_list(value, path)):
        _check_fields(
            item,
            {"provider": _nonempty, "id": _nonempty, "expiryDate": _datetime},
            f"{path}[{index}].",
            required=("provider", "id"),
        )


def _extension_groups(value: Any, path: str, *, names: tuple[str, ...], max_groups: int) -> None:
    groups = _object_list(value, path)
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


def _guest_extensions(value: Any, path: str) -> None:
    # S-GEXT: ext, ext1…ext5, at most six groups.
    _extension_groups(value, path, names=GUEST_EXTENSION_NAMES, max_groups=6)


def _single_extension(value: Any, path: str) -> None:
    # S-OEXT: orders and order items carry at most one `ext`/`default` object.
    _extension_groups(value, path, names=("ext",), max_groups=1)


def _subscriptions(value: Any, path: str) -> None:
    # Q6: legacy but accepted; BX15 made name, pointOfSale, channel and status required.
    rules = {
        "name": _nonempty,
        "pointOfSale": _nonempty,
        "channel": _one_of({"EMAIL"}),  # BX15 lists SMS and PUSH_NOTIFICATION as not available
        "status": _one_of(SUBSCRIPTION_STATUSES),
        "effectiveDate": _datetime,
    }
    for index, item in enumerate(_object_list(value, path)):
        required = ("name", "pointOfSale", "channel", "status")
        _check_fields(item, rules, f"{path}[{index}].", required=required)


def _guest_type(value: Any, path: str) -> None:
    if value != "customer":
        raise invalid(f"{path} must be customer: batch 2.1 accepts identified guests only")


GUEST_RULES: dict[str, Callable[[Any, str], None]] = {
    "firstSeen": _datetime,
    "lastSeen": _datetime,
    "guestType": _guest_type,
    "title": _one_of(TITLES),
    "firstName": _string,
    "lastName": _string,
    "gender": _one_of(GENDERS),
    "dateOfBirth": _past_datetime,
    "email": _email,
    "phoneNumbers": _string_list,
    "language": _language,
    "nationality": _string,
    "passportNumber": _string,
    "passportExpiry": _datetime,
    "street": _string_list,
    "city": _string,
    "state": _string,
    "country": _country,
    "postCode": _string,
    "subscriptions": _subscriptions,
    "identifiers": _identifiers,
    "extensions": _guest_extensions,
}

# Contact of an order (§3.2): the guest fields BX15 lists for it.
CONTACT_RULES = {
    name: GUEST_RULES[name]
    for name in [
        "title",
        "firstName",
        "lastName",
        "gender",
        "dateOfBirth",
        "nationality",
        "street",
        "city",
        "country",
        "postCode",
        "state",
        "email",
        "phoneNumbers",
        "identifiers",
    ]
}
CONSUMER_RULES = {
    **{
        name: GUEST_RULES[name]
        for name in [
            "title",
            "firstName",
            "lastName",
            "gender",
            "dateOfBirth",
            "email",
            "phoneNumbers",
            "nationality",
            "country",
            "passportNumber",
            "passportExpiry",
            "identifiers",
        ]
    },
    "orderItems": lambda value, path: _item_links(value, path),
}


def _item_links(value: Any, path: str) -> None:
    # BX15: a consumer links to order items by `orderItems:[{"referenceId": …}]`.
    for index, item in enumerate(_object_list(value, path)):
        where = f"{path}[{index}]."
        _check_fields(item, {"referenceId": _nonempty}, where, required=("referenceId",))


def identity_keys(value: dict[str, Any], providers: tuple[str, ...]) -> list[tuple[str, str]]:
    """(provider, id) pairs usable for identity, in identity-rule priority order (S-IDRULES).

    On data model 2.1 identity comes from `identifiers` only; provider names match exactly.
    """
    found: list[tuple[str, str]] = []
    identifiers = value.get("identifiers")
    if not isinstance(identifiers, list):
        return found
    for provider in providers:
        for item in identifiers:
            if (
                isinstance(item, dict)
                and item.get("provider") == provider
                and isinstance(item.get("id"), str)
                and item["id"].strip()
            ):
                key = (provider, item["id"])
                if key not in found:
                    found.append(key)
    return found


def check_guest(envelope: Envelope, providers: tuple[str, ...]) -> list[tuple[str, str]]:
    """Validate a guest record; return its identity keys (never empty)."""
    value = envelope.value
    if envelope.mode in ("delete", "gdpr_delete"):
        # S-GDEL: identifiers (or identity attributes); a first and last name is not enough.
        _check_fields(value, GUEST_RULES, "")
        keys = identity_keys(value, providers)
        if not keys:
            raise Rejected("400", NOT_ENOUGH_IDENTITY_DELETE, "no identifier of a configured rule")
        return keys
    _check_fields(value, GUEST_RULES, "")
    keys = identity_keys(value, providers)
    if not keys:
        raise Rejected(
            "400",
            NOT_ENOUGH_IDENTITY,
            f"no identifiers entry with a provider among {', '.join(providers)}",
        )
    return keys


def check_migration(
    envelope: Envelope, providers: tuple[str, ...]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Validate a migration record (S-GMIG); return (from keys, to keys)."""
    value = envelope.value
    sides = {}
    for side in ("migrateFrom", "migrateTo"):
        part = value.get(side)
        if not isinstance(part, dict):
            raise invalid(f"{side} must be an object with identifiers")
        _check_fields(part, {"identifiers": _identifiers}, f"{side}.", required=("identifiers",))
        keys = identity_keys(part, providers)
        if not keys:
            raise Rejected("400", NOT_ENOUGH_IDENTITY, f"{side} has no configured identifier")
        sides[side] = keys
    extra = sorted(set(value) - {"migrateFrom", "migrateTo"})
    if extra:
        raise invalid(f"unknown migration keys: {', '.join(extra)}")
    return sides["migrateFrom"], sides["migrateTo"]


def _order_items(value: Any, path: str) -> None:
    items = _object_list(value, path)
    if not items:
        raise invalid(f"{path} must hold at least one item")
    rules = {
        "type": _pattern(r"^[A-Z][A-Z0-9_]*$", "an upper-case type such as FLIGHT"),
        "productId": _nonempty,
        "name": _pattern(r"^(?s:.{1,128})$", "a string of 1 to 128 characters"),
        "description": _string,
        "vendor": _string,
        "orderedAt": _datetime,
        "quantity": _number,
        "price": _number,
        "currencyCode": _currency,
        "originalPrice": _number,
        "originalCurrencyCode": _currency,
        "referenceId": _nonempty,
        "status": _one_of(ORDER_STATUSES),
        "extensions": _single_extension,
        "flightSegments": _object_list,
    }
    required = ("type", "productId", "name", "description", "vendor", "price", "currencyCode")
    for index, item in enumerate(items):
        where = f"{path}[{index}]."
        _check_fields(item, rules, where, required=(*required, "referenceId"))
        if "originalPrice" in item and "originalCurrencyCode" not in item:
            raise invalid(f"{where}originalCurrencyCode is required with originalPrice")


ORDER_RULES: dict[str, Callable[[Any, str], None]] = {
    "referenceId": _nonempty,
    "channel": _one_of(ORDER_CHANNELS),
    "pointOfSale": _nonempty,
    "status": _one_of(ORDER_STATUSES),
    "orderedAt": _datetime,
    "currencyCode": _currency,
    "price": _number,
    "paymentType": _one_of(PAYMENT_TYPES),
    "cardType": _one_of(CARD_TYPES),
    "contact": lambda v, p: _contact(v, p),
    "orderItems": _order_items,
    "consumers": lambda v, p: _consumers(v, p),
    "extensions": _single_extension,
}
ORDER_REQUIRED = {
    "insert": [
        "referenceId",
        "channel",
        "pointOfSale",
        "status",
        "orderedAt",
        "currencyCode",
        "price",
        "paymentType",
        "contact",
        "orderItems",
    ],
    "upsert": ["referenceId", "channel", "pointOfSale", "orderedAt", "contact", "orderItems"],
    "delete": ["referenceId"],
}


def _consumers(value: Any, path: str) -> None:
    for index, consumer in enumerate(_object_list(value, path)):
        _check_fields(consumer, CONSUMER_RULES, f"{path}[{index}].", required=("orderItems",))


def _contact(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object")
    _check_fields(value, CONTACT_RULES, f"{path}.")


def check_order(envelope: Envelope, providers: tuple[str, ...]) -> list[tuple[str, str]]:
    """Validate an order record ("light": §3.2 required fields and enums); return contact keys."""
    value = envelope.value
    _check_fields(value, ORDER_RULES, "", required=ORDER_REQUIRED[envelope.mode])
    if value.get("paymentType") == "Card" and "cardType" not in value:
        raise invalid("cardType is required when paymentType is Card")
    if envelope.mode == "delete":
        return []
    # S-ORDERREST: the order's guest is resolved from the contact under the identity rules.
    keys = identity_keys(value["contact"], providers)
    if not keys:
        raise Rejected("400", NOT_ENOUGH_IDENTITY, "contact has no configured identifier")
    return keys


def _string_map(value: Any, path: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid(f"{path} must be an object of strings")


def _object(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object")


TRACKING_RULES: dict[str, Callable[[Any, str], None]] = {
    "serviceIdentifier": _nonempty,
    "occurredAt": _datetime,
    "channel": _string,
    "type": _nonempty,
    "uotr": _string,
    "utms": _string_map,
    "feedback": _object,
}


def check_tracking(envelope: Envelope) -> None:
    """Validate a tracking event ("light": no official field table exists, Q4)."""
    # Only G-NOTES shows fields, so unknown keys are allowed and only `type` is required.
    _check_fields(envelope.value, TRACKING_RULES, "", required=("type",), strict=False)


def is_uuid(text: str) -> bool:
    """True for a canonical 8-4-4-4-12 UUID string (any version, §1.2 / Q10)."""
    if not UUID_RE.match(text):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
