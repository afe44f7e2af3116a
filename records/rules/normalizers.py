"""Idempotent text normalisers: the letter-case conventions of cdp-batch-api.md §3."""

import unicodedata


def normalize_email(s: str) -> str:
    """Strip and lower-case an email address (S-GUEST recommends lower case), in one form
    for internationalised addresses: NFC, and the domain's IDNA labels ("xn--bcher-kva") as
    the Unicode they encode ("bücher"), so both spellings of one address are one guest."""
    s = s.strip().lower()
    if s.isascii():
        if "xn--" not in s:
            return s
    else:
        s = unicodedata.normalize("NFC", s)
    local, at, domain = s.rpartition("@")
    if not at or "xn--" not in domain:
        return s
    return f"{local}@{'.'.join(_idna_label(label) for label in domain.split('.'))}"


def _idna_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return label.encode("ascii").decode("idna").lower()
    except UnicodeError:
        return label  # not valid punycode: kept as given (the address rule judges it)


def normalize_upper(s: str) -> str:
    """Strip and upper-case: postCode, passportNumber, country, language, enum codes."""
    return s.strip().upper()


def normalize_lower(s: str) -> str:
    """Strip and lower-case: gender, guestType."""
    return s.strip().lower()


def normalize_spaces(s: str) -> str:
    """Strip and collapse runs of whitespace: names, cities, states, nationalities and street
    lines. The letters stay as the source wrote them ("McDonald", "van Beethoven", "NYC"):
    CDP only recommends title case, and no rule can rebuild capitals a re-casing destroyed."""
    if s.isprintable() and "  " not in s and s[:1] != " " and s[-1:] != " ":
        return s  # isprintable() is False for every whitespace but the ASCII space
    return " ".join(s.split())
