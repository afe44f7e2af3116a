"""Idempotent text normalisers: the letter-case conventions of cdp-batch-api.md §3."""

import re
from functools import lru_cache

_APOSTROPHES = frozenset("'\u2019")
_DIGIT = re.compile(r"\d")


def normalize_email(s: str) -> str:
    """Strip and lower-case an email address (S-GUEST recommends lower case)."""
    return s.strip().lower()


def normalize_upper(s: str) -> str:
    """Strip and upper-case: postCode, passportNumber, country, language, enum codes."""
    return s.strip().upper()


def normalize_lower(s: str) -> str:
    """Strip and lower-case: gender, guestType."""
    return s.strip().lower()


# Names, cities and street lines repeat across millions of rows; the cache (a few MB at most)
# turns most calls on the import path into one dict lookup.
@lru_cache(maxsize=32768)
def normalize_title_case(s: str) -> str:
    """Title-case names, cities, states, nationalities and street lines; collapse whitespace.

    Each word, and each hyphenated part of a word, starts with a capital. A part written all
    in one case is re-cased ("o'BRIEN" -> "O'Brien", "mary-jane" -> "Mary-Jane"); a part that
    already mixes cases after its first letter is kept as the source wrote it ("McDonald",
    "DeVito"), since its inner capitals carry information no rule can rebuild. Parts holding
    a digit ("1st", "2B") and text already in title case are left alone.
    """
    # isprintable() is False for every whitespace but the ASCII space.
    if s.istitle() and s.isprintable() and "  " not in s and s[0] != " " and s[-1] != " ":
        return s
    return " ".join([_title_word(word) for word in s.split()])


def _title_word(word: str) -> str:
    if word.istitle():
        return word
    if "-" in word:
        return "-".join([_title_part(part) for part in word.split("-")])
    return _title_part(word)


def _title_part(part: str) -> str:
    if part.istitle():
        return part
    start = 0
    if not part.isalpha():
        if _DIGIT.search(part) is not None:
            return part
        # Leading punctuation ("(john"): the capital goes on the first letter.
        while start < len(part) and not part[start].isalpha():
            start += 1
        if start == len(part):
            return part
    first = _title_char(part[start])
    tail = part[start + 1 :]
    lower_tail = tail.lower()
    if lower_tail != tail and tail.upper() != tail:
        return part[:start] + first + tail
    # "O'Brien", "D'Angelo": a one-letter prefix before an apostrophe is a particle, and the
    # name after it is capitalised too; "John's" (longer prefix) is a possessive and is not.
    if len(lower_tail) > 1 and lower_tail[0] in _APOSTROPHES:
        return part[:start] + first + lower_tail[0] + _title_char(lower_tail[1]) + lower_tail[2:]
    return part[:start] + first + lower_tail


def _title_char(c: str) -> str:
    # Skip characters whose capital is not a single letter of the same word ("ß" -> "Ss",
    # Turkish dotless "ı" -> "I" which would then fold to "i"): leaving them keeps the
    # normaliser idempotent and the letters unchanged.
    t = c.title()
    if t == c or len(t) != 1 or t.casefold() != c.casefold():
        return c
    return t
