"""Field cleaners shared by the CDP models: each takes (raw, field path, problems) and returns
the canonical value, or None when the field is absent or of a type that cannot be kept."""

import math
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from .codes import ACCEPTED_CURRENCY_CODES, COUNTRY_CODES, LANGUAGE_CODES
from .dates import DATETIME_HELP, as_utc, is_canonical, parse_cdp_datetime
from .normalizers import normalize_email, normalize_upper
from .problems import Problem, invalid_choice, invalid_type, required, too_long

Cleaner = Callable[[Any, str, list[Problem]], Any]

# Lengths. CDP documents none for guests (only order item `name`, 128); these bounds are ours,
# generous for real data and small enough to catch a column shifted into the wrong field.
MAX_TEXT_LENGTH = 255
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit
MAX_PHONE_LENGTH = 64
MAX_LONG_TEXT_LENGTH = 1000  # free text: extension string values, tracking feedback notes

# Pragmatic address shape (CDP's own "email validation rules" page was unreadable, Q12): one
# "@", a local part and a dotted domain with a 2+ character last label, no whitespace, control
# characters or RFC 5322 specials outside quotes. Unicode letters pass (internationalised mail).
_EMAIL_CHAR = r'[^@\s\x00-\x1f\x7f"(),:;<>\[\\\]]'
_EMAIL_DOMAIN_CHAR = r'[^@\s\x00-\x1f\x7f"(),:;<>\[\\\].]'
EMAIL_PATTERN = re.compile(
    rf"{_EMAIL_CHAR}+@(?:{_EMAIL_DOMAIN_CHAR}+\.)+{_EMAIL_DOMAIN_CHAR}{{2,}}"
)

# Digits and the usual formatting characters, at least five digits.
PHONE_PATTERN = re.compile(r"[+ ().\-]*(?:[0-9][+ ().\-]*){5,}")

# Upper-case enum codes whose list CDP does not publish (tracking channel and type).
CODE_PATTERN = re.compile(r"[A-Z][A-Z0-9_]*")

# Flat files carry list fields (phoneNumbers, street) in one cell.
LIST_SEPARATORS = re.compile(r"[;|]")


def text_field(
    label: str, normalize: Callable[[str], str] = str.strip, max_length: int = MAX_TEXT_LENGTH
) -> Cleaner:
    """Free text, normalised, bounded in length."""

    def clean(raw: Any, field: str, problems: list[Problem]) -> str | None:
        if type(raw) is not str and not isinstance(raw, str):
            problems.append(invalid_type(field, label, "text"))
            return None
        value = normalize(raw)
        if not value:
            return None
        if len(value) > max_length:
            problems.append(too_long(field, label, max_length))
        return value

    return clean


def choice_field(
    label: str,
    choices: Collection[str],
    normalize: Callable[[str], str],
    code: str = "invalid_choice",
    message: str | None = None,
) -> Cleaner:
    """One value of a fixed list, matched case-insensitively, written in the list's casing."""
    canonical = {choice.casefold(): choice for choice in choices}
    problem_message = message or invalid_choice("", label, choices).message

    def clean(raw: Any, field: str, problems: list[Problem]) -> str | None:
        if not isinstance(raw, str):
            problems.append(invalid_type(field, label, "text"))
            return None
        value = normalize(raw)
        if not value:
            return None
        found = canonical.get(value.casefold())
        if found is None:
            problems.append(Problem(field, code, problem_message))
            return value
        return found

    return clean


def code_field(label: str, codes: frozenset[str], code: str, message: str) -> Cleaner:
    """An upper-case code from a standard list (country, language, currency)."""

    def clean(raw: Any, field: str, problems: list[Problem]) -> str | None:
        if not isinstance(raw, str):
            problems.append(invalid_type(field, label, "text"))
            return None
        value = normalize_upper(raw)
        if not value:
            return None
        if value not in codes:
            problems.append(Problem(field, code, message))
            return raw.strip()  # not a code: kept as given ("Ireland"), for the steward
        return value

    return clean


clean_country = code_field(
    "Country",
    COUNTRY_CODES,
    "invalid_country",
    "Country must be an ISO 3166-1 alpha-2 country code such as IE.",
)
clean_language = code_field(
    "Language",
    LANGUAGE_CODES,
    "invalid_language",
    "Language must be a two-letter ISO 639-1 language code such as EN.",
)
clean_currency = code_field(
    "Currency",
    ACCEPTED_CURRENCY_CODES,
    "invalid_currency",
    "Currency must be a three-letter ISO 4217 currency code such as EUR.",
)


def email_field(label: str) -> Cleaner:
    """An email address, lower-cased."""

    def clean(raw: Any, field: str, problems: list[Problem]) -> str | None:
        if not isinstance(raw, str):
            problems.append(invalid_type(field, label, "text"))
            return None
        value = normalize_email(raw)
        if not value:
            return None
        if len(value) > MAX_EMAIL_LENGTH:
            problems.append(too_long(field, label, MAX_EMAIL_LENGTH))
        elif EMAIL_PATTERN.fullmatch(value) is None:
            problems.append(Problem(field, "invalid_email", f"{label} is not a valid address."))
        return value

    return clean


