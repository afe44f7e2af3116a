"""Parsing and formatting of CDP date-times (ISO-8601, UTC; cdp-batch-api.md §3 conventions)."""

import re
from datetime import UTC, date, datetime

# The variants seen in source files: date only, date + HH:MM[:SS[.fraction]] with "T" or a
# space, optional "Z" or numeric offset. Checked before fromisoformat(), which would also take
# week dates, basic format and a bare hour, none of which a data file means as a date-time.
_DATETIME_SHAPE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?"
)

DATETIME_HELP = "Use an ISO-8601 date or date-time such as 2025-03-07T16:15:11.000Z or 1985-12-24."


def parse_cdp_datetime(text: str) -> datetime:
    """Parse an ISO-8601 date or date-time into an aware UTC datetime; naive input is UTC.

    Raises ValueError with a message that does not repeat the input (it may be personal data).
    """
    s = text.strip()
    if s[-1:] == "z":
        s = s[:-1] + "Z"
    if not is_canonical(s) and _DATETIME_SHAPE.fullmatch(s) is None:
        raise ValueError(f"Not a valid date or date-time. {DATETIME_HELP}")
    try:
        parsed = datetime.fromisoformat(s)
        if parsed.tzinfo is UTC:
            return parsed
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        # Shape is right but the calendar is not (2025-02-30, 25:00, an offset past year 1).
        raise ValueError(f"Not a valid calendar date or time. {DATETIME_HELP}") from None


def is_canonical(s: str) -> bool:
    """True if s has the shape this module writes: "2025-03-07T16:15:11.000Z" or
    "1985-12-24T00:00Z" (fromisoformat() then checks the digits; the fixed positions rule
    out its other ISO forms)."""
    n = len(s)
    return (
        (n == 24 or n == 17)
        and s[4] == "-"
        and s[7] == "-"
        and s[10] == "T"
        and s[13] == ":"
        and s[-1] == "Z"
        and (n == 17 or (s[16] == ":" and s[19] == "."))
    )


def as_utc(value: date | datetime) -> datetime:
    """Return an aware UTC datetime for a date (midnight UTC) or datetime (naive means UTC)."""
    if isinstance(value, datetime):
        if value.tzinfo is UTC:
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def format_cdp_datetime(dt: datetime) -> str:
    """Format as CDP's date-time, UTC with milliseconds: "2025-03-07T16:15:11.000Z"."""
    # isoformat() ends in "+00:00" for UTC; it truncates to milliseconds, never rounds up.
    return as_utc(dt).isoformat(timespec="milliseconds")[:-6] + "Z"


def format_cdp_date(d: date | datetime) -> str:
    """Format dateOfBirth / passportExpiry as S-GUEST shows them: "1985-12-24T00:00Z"."""
    return as_utc(d).isoformat(timespec="minutes")[:-6] + "Z"
