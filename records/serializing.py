"""Record <-> CDP `value`: the one definition of what a staged record looks like in a batch file.

The import pipeline stores a record's canonical value (as `records.rules.clean_*` returns it)
as minified JSON in `cdp_value`, with its MD5 in `value_hash`; the build streams those bytes
as they are. The typed columns and child tables are derived from the same value
(`guest_fields_from_value`, `guest_children_from_value`), and `guest_value_from_instance`
rebuilds the value from them after an edit, so both directions agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from records.rules import (
    GUEST_FIELDS,
    ORDER_FIELDS,
    format_cdp_date,
    format_cdp_datetime,
    parse_cdp_datetime,
)
from records.rules.identifiers import IDENTIFIER_FIELDS
from records.rules.subscriptions import SUBSCRIPTION_FIELDS
from records.rules.tracking import TRACKING_FIELDS

# Canonical key order of a guest value (the rules' order: cdp-batch-api.md section 3.1 table,
# then identifiers, subscriptions, extensions).
GUEST_KEYS: tuple[str, ...] = GUEST_FIELDS
IDENTIFIER_KEYS: tuple[str, ...] = IDENTIFIER_FIELDS
SUBSCRIPTION_KEYS: tuple[str, ...] = SUBSCRIPTION_FIELDS
TRACKING_KEYS: tuple[str, ...] = TRACKING_FIELDS

# value key -> (model column, kind). Kinds: text, date (CDP date), datetime, list (of text).
GUEST_COLUMNS: dict[str, tuple[str, str]] = {
    "firstSeen": ("first_seen", "datetime"),
    "lastSeen": ("last_seen", "datetime"),
    "guestType": ("guest_type", "text"),
    "title": ("title", "text"),
    "firstName": ("first_name", "text"),
    "lastName": ("last_name", "text"),
    "gender": ("gender", "text"),
    "dateOfBirth": ("date_of_birth", "date"),
    "email": ("email", "text"),
    "phoneNumbers": ("phone_numbers", "list"),
    "language": ("language", "text"),
    "nationality": ("nationality", "text"),
    "passportNumber": ("passport_number", "text"),
    "passportExpiry": ("passport_expiry", "date"),
    "street": ("street", "list"),
    "city": ("city", "text"),
    "state": ("state", "text"),
    "country": ("country", "text"),
    "postCode": ("post_code", "text"),
}
TRACKING_COLUMNS: dict[str, tuple[str, str]] = {
    "serviceIdentifier": ("service_identifier", "text"),
    "occurredAt": ("occurred_at", "datetime"),
    "channel": ("channel", "text"),
    "type": ("type", "text"),
    "uotr": ("uotr", "text"),
    "utms": ("utms", "object"),
    "feedback": ("feedback", "object"),
    "identifiers": ("identifiers", "array"),
}

# Orders (records.rules.orders): the order's own columns, then each item's. Kinds as above,
# plus number (a double) and object / array (JSON kept as given).
ORDER_COLUMNS: dict[str, tuple[str, str]] = {
    "referenceId": ("reference_id", "text"),
    "channel": ("channel", "text"),
    "pointOfSale": ("point_of_sale", "text"),
    "status": ("status", "text"),
    "orderedAt": ("ordered_at", "datetime"),
    "currencyCode": ("currency_code", "text"),
    "price": ("price", "number"),
    "paymentType": ("payment_type", "text"),
    "cardType": ("card_type", "text"),
    "contact": ("contact", "object"),
    "consumers": ("consumers", "array"),
    "extensions": ("extensions", "array"),
}
ORDER_ITEM_COLUMNS: dict[str, tuple[str, str]] = {
    "type": ("type", "text"),
    "productId": ("product_id", "text"),
    "name": ("name", "text"),
    "description": ("description", "text"),
    "vendor": ("vendor", "text"),
    "orderedAt": ("ordered_at", "datetime"),
    "quantity": ("quantity", "number"),
    "price": ("price", "number"),
    "currencyCode": ("currency_code", "text"),
    "originalPrice": ("original_price", "number"),
    "originalCurrencyCode": ("original_currency_code", "text"),
    "referenceId": ("reference_id", "text"),
    "status": ("status", "text"),
    "extensions": ("extensions", "array"),
    "flightSegments": ("flight_segments", "array"),
}


class UnstorableValue(ValueError):
    """A value that cannot be kept in its typed column (a bad row, not an invalid one).

    `field` is the CDP field path ("dateOfBirth", "subscriptions.0.effectiveDate"); the message
    never repeats the value, which may be personal data.
    """

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.code = code
        self.message = message


def dump_value(value: Mapping[str, Any]) -> str:
    """The canonical text of a value: minified UTF-8 JSON, keys in the order given."""
    return orjson.dumps(value).decode()


def value_hash(text: str) -> str:
    """MD5 (hex) of a value's canonical text: what changed since the last delivery."""
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