def clean_phone_number(raw: Any, field: str, problems: list[Problem]) -> str | None:
    """A phone number: whitespace collapsed, digits and + - ( ) . and spaces, 5+ digits."""
    if not isinstance(raw, str):
        problems.append(invalid_type(field, "Phone number", "text"))
        return None
    value = " ".join(raw.split())
    if not value:
        return None
    if len(value) > MAX_PHONE_LENGTH:
        problems.append(too_long(field, "Phone number", MAX_PHONE_LENGTH))
    elif PHONE_PATTERN.fullmatch(value) is None:
        problems.append(
            Problem(
                field,
                "invalid_phone",
                "Phone number must have at least 5 digits, and only digits, spaces, "
                "plus signs, hyphens, brackets and dots.",
            )
        )
    return value


def list_field(label: str, item: Cleaner) -> Cleaner:
    """A JSON array of strings, or one flat-file cell with `;` or `|` between the items."""

    def clean(raw: Any, field: str, problems: list[Problem]) -> list[Any] | None:
        if isinstance(raw, str):
            items: Any = LIST_SEPARATORS.split(raw)
        elif isinstance(raw, list | tuple):
            items = raw
        else:
            problems.append(invalid_type(field, label, "a list of text"))
            return None
        out = []
        for index, value in enumerate(items):
            if value is None or value == "":
                continue
            cleaned = item(value, f"{field}.{index}", problems)
            if cleaned is not None:
                out.append(cleaned)
        return out or None

    return clean


def date_field(
    label: str, formatter: Callable[[datetime], str], *, past: bool = False, cached: bool = False
) -> Cleaner:
    """A date or date-time: ISO-8601 text, or a date/datetime (spreadsheets); naive means UTC.

    cached=True memoises text -> value, for fields whose values repeat across rows (dates of
    birth and expiry dates: a few tens of thousands of distinct days).
    """
    canonical_length = len(formatter(datetime(2000, 1, 1, tzinfo=UTC)))

    def convert(text: str) -> tuple[datetime, str]:
        moment = parse_cdp_datetime(text)
        if len(text) == canonical_length and is_canonical(text):
            return moment, text  # already what the formatter would write
        return moment, formatter(moment)

    if cached:
        convert = lru_cache(maxsize=16384)(convert)

    def clean(raw: Any, field: str, problems: list[Problem]) -> str | None:
        if isinstance(raw, str):
            text = raw.strip()
            if not text:
                return None
            try:
                moment, value = convert(text)
            except ValueError:
                problems.append(
                    Problem(field, "invalid_date", f"{label} is not a valid date. {DATETIME_HELP}")
                )
                return text
        elif isinstance(raw, date):
            moment = as_utc(raw)
            value = formatter(moment)
        else:
            problems.append(invalid_type(field, label, "a date"))
            return None
        # Pure module, no Django settings: datetime.now(UTC) rather than timezone.now().
        if past and moment >= datetime.now(UTC):
            problems.append(Problem(field, "date_not_in_past", f"{label} must be in the past."))
        return value

    return clean


def is_mapping(value: Any) -> bool:
    """isinstance(value, Mapping), with the common dict case first (the ABC check is slow)."""
    return type(value) is dict or isinstance(value, Mapping)


def scalar_value(raw: Any) -> bool:
    """True for the extension value types CDP accepts: string, boolean, integer, finite number."""
    if isinstance(raw, str | bool | int):
        return True
    return isinstance(raw, float) and math.isfinite(raw)


def required_field(
    raw: Any, field: str, label: str, clean: Cleaner, problems: list[Problem]
) -> Any:
    """Clean a required field: "required" when blank, the cleaner's own problem otherwise."""
    if raw is None or raw == "":
        problems.append(required(field, label))
        return None
    reported = len(problems)
    cleaned = clean(raw, field, problems)
    if cleaned is None and len(problems) == reported:  # whitespace only
        problems.append(required(field, label))
    return cleaned


def child_items(
    raw: Any, field: str, label: str, problems: list[Problem]
) -> Iterator[tuple[int, Any]]:
    """(input index, item) for the non-blank items of a child list (raw not blank).

    An item whose values are all blank is absent, not invalid: flat files carry fixed columns
    (identifiers.1.provider, ...) that are empty for most rows. Paths use the input index, so
    they name the flat-file column.
    """
    if type(raw) is not list and not isinstance(raw, list | tuple):
        problems.append(invalid_type(field, label, "a list of objects"))
        return
    ignore = EXTENSION_DEFAULT_KEYS if field == "extensions" else _NOTHING
    for index, item in enumerate(raw):
        if not _blank_mapping(item, ignore):
            yield index, item


EXTENSION_DEFAULT_KEYS = frozenset(("name", "key"))  # alone, they do not make a group
_NOTHING: frozenset[str] = frozenset()


def _blank_mapping(item: Any, ignore: frozenset[str]) -> bool:
    if item is None:
        return True
    if not is_mapping(item):
        return False
    for key, value in item.items():
        if value is None or value == "" or key in ignore:
            continue
        if type(value) is not str or not value.isspace():
            return False
    return True
