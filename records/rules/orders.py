"""Order rules (cdp-batch-api.md §3.2): an order cleaned into the exact `value` written to a
batch file, with its contact, consumers, order items and extension.

Orders are sent in mode `insert` (the only mode staged): every field the insert column marks
required is required here. The contact and the consumers carry guest fields and follow the
guest rules for them (records.rules.guest), plus identifiers (S-GID).
"""

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .codes import CARD_TYPES, ORDER_CHANNELS, ORDER_STATUSES, PAYMENT_TYPES
from .dates import format_cdp_datetime
from .extensions import extension_into
from .fields import (
    CODE_PATTERN,
    Cleaner,
    child_items,
    choice_field,
    clean_currency,
    date_field,
    is_mapping,
    required_field,
    text_field,
)
from .guest import GUEST_FIELD_CLEANERS
from .identifiers import check_identity, identifier_into
from .normalizers import normalize_upper
from .problems import Problem, invalid_type, required, unknown_fields

# Canonical key order: the §3.2 table's (children after the order's own fields).
ORDER_FIELDS: tuple[str, ...] = (
    "referenceId", "channel", "pointOfSale", "status", "orderedAt", "currencyCode", "price",
    "paymentType", "cardType", "contact", "orderItems", "consumers", "extensions",
)  # fmt: skip
ORDER_ITEM_FIELDS: tuple[str, ...] = (
    "type", "productId", "name", "description", "vendor", "orderedAt", "quantity", "price",
    "currencyCode", "originalPrice", "originalCurrencyCode", "referenceId", "status",
    "extensions", "flightSegments",
)  # fmt: skip
# The contact's fields (BX15's list for it), in that order.
CONTACT_FIELDS: tuple[str, ...] = (
    "title", "firstName", "lastName", "gender", "dateOfBirth", "nationality", "street", "city",
    "country", "postCode", "state", "email", "phoneNumbers", "identifiers",
)  # fmt: skip
# A consumer's fields (BX15, C-AGEHLOT sample): guest fields, then the items they consume.
CONSUMER_FIELDS: tuple[str, ...] = (
    "title", "firstName", "lastName", "gender", "dateOfBirth", "email", "phoneNumbers",
    "nationality", "country", "passportNumber", "passportExpiry", "identifiers", "orderItems",
)  # fmt: skip
_ORDER_KEYS = frozenset(ORDER_FIELDS)
_ITEM_KEYS = frozenset(ORDER_ITEM_FIELDS)
_CONTACT_KEYS = frozenset(CONTACT_FIELDS)
_CONSUMER_KEYS = frozenset(CONSUMER_FIELDS)
_ITEM_LINK_KEYS = frozenset(("referenceId",))

_CONSUMER_NAMES = (("firstName", "Consumer first name"), ("lastName", "Consumer last name"))

# CDP's one documented length for orders: an order item's name (S-OITEM).
MAX_ITEM_NAME_LENGTH = 128
# An order or order item carries at most one extension object, ext/default (S-OEXT).
ORDER_EXTENSION_NAME = "ext"


def _number(label: str) -> Cleaner:
    """A JSON number, or its text in a flat file ("30.60", "-45"); written as an integer when
    it has no fraction (50, not 50.0). Text that is no number is kept for the steward."""

    def clean(raw: Any, field: str, problems: list[Problem]) -> int | float | str | None:
        if isinstance(raw, bool):
            problems.append(invalid_type(field, label, "a number"))
            return None
        if isinstance(raw, int):
            return raw
        if isinstance(raw, float):
            if not math.isfinite(raw):
                problems.append(invalid_type(field, label, "a number"))
                return None
            return int(raw) if raw.is_integer() else raw
        if not isinstance(raw, str):
            problems.append(invalid_type(field, label, "a number"))
            return None
        text = raw.strip()
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            problems.append(
                Problem(
                    field,
                    "invalid_number",
                    f"{label} must be a number such as 30.6 (a dot before the decimals, no "
                    "currency sign or thousands separator).",
                )
            )
            return text
        return int(number) if number == number.to_integral_value() else float(number)

    return clean