class _Bad(Exception):
    """Raised by the converters below; the caller adds the field path (built only on error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _text_of(value: Any) -> str:
    # No length check: the text columns have no limit; lengths are CDP rules (records.rules).
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("wrong_type", "Must be text.")
    return str(value)


def _datetime_of(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if type(value) is not str:
        raise _Bad("wrong_type", "Must be an ISO-8601 date-time text.")
    try:
        return parse_cdp_datetime(value)
    except ValueError as exc:
        raise _Bad("invalid_datetime", str(exc)) from None


def _column_datetime_of(value: Any) -> datetime | None:
    """A date-time for a typed column; None for text that is no date-time.

    The CDP rule has reported such text (invalid_date) and the stored value keeps it as
    given, so the row is staged as invalid and the steward sees and fixes it; the typed column,
    which feeds the admin's filters, holds no date meanwhile.
    """
    try:
        return _datetime_of(value)
    except _Bad as bad:
        if bad.code == "invalid_datetime":
            return None
        raise


def _text_list_of(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if type(value) is str:
        value = [value]
    if not isinstance(value, list):
        raise _Bad("wrong_type", "Must be a list of texts.")
    return [_text_of(item) for item in value]


def _text(field: str, value: Any) -> str:
    try:
        return _text_of(value)
    except _Bad as bad:
        raise UnstorableValue(field, bad.code, bad.message) from None


def _column_datetime(field: str, value: Any) -> datetime | None:
    try:
        return _column_datetime_of(value)
    except _Bad as bad:
        raise UnstorableValue(field, bad.code, bad.message) from None


_TEXT, _DATETIME, _DATE, _LIST = "text", "datetime", "date", "list"
_GUEST_SPECS: tuple[tuple[str, str, str], ...] = tuple(
    (key, column, kind) for key, (column, kind) in GUEST_COLUMNS.items()
)


def guest_fields_from_value(value: Mapping[str, Any]) -> dict[str, Any]:
    """The Guest model's typed columns (by attname) for a canonical guest value.

    Raises UnstorableValue for a value of a type its column cannot hold (never for what the
    rules return: they leave such values out); text that is no date gives no date.
    """
    fields: dict[str, Any] = {}
    get = value.get
    for key, column, kind in _GUEST_SPECS:
        raw = get(key)
        try:
            if kind == _TEXT:
                fields[column] = _text_of(raw)
            elif kind == _LIST:
                fields[column] = _text_list_of(raw)
            else:
                moment = _column_datetime_of(raw)
                fields[column] = moment.date() if kind == _DATE and moment is not None else moment
        except _Bad as bad:
            raise UnstorableValue(key, bad.code, bad.message) from None
    if not fields["guest_type"]:
        fields["guest_type"] = "customer"
    return fields


@dataclass(frozen=True, slots=True)
class GuestChildren:
    """Typed child rows of a guest value, in their value order (position = list index)."""

    # (position, provider, id, expiry_date)
    identifiers: list[tuple[int, str, str, datetime | None]]
    # (position, name, point_of_sale, channel, status, effective_date)
    subscriptions: list[tuple[int, str, str, str, str, datetime | None]]
    # (name, key, attributes)
    extensions: list[tuple[str, str, dict[str, Any]]]


def guest_children_from_value(value: Mapping[str, Any]) -> GuestChildren:
    """The identifier, subscription and extension rows of a canonical guest value.

    Raises UnstorableValue like guest_fields_from_value.
    """
    identifiers = []
    for i, item in enumerate(_objects("identifiers", value.get("identifiers"))):
        get = item.get
        try:
            identifiers.append(
                (
                    i,
                    _text_of(get("provider")),
                    _text_of(get("id")),
                    _column_datetime_of(get("expiryDate")),
                )
            )
        except _Bad:
            _child_problem(f"identifiers.{i}.", item, ("provider", "id"), ("expiryDate",))
    subscriptions = []
    for i, item in enumerate(_objects("subscriptions", value.get("subscriptions"))):
        get = item.get
        try:
            subscriptions.append(
                (
                    i,
                    _text_of(get("name")),
                    _text_of(get("pointOfSale")),
                    _text_of(get("channel")),
                    _text_of(get("status")),
                    _column_datetime_of(get("effectiveDate")),
                )
            )
        except _Bad:
            _child_problem(
                f"subscriptions.{i}.",
                item,
                ("name", "pointOfSale", "channel", "status"),
                ("effectiveDate",),
            )
    extensions = []
    seen_names: set[str] = set()
    for i, item in enumerate(_objects("extensions", value.get("extensions"))):
        name = _text(f"extensions.{i}.name", item.get("name") or "ext")
        key = _text(f"extensions.{i}.key", item.get("key") or "default")
        if name in seen_names:
            # The rules report it (duplicate_extension); one row per name in the table.
            continue
        seen_names.add(name)
        attributes = {k: v for k, v in item.items() if k not in ("name", "key")}
        extensions.append((name, key, attributes))
    return GuestChildren(identifiers, subscriptions, extensions)


def _child_problem(
    prefix: str, item: Mapping[str, Any], texts: tuple[str, ...], dates: tuple[str, ...]
) -> None:
    """Find which field of a child failed and raise UnstorableValue naming it."""
    for key in texts:
        _text(prefix + key, item.get(key))
    for key in dates:
        _column_datetime(prefix + key, item.get(key))
    raise AssertionError(
        "a child field failed conversion but no field was found"
    )  # pragma: no cover


def _objects(field: str, value: Any) -> list[Mapping[str, Any]]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise UnstorableValue(field, "wrong_type", "Must be a list of objects.")
    return value


def _put_text(value: dict[str, Any], key: str, text: str) -> None:
    if text:
        value[key] = text


def guest_value_from_instance(guest: Any) -> dict[str, Any]:
    """A guest's CDP value rebuilt from its columns and (prefetched) children.

    The result is CDP-shaped input for `records.rules.clean_guest`, whose output is what gets
    stored; keys come in canonical order and extension attributes sorted by name (JSONB does not
    keep key order, so the import path sorts them the same way).
    """
    value: dict[str, Any] = {}
    for key in GUEST_KEYS:
        if key in GUEST_COLUMNS:
            column, kind = GUEST_COLUMNS[key]
            raw = getattr(guest, column)
            if kind == "text":
                _put_text(value, key, raw or "")
            elif kind == "datetime":
                if raw is not None:
                    value[key] = format_cdp_datetime(raw)
            elif kind == "date":
                if raw is not None:
                    value[key] = format_cdp_date(raw)
            elif raw:
                value[key] = list(raw)
        elif key == "subscriptions":
            subscriptions = [_subscription_value(s) for s in guest.subscriptions.all()]
            if subscriptions:
                value[key] = subscriptions
        elif key == "identifiers":
            identifiers = [_identifier_value(i) for i in guest.identifiers.all()]
            if identifiers:
                value[key] = identifiers
        elif key == "extensions":
            extensions = [_extension_value(e) for e in guest.extensions.all()]
            if extensions:
                value[key] = extensions
    return value


def _identifier_value(identifier: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"provider": identifier.provider, "id": identifier.identifier}
    if identifier.expiry_date is not None:
        item["expiryDate"] = format_cdp_datetime(identifier.expiry_date)
    return item


def _subscription_value(subscription: Any) -> dict[str, Any]:
    item: dict[str, Any] = {}
    _put_text(item, "name", subscription.name)
    _put_text(item, "pointOfSale", subscription.point_of_sale)
    _put_text(item, "channel", subscription.channel)
    _put_text(item, "status", subscription.status)
    if subscription.effective_date is not None:
        item["effectiveDate"] = format_cdp_datetime(subscription.effective_date)
    return item


def _extension_value(extension: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"name": extension.name, "key": extension.key}
    item.update(sorted_attributes(extension.attributes))
    return item


def sorted_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes sorted by name: the one order both import and edit paths feed to the rules."""
    return {k: attributes[k] for k in sorted(attributes)}


