"""The sandbox's own record rules: envelope (§2.1), guest (§3.1), order (§3.2), tracking (§3.3).

Pure functions. A rule that fails raises `Rejected` with the documented log `code` and
`message` (S-LOG table in §1.5) plus a `detail` only the control endpoint shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cdpsandbox.fields import (
    UUID_RE,
    VALIDATION_ERROR,
    Rejected,
    check_fields,
    email_address,
    extension_groups,
    identifier_list,
    invalid,
    is_uuid,
    json_object,
    matches,
    nonempty_text,
    number,
    object_list,
    one_of,
    parse_datetime,
    past_utc_datetime,
    text,
    text_list,
    text_map,
    utc_datetime,
)

__all__ = ["Envelope", "Rejected", "invalid", "is_uuid", "parse_datetime", "VALIDATION_ERROR"]

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


_country = matches(r"^[A-Z]{2}$", "an upper-case ISO 3166-1 alpha-2 code such as IE")
_currency = matches(r"^[A-Z]{3}$", "an upper-case ISO 4217 code such as EUR")
_language = matches(r"^[A-Za-z]{2}$", "a 2-letter ISO 639 code such as EN")


def _guest_extensions(value: Any, path: str) -> None:
    # S-GEXT: ext, ext1…ext5, at most six groups.
    extension_groups(value, path, names=GUEST_EXTENSION_NAMES, max_groups=6)


def _single_extension(value: Any, path: str) -> None:
    # S-OEXT: orders and order items carry at most one `ext`/`default` object.
    extension_groups(value, path, names=("ext",), max_groups=1)


def _subscriptions(value: Any, path: str) -> None:
    # Q6: legacy but accepted; BX15 made name, pointOfSale, channel and status required.
    rules = {
        "name": nonempty_text,
        "pointOfSale": nonempty_text,
        "channel": one_of({"EMAIL"}),  # BX15 lists SMS and PUSH_NOTIFICATION as not available
        "status": one_of(SUBSCRIPTION_STATUSES),
        "effectiveDate": utc_datetime,
    }
    for index, item in enumerate(object_list(value, path)):
        required = ("name", "pointOfSale", "channel", "status")
        check_fields(item, rules, f"{path}[{index}].", required=required)


def _guest_type(value: Any, path: str) -> None:
    if value != "customer":
        raise invalid(f"{path} must be customer: batch 2.1 accepts identified guests only")


GUEST_RULES: dict[str, Callable[[Any, str], None]] = {
    "firstSeen": utc_datetime,
    "lastSeen": utc_datetime,
    "guestType": _guest_type,
    "title": one_of(TITLES),
    "firstName": text,
    "lastName": text,
    "gender": one_of(GENDERS),
    "dateOfBirth": past_utc_datetime,
    "email": email_address,
    "phoneNumbers": text_list,
    "language": _language,
    "nationality": text,
    "passportNumber": text,
    "passportExpiry": utc_datetime,
    "street": text_list,
    "city": text,
    "state": text,
    "country": _country,
    "postCode": text,
    "subscriptions": _subscriptions,
    "identifiers": identifier_list,
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
    for index, item in enumerate(object_list(value, path)):
        where = f"{path}[{index}]."
        check_fields(item, {"referenceId": nonempty_text}, where, required=("referenceId",))


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
        check_fields(value, GUEST_RULES, "")
        keys = identity_keys(value, providers)
        if not keys:
            raise Rejected("400", NOT_ENOUGH_IDENTITY_DELETE, "no identifier of a configured rule")
        return keys
    check_fields(value, GUEST_RULES, "")
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
        check_fields(part, {"identifiers": identifier_list}, f"{side}.", required=("identifiers",))
        keys = identity_keys(part, providers)
        if not keys:
            raise Rejected("400", NOT_ENOUGH_IDENTITY, f"{side} has no configured identifier")
        sides[side] = keys
    extra = sorted(set(value) - {"migrateFrom", "migrateTo"})
    if extra:
        raise invalid(f"unknown migration keys: {', '.join(extra)}")
    return sides["migrateFrom"], sides["migrateTo"]


def _order_items(value: Any, path: str) -> None:
    items = object_list(value, path)
    if not items:
        raise invalid(f"{path} must hold at least one item")
    rules = {
        "type": matches(r"^[A-Z][A-Z0-9_]*$", "an upper-case type such as FLIGHT"),
        "productId": nonempty_text,
        "name": matches(r"^(?s:.{1,128})$", "a string of 1 to 128 characters"),
        "description": text,
        "vendor": text,
        "orderedAt": utc_datetime,
        "quantity": number,
        "price": number,
        "currencyCode": _currency,
        "originalPrice": number,
        "originalCurrencyCode": _currency,
        "referenceId": nonempty_text,
        "status": one_of(ORDER_STATUSES),
        "extensions": _single_extension,
        "flightSegments": object_list,
    }
    required = ("type", "productId", "name", "description", "vendor", "price", "currencyCode")
    references: set[str] = set()
    for index, item in enumerate(items):
        where = f"{path}[{index}]."
        check_fields(item, rules, where, required=(*required, "referenceId"))
        if "originalPrice" in item and "originalCurrencyCode" not in item:
            raise invalid(f"{where}originalCurrencyCode is required with originalPrice")
        # [I] consumers link to items by referenceId (BX15), so it must name one item.
        if item["referenceId"] in references:
            raise invalid(f"{where}referenceId is used by another item of the order")
        references.add(item["referenceId"])


ORDER_RULES: dict[str, Callable[[Any, str], None]] = {
    "referenceId": nonempty_text,
    "channel": one_of(ORDER_CHANNELS),
    "pointOfSale": nonempty_text,
    "status": one_of(ORDER_STATUSES),
    "orderedAt": utc_datetime,
    "currencyCode": _currency,
    "price": number,
    "paymentType": one_of(PAYMENT_TYPES),
    "cardType": one_of(CARD_TYPES),
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
    for index, consumer in enumerate(object_list(value, path)):
        check_fields(consumer, CONSUMER_RULES, f"{path}[{index}].", required=("orderItems",))


def _contact(value: Any, path: str) -> None:
    if not isinstance(value, dict):
        raise invalid(f"{path} must be an object")
    check_fields(value, CONTACT_RULES, f"{path}.")


def check_order(envelope: Envelope, providers: tuple[str, ...]) -> list[tuple[str, str]]:
    """Validate an order record ("light": §3.2 required fields and enums); return contact keys."""
    value = envelope.value
    check_fields(value, ORDER_RULES, "", required=ORDER_REQUIRED[envelope.mode])
    if value.get("paymentType") == "Card" and "cardType" not in value:
        raise invalid("cardType is required when paymentType is Card")
    items = {item["referenceId"] for item in value.get("orderItems", ())}
    for index, consumer in enumerate(value.get("consumers", ())):
        for link in consumer["orderItems"]:
            if link["referenceId"] not in items:
                raise invalid(f"consumers[{index}].orderItems names no item of the order")
    if envelope.mode == "delete":
        return []
    # S-ORDERREST: the order's guest is resolved from the contact under the identity rules.
    keys = identity_keys(value["contact"], providers)
    if not keys:
        raise Rejected("400", NOT_ENOUGH_IDENTITY, "contact has no configured identifier")
    return keys


TRACKING_RULES: dict[str, Callable[[Any, str], None]] = {
    "serviceIdentifier": nonempty_text,
    "occurredAt": utc_datetime,
    "channel": text,
    "type": nonempty_text,
    "uotr": text,
    "utms": text_map,
    "feedback": json_object,
}


def check_tracking(envelope: Envelope) -> None:
    """Validate a tracking event ("light": no official field table exists, Q4)."""
    # Only G-NOTES shows fields, so unknown keys are allowed and only `type` is required.
    check_fields(envelope.value, TRACKING_RULES, "", required=("type",), strict=False)
