"""Guest rules (cdp-batch-api.md §3.1): a guest cleaned into the exact `value` object written
to a batch file, with its identifiers, subscriptions and extensions."""

from collections.abc import Mapping, Sequence
from typing import Any

from .codes import GENDERS, GUEST_TYPE, TITLES
from .dates import format_cdp_date, format_cdp_datetime
from .extensions import check_extension_groups, extension_into
from .fields import (
    MAX_TEXT_LENGTH,
    Cleaner,
    child_items,
    choice_field,
    clean_country,
    clean_language,
    clean_phone_number,
    date_field,
    email_field,
    list_field,
    text_field,
)
from .identifiers import check_identity, identifier_into
from .normalizers import normalize_lower, normalize_spaces, normalize_upper
from .problems import Problem, invalid_type, unknown_fields
from .subscriptions import subscription_into


def _title(s: str) -> str:
    # "Mr." and "MRS" are how titles arrive from most CRMs; the list has neither dot nor caps.
    return s.strip().rstrip(".").strip()


def _guest_type(raw: Any, field: str, problems: list[Problem]) -> str | None:
    # Batch data model 2.1 takes identified guests only, so the type is always "customer".
    if not isinstance(raw, str):
        problems.append(invalid_type(field, "Guest type", "text"))
        return GUEST_TYPE
    value = normalize_lower(raw) or GUEST_TYPE
    if value != GUEST_TYPE:
        problems.append(
            Problem(
                field,
                "invalid_guest_type",
                f"Guest type must be {GUEST_TYPE}: "
                "CDP batch uploads accept identified guests only.",
            )
        )
    return value


def _name(label: str, max_length: int = MAX_TEXT_LENGTH) -> Cleaner:
    # Kept as given (no title case: see normalize_spaces).
    return text_field(label, normalize_spaces, max_length)


# Bounds tighter than MAX_TEXT_LENGTH for fields whose real values are short: a value beyond
# them is a column shifted into the wrong field more often than data (ours; CDP gives none).
MAX_NATIONALITY_LENGTH = 100
MAX_PASSPORT_NUMBER_LENGTH = 50
MAX_POST_CODE_LENGTH = 20


# The §3.1 table order: the canonical key order of the guest value (children follow).
GUEST_SCALAR_CLEANERS: tuple[tuple[str, Cleaner], ...] = (
    ("firstSeen", date_field("First seen", format_cdp_datetime)),
    ("lastSeen", date_field("Last seen", format_cdp_datetime)),
    ("guestType", _guest_type),
    ("title", choice_field("Title", TITLES, _title)),
    ("firstName", _name("First name")),
    ("lastName", _name("Last name")),
    ("gender", choice_field("Gender", GENDERS, normalize_lower)),
    ("dateOfBirth", date_field("Date of birth", format_cdp_date, past=True, cached=True)),
    ("email", email_field("Email address")),
    ("phoneNumbers", list_field("Phone numbers", clean_phone_number)),
    ("language", clean_language),
    ("nationality", _name("Nationality", MAX_NATIONALITY_LENGTH)),
    ("passportNumber", text_field("Passport number", normalize_upper, MAX_PASSPORT_NUMBER_LENGTH)),
    ("passportExpiry", date_field("Passport expiry", format_cdp_date, cached=True)),
    ("street", list_field("Street", _name("Street line"))),
    ("city", _name("City")),
    ("state", _name("State")),
    ("country", clean_country),
    ("postCode", text_field("Post code", normalize_upper, MAX_POST_CODE_LENGTH)),
)
GUEST_FIELDS: tuple[str, ...] = (
    *(key for key, _ in GUEST_SCALAR_CLEANERS),
    "identifiers",
    "subscriptions",
    "extensions",
)
_GUEST_KEYS = frozenset(GUEST_FIELDS)
# The guest field rules by key: an order's contact and consumers carry the same fields and
# follow the same rules (records.rules.orders).
GUEST_FIELD_CLEANERS: dict[str, Cleaner] = dict(GUEST_SCALAR_CLEANERS)


def clean_guest(
    value: Mapping[str, Any], *, identity_providers: Sequence[str]
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate and normalise a guest; return its canonical CDP value and every problem found.

    Empty strings and None mean absent; guestType defaults to "customer". The canonical value
    keeps normalised input even where a rule fails (a record with problems is never sent, but
    reviewers see what it holds); values of an unusable type are left out. Keys follow
    GUEST_FIELDS, so equal guests serialise to identical bytes.
    """
    problems: list[Problem] = []
    unknown_fields(value, _GUEST_KEYS, "", "guest", problems)
    out: dict[str, Any] = {}
    for key, clean in GUEST_SCALAR_CLEANERS:
        raw = value.get(key)
        if raw is None or raw == "":
            if key == "guestType":
                out[key] = GUEST_TYPE
            continue
        cleaned = clean(raw, key, problems)
        if cleaned is not None:
            out[key] = cleaned

    identifiers: list[dict[str, Any]] = []
    raw = value.get("identifiers")
    if raw is not None and raw != "":
        for index, item in child_items(raw, "identifiers", "Identifiers", problems):
            ident = identifier_into(item, f"identifiers.{index}", identity_providers, problems)
            if ident:  # {} for an item that is not an object: nothing to show or send
                identifiers.append(ident)
        if identifiers:
            out["identifiers"] = identifiers
    check_identity(identifiers, identity_providers, problems)

    raw = value.get("subscriptions")
    if raw is not None and raw != "":
        subscriptions = [
            subscription
            for index, item in child_items(raw, "subscriptions", "Subscriptions", problems)
            if (subscription := subscription_into(item, f"subscriptions.{index}", problems))
        ]
        if subscriptions:
            out["subscriptions"] = subscriptions

    raw = value.get("extensions")
    if raw is not None and raw != "":
        groups = []
        for index, item in child_items(raw, "extensions", "Extensions", problems):
            group = extension_into(item, index, problems)
            if len(group) > 2:  # a group without attributes would wipe the group in CDP
                groups.append((index, group))
        if groups:
            check_extension_groups(groups, problems)
            out["extensions"] = [group for _, group in groups]
    return out, problems