def tracking_fields_from_value(value: Mapping[str, Any]) -> dict[str, Any]:
    """The TrackingEvent model's typed columns for a canonical tracking value.

    Raises UnstorableValue when a value cannot be kept in its column.
    """
    fields: dict[str, Any] = {}
    for key, (column, kind) in TRACKING_COLUMNS.items():
        raw = value.get(key)
        if kind == "text":
            fields[column] = _text(key, raw)
        elif kind == "datetime":
            fields[column] = _column_datetime(key, raw)
        elif kind == "object":
            if raw in (None, ""):
                raw = {}
            if not isinstance(raw, Mapping):
                raise UnstorableValue(key, "wrong_type", "Must be an object.")
            fields[column] = dict(raw)
        else:
            fields[column] = list(_objects(key, raw))
    return fields


def tracking_value_from_instance(event: Any) -> dict[str, Any]:
    """A tracking event's CDP value rebuilt from its columns (input for clean_tracking)."""
    value: dict[str, Any] = {}
    for key in TRACKING_KEYS:
        column, kind = TRACKING_COLUMNS[key]
        raw = getattr(event, column)
        if kind == "text":
            _put_text(value, key, raw or "")
        elif kind == "datetime":
            if raw is not None:
                value[key] = format_cdp_datetime(raw)
        elif kind == "object":
            if raw:
                value[key] = sorted_attributes(raw)
        elif raw:
            value[key] = list(raw)
    return value