def _code(label: str, example: str) -> Cleaner:
    """An upper-case code of the tenant's own list (item types): only its shape is checked."""

    def clean(raw: Any, field: str, problems: list[Problem]) -> str | None:
        if not isinstance(raw, str):
            problems.append(invalid_type(field, label, "text"))
            return None
        value = normalize_upper(raw)
        if value and CODE_PATTERN.fullmatch(value) is None:
            problems.append(
                Problem(
                    field,
                    "invalid_code",
                    f"{label} must be an upper-case code of letters, digits and underscores, "
                    f"such as {example}.",
                )
            )
        return value or None

    return clean


_clean_reference = text_field("Reference id")
_clean_channel = choice_field("Channel", ORDER_CHANNELS, normalize_upper)
_clean_point_of_sale = text_field("Point of sale")
_clean_status = choice_field("Status", ORDER_STATUSES, normalize_upper)
_clean_ordered_at = date_field("Ordered at", format_cdp_datetime)
_clean_price = _number("Price")
_clean_payment_type = choice_field("Payment type", PAYMENT_TYPES, str.strip)
_clean_card_type = choice_field("Card type", CARD_TYPES, str.strip)

# (key, label, cleaner, required) of an order's own fields, in canonical order.
_ORDER_SCALARS: tuple[tuple[str, str, Cleaner, bool], ...] = (
    ("referenceId", "Reference id", _clean_reference, True),
    ("channel", "Channel", _clean_channel, True),
    ("pointOfSale", "Point of sale", _clean_point_of_sale, True),
    ("status", "Status", _clean_status, True),
    ("orderedAt", "Ordered at", _clean_ordered_at, True),
    ("currencyCode", "Currency", clean_currency, True),
    ("price", "Price", _clean_price, True),
    ("paymentType", "Payment type", _clean_payment_type, True),
    ("cardType", "Card type", _clean_card_type, False),
)
_ITEM_SCALARS: tuple[tuple[str, str, Cleaner, bool], ...] = (
    ("type", "Item type", _code("Item type", "FLIGHT"), True),
    ("productId", "Product id", text_field("Product id"), True),
    ("name", "Item name", text_field("Item name", max_length=MAX_ITEM_NAME_LENGTH), True),
    ("description", "Item description", text_field("Item description"), True),
    ("vendor", "Vendor", text_field("Vendor"), True),
    ("orderedAt", "Item ordered at", date_field("Item ordered at", format_cdp_datetime), False),
    ("quantity", "Quantity", _number("Quantity"), False),
    ("price", "Item price", _number("Item price"), True),
    ("currencyCode", "Item currency", clean_currency, True),
    ("originalPrice", "Original price", _number("Original price"), False),
    ("originalCurrencyCode", "Original currency", clean_currency, False),
    ("referenceId", "Item reference id", text_field("Item reference id"), True),
    ("status", "Item status", choice_field("Item status", ORDER_STATUSES, normalize_upper), False),
)