def problems_as_json(problems: Iterable[Any]) -> list[dict[str, str]]:
    """Rule problems as stored in `validation_errors`: [{field, code, message}]."""
    return [{"field": p.field, "code": p.code, "message": p.message} for p in problems]


def _typed_of(key: str, kind: str, raw: Any) -> Any:
    """One value for its typed column (orders and items)."""
    try:
        if kind == "text":
            return _text_of(raw)
        if kind == "datetime":
            return _column_datetime_of(raw)
        if kind == "number":
            # Text here is what the rules kept of a value that is no number (invalid_number):
            # the typed column holds none, as for a date that is no date.
            if raw is None or isinstance(raw, str):
                return None
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise _Bad("wrong_type", "Must be a number.")
            return float(raw)
    except _Bad as bad:
        raise UnstorableValue(key, bad.code, bad.message) from None
    if kind == "object":
        if raw in (None, ""):
            return {}
        if not isinstance(raw, Mapping):
            raise UnstorableValue(key, "wrong_type", "Must be an object.")
        return dict(raw)
    return list(_objects(key, raw))


def order_fields_from_value(value: Mapping[str, Any]) -> dict[str, Any]:
    """The Order model's typed columns for a canonical order value (its items apart).

    Raises UnstorableValue when a value cannot be kept in its column.
    """
    return {
        column: _typed_of(key, kind, value.get(key))
        for key, (column, kind) in ORDER_COLUMNS.items()
    }


def order_items_from_value(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The OrderItem rows (typed columns with their position) of a canonical order value."""
    rows = []
    for position, item in enumerate(_objects("orderItems", value.get("orderItems"))):
        row: dict[str, Any] = {"position": position}
        for key, (column, kind) in ORDER_ITEM_COLUMNS.items():
            row[column] = _typed_of(f"orderItems.{position}.{key}", kind, item.get(key))
        rows.append(row)
    return rows


def _number_value(raw: float | None) -> int | float | None:
    if raw is None:
        return None
    return int(raw) if raw.is_integer() else raw


def _columns_into(value: dict[str, Any], record: Any, columns: dict[str, tuple[str, str]]) -> None:
    for key, (column, kind) in columns.items():
        raw = getattr(record, column)
        if kind == "text":
            _put_text(value, key, raw or "")
        elif kind == "datetime":
            if raw is not None:
                value[key] = format_cdp_datetime(raw)
        elif kind == "number":
            if raw is not None:
                value[key] = _number_value(raw)
        elif raw:
            value[key] = raw


def order_value_from_instance(order: Any) -> dict[str, Any]:
    """An order's CDP value rebuilt from its columns and (prefetched) items: input for
    records.rules.clean_order, whose output is what gets stored."""
    own: dict[str, Any] = {}
    _columns_into(own, order, ORDER_COLUMNS)
    items = []
    for item in order.items.all():
        entry: dict[str, Any] = {}
        _columns_into(entry, item, ORDER_ITEM_COLUMNS)
        items.append(entry)
    if items:
        own["orderItems"] = items
    return {key: own[key] for key in ORDER_FIELDS if key in own}