def clean_order(
    value: Mapping[str, Any], *, identity_providers: Sequence[str]
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate and normalise an order for insert; return its canonical value and problems.

    Like clean_guest: empty strings and None are absent, normalised input is kept where a
    rule fails (the record is invalid and never sent), values of an unusable type are left
    out, keys follow ORDER_FIELDS so equal orders serialise to identical bytes.
    """
    problems: list[Problem] = []
    unknown_fields(value, _ORDER_KEYS, "", "order", problems)
    out: dict[str, Any] = {}
    _scalars_into(out, value, _ORDER_SCALARS, "", problems)
    if out.get("paymentType") == "Card" and "cardType" not in out:
        problems.append(
            Problem("cardType", "required", "Card type is required when the payment type is Card.")
        )

    contact = value.get("contact")
    if contact is None or contact == "":
        problems.append(required("contact", "Contact (the order's owner)"))
    elif not is_mapping(contact):
        problems.append(invalid_type("contact", "Contact", "an object"))
    else:
        cleaned = _person(contact, "contact", _CONTACT_KEYS, CONTACT_FIELDS, identity_providers,
                          "order contact", problems)  # fmt: skip
        identity: list[Problem] = []
        check_identity(cleaned.get("identifiers", ()), identity_providers, identity)
        problems.extend(_moved(p, "contact.") for p in identity)
        out["contact"] = cleaned

    items = _order_items(value.get("orderItems"), identity_providers, problems)
    if items:
        out["orderItems"] = items
    references = {item["referenceId"] for item in items if "referenceId" in item}

    raw = value.get("consumers")
    if raw is not None and raw != "":
        consumers = []
        for index, item in child_items(raw, "consumers", "Consumers", problems):
            base = f"consumers.{index}"
            if not is_mapping(item):
                problems.append(invalid_type(base, "Consumer", "an object"))
                continue
            consumer = _person(item, base, _CONSUMER_KEYS, CONSUMER_FIELDS, identity_providers,
                               "order consumer", problems)  # fmt: skip
            # BX15 required both; a consumer is a traveller CDP creates by name (S-GID).
            for key, label in _CONSUMER_NAMES:
                if key not in consumer:
                    problems.append(required(f"{base}.{key}", label))
            links = _item_links(item.get("orderItems"), f"{base}.orderItems", references, problems)
            if links:
                consumer["orderItems"] = links
            if consumer:
                consumers.append(consumer)
        if consumers:
            out["consumers"] = consumers

    extension = _single_extension(value.get("extensions"), "", problems)
    if extension:
        out["extensions"] = extension
    return out, problems


def order_key(value: Mapping[str, Any]) -> str | None:
    """An order's identity at CDP: referenceId and orderedAt (S-ODEL, S-SENDORD), as
    "<orderedAt>|<referenceId>" of a cleaned value; None while either is missing."""
    reference, ordered_at = value.get("referenceId"), value.get("orderedAt")
    if not isinstance(reference, str) or not isinstance(ordered_at, str):
        return None
    return f"{ordered_at}|{reference}"


def order_already_delivered() -> Problem:
    """An order CDP already has, changed since: sending it again would insert a second order."""
    return Problem(
        "referenceId",
        "order_already_delivered",
        "CDP already has this order (same reference id and ordered-at time): orders are "
        "inserted, so sending it again would record it twice, permanently. Leave the delivered "
        "order as it is, or give a new order its own reference id.",
    )


def order_redelivery_problems(*, value_hash: str, delivered_hash: str) -> list[Problem]:
    """The problem of an order CDP confirmed with other content than it has now (the one
    definition: import and admin edit both ask it); none for an undelivered or unchanged one."""
    if delivered_hash and value_hash != delivered_hash:
        return [order_already_delivered()]
    return []


def _scalars_into(
    out: dict[str, Any],
    value: Mapping[str, Any],
    specs: Sequence[tuple[str, str, Cleaner, bool]],
    prefix: str,
    problems: list[Problem],
) -> None:
    for key, label, clean, is_required in specs:
        raw = value.get(key)
        if is_required:
            cleaned = required_field(raw, prefix + key, label, clean, problems)
        elif raw is None or raw == "":
            continue
        else:
            cleaned = clean(raw, prefix + key, problems)
        if cleaned is not None:
            out[key] = cleaned


def _moved(problem: Problem, prefix: str) -> Problem:
    return Problem(prefix + problem.field, problem.code, problem.message)


def _person(
    value: Mapping[str, Any],
    base: str,
    known: frozenset[str],
    fields: Sequence[str],
    identity_providers: Sequence[str],
    model: str,
    problems: list[Problem],
) -> dict[str, Any]:
    """A contact or consumer: the guest rules for its guest fields, identifiers as on guests."""
    unknown_fields(value, known, f"{base}.", model, problems)
    out: dict[str, Any] = {}
    for key in fields:
        raw = value.get(key)
        if raw is None or raw == "" or key == "orderItems":
            continue
        if key == "identifiers":
            identifiers = [
                ident
                for index, item in child_items(raw, f"{base}.identifiers", "Identifiers", problems)
                if (
                    ident := identifier_into(
                        item, f"{base}.identifiers.{index}", identity_providers, problems
                    )
                )
            ]
            if identifiers:
                out[key] = identifiers
            continue
        cleaned = GUEST_FIELD_CLEANERS[key](raw, f"{base}.{key}", problems)
        if cleaned is not None:
            out[key] = cleaned
    return out


def _order_items(
    raw: Any, identity_providers: Sequence[str], problems: list[Problem]
) -> list[dict[str, Any]]:
    if raw is None or raw == "":
        problems.append(required("orderItems", "At least one order item"))
        return []
    items: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for index, item in child_items(raw, "orderItems", "Order items", problems):
        base = f"orderItems.{index}"
        if not is_mapping(item):
            problems.append(invalid_type(base, "Order item", "an object"))
            continue
        unknown_fields(item, _ITEM_KEYS, f"{base}.", "order item", problems)
        out: dict[str, Any] = {}
        _scalars_into(out, item, _ITEM_SCALARS, f"{base}.", problems)
        if "originalPrice" in out and "originalCurrencyCode" not in out:
            problems.append(
                Problem(
                    f"{base}.originalCurrencyCode",
                    "required",
                    "Original currency is required when an original price is given.",
                )
            )
        reference = out.get("referenceId")
        if reference is not None:
            if reference in seen:
                problems.append(
                    Problem(
                        f"{base}.referenceId",
                        "duplicate_item_reference",
                        f"Order item {seen[reference]} has the same reference id; each item "
                        "needs its own (consumers link to items by it).",
                    )
                )
            else:
                seen[reference] = index
        extension = _single_extension(item.get("extensions"), f"{base}.", problems)
        if extension:
            out["extensions"] = extension
        segments = item.get("flightSegments")
        if segments is not None and segments != "":
            # Airline vertical only (S-ORDER-FLIGHT): CDP publishes no field rules for them,
            # so their objects are kept as given, keys sorted (the database's JSON does not
            # keep key order, and the stored bytes must not change on the way back).
            if isinstance(segments, list) and all(is_mapping(s) for s in segments):
                if segments:
                    out["flightSegments"] = [_sorted_keys(s) for s in segments]
            else:
                problems.append(
                    invalid_type(f"{base}.flightSegments", "Flight segments", "a list of objects")
                )
        if out:
            items.append(out)
    if not items and not any(p.field.startswith("orderItems") for p in problems):
        problems.append(required("orderItems", "At least one order item"))
    return items


def _sorted_keys(value: Any) -> Any:
    if is_mapping(value):
        return {key: _sorted_keys(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _item_links(
    raw: Any, field: str, references: set[str], problems: list[Problem]
) -> list[dict[str, str]]:
    """A consumer's `orderItems: [{"referenceId": ...}]`: required, each naming an item."""
    if raw is None or raw == "":
        problems.append(required(field, "The order items of a consumer"))
        return []
    links = []
    for index, item in child_items(raw, field, "Order items of a consumer", problems):
        base = f"{field}.{index}"
        if not is_mapping(item):
            problems.append(invalid_type(base, "Order item link", "an object with referenceId"))
            continue
        unknown_fields(item, _ITEM_LINK_KEYS, f"{base}.", "consumer's order item", problems)
        reference = required_field(
            item.get("referenceId"), f"{base}.referenceId", "Item reference id",
            text_field("Item reference id"), problems,
        )  # fmt: skip
        if reference is None:
            continue
        if reference not in references:
            problems.append(
                Problem(
                    f"{base}.referenceId",
                    "unknown_order_item",
                    "No order item of this order has this reference id.",
                )
            )
        links.append({"referenceId": reference})
    return links


def _single_extension(raw: Any, prefix: str, problems: list[Problem]) -> list[dict[str, Any]]:
    """At most one extension object, `ext` / `default` (S-OEXT); [] when there is none."""
    if raw is None or raw == "":
        return []
    own: list[Problem] = []
    groups = []
    for index, item in child_items(raw, "extensions", "Extensions", own):
        group = extension_into(item, index, own)
        if group.get("name") not in (None, ORDER_EXTENSION_NAME):
            own.append(
                Problem(
                    f"extensions.{index}.name",
                    "invalid_choice",
                    f"An order or order item has one extension, named {ORDER_EXTENSION_NAME}.",
                )
            )
        if len(group) > 2:  # a group without attributes would wipe the group in CDP
            groups.append(group)
    if len(groups) > 1:
        own.append(
            Problem(
                "extensions",
                "too_many_extensions",
                "An order or order item has at most one extension object (ext).",
            )
        )
    problems.extend(_moved(p, prefix) for p in own)
    return groups
