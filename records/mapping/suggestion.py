"""Suggesting a mapping for a file nobody has mapped yet, from its header and sample values.

For each source column, in this order: its name is a CDP column already (any case and
spacing); its name is a known alias (one table, ALIASES); its name is close to a CDP field
name (edit distance); its values look like one kind of field (e-mail addresses, ISO dates,
country names). Known codes get a value map (M -> male, Ireland -> IE, 1 -> SUBSCRIBED), dates
in another format get a date format, and an e-mail column also becomes the guest's `email`
identifier. The steward confirms or changes every suggestion.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import cache

from babel import Locale

from records.mapping.columns import canonical_column, known_columns
from records.mapping.documents import ColumnRule, MappingDocument
from records.models import Schema
from records.rules import COUNTRY_CODES, GENDERS, SUBSCRIPTION_STATUSES, TITLES

# Source column names seen in real exports -> the CDP target (compared without case, spaces,
# dashes, dots or underscores). `street[]` collects address lines in column order.
ALIASES: dict[str, str] = {
    **dict.fromkeys(("email", "emailaddress", "mail", "e-mail"), "email"),
    **dict.fromkeys(("fname", "firstname", "givenname", "forename", "vorname"), "firstName"),
    **dict.fromkeys(("lname", "lastname", "surname", "familyname", "nachname"), "lastName"),
    **dict.fromkeys(("salutation", "anrede", "honorific"), "title"),
    **dict.fromkeys(("sex",), "gender"),
    **dict.fromkeys(
        ("dob", "birthdate", "dateofbirth", "birthday", "geburtsdatum"), "dateOfBirth"
    ),  # fmt: skip
    **dict.fromkeys(
        (
            "mobile",
            "phone",
            "telephone",
            "tel",
            "cell",
            "mobilephone",
            "phonenumber",
            "mobilenumber",
        ),
        "phoneNumbers",
    ),  # fmt: skip
    **dict.fromkeys(("address", "street", "streetaddress", "addressline"), "street[]"),
    **{f"address{n}": "street[]" for n in range(1, 6)},
    **{f"addressline{n}": "street[]" for n in range(1, 6)},
    **{f"street{n}": "street[]" for n in range(1, 6)},
    **dict.fromkeys(("city", "town", "ort", "stadt"), "city"),
    **dict.fromkeys(("state", "county", "region", "province"), "state"),
    **dict.fromkeys(("zip", "zipcode", "postcode", "postalcode", "plz"), "postCode"),
    **dict.fromkeys(("country", "countrycode", "land"), "country"),
    **dict.fromkeys(("lang", "language", "locale", "preferredlanguage"), "language"),
    **dict.fromkeys(("nationality", "citizenship"), "nationality"),
}
# Column names that carry a second identity (a customer or member number): suggested as
# identifiers[1].id with the provider the steward names.
IDENTIFIER_ALIASES = frozenset(
    ("customerid", "customerno", "customernumber", "custid", "custno", "memberid",
     "memberno", "membernumber", "loyaltyid", "loyaltynumber", "crmid", "accountid",
     "accountnumber", "clientid")
)  # fmt: skip
OPT_IN_ALIASES = frozenset(("optin", "emailoptin", "newsletter", "marketingconsent", "consent",
                            "emailconsent", "subscribed"))  # fmt: skip
GENDER_VALUES = {"m": "male", "f": "female", "w": "female", "man": "male", "woman": "female",
                 "u": "unknown", "x": "unknown"}  # fmt: skip
TITLE_VALUES = {"mister": "Mr", "mr.": "Mr", "mrs.": "Mrs", "ms.": "Ms", "miss.": "Miss",
                "dr.": "Dr", "doctor": "Dr"}  # fmt: skip
OPT_IN_VALUES = {"1": "SUBSCRIBED", "0": "UNSUBSCRIBED", "y": "SUBSCRIBED", "n": "UNSUBSCRIBED",
                 "yes": "SUBSCRIBED", "no": "UNSUBSCRIBED", "true": "SUBSCRIBED",
                 "false": "UNSUBSCRIBED"}  # fmt: skip
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%Y%m%d", "%d-%m-%Y")
SECOND_PROVIDER = "CUSTOMER_NO"
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_FOLD = re.compile(r"[\s_.\-]+")


def _fold(name: str) -> str:
    return _FOLD.sub("", name.strip().casefold())


@cache
def _country_names() -> dict[str, str]:
    """English (and the codes' own) country names, folded -> ISO 3166-1 alpha-2."""
    names = {}
    for code, name in Locale("en").territories.items():
        if code in COUNTRY_CODES:
            names[name.casefold()] = code
    names.update({"uk": "GB", "united kingdom": "GB", "great britain": "GB", "usa": "US",
                  "united states of america": "US", "holland": "NL"})  # fmt: skip
    return names


@cache
def _field_names(schema: str) -> dict[str, str]:
    """CDP columns without their <n>/<attribute> templates, folded -> canonical."""
    names = {}
    for name in known_columns(schema):
        if "<" not in name:
            names[_fold(name)] = name
    return names


def suggest_mapping(
    schema: str, header: Sequence[str], samples: Sequence[Sequence[str]]
) -> MappingDocument:
    """A mapping for this header: every column mapped to its likeliest target, or ignored."""
    columns: list[ColumnRule] = []
    constants: dict[str, str] = {}
    taken: set[str] = set()
    for col, name in enumerate(header):
        if not name or not name.strip():
            continue
        values = [row[col].strip() for row in samples if col < len(row) and row[col].strip()]
        rule = _suggest_column(schema, name, values, taken)
        taken.update(t for t in rule.targets if not t.endswith("[]"))
        columns.append(rule)
    if any(t.startswith("subscriptions.0.status") for t in taken) and not any(
        t.startswith("subscriptions.0.") and t != "subscriptions.0.status" for t in taken
    ):
        constants.update({"subscriptions.0.name": "newsletter", "subscriptions.0.channel": "EMAIL",
                          "subscriptions.0.pointOfSale": "web"})  # fmt: skip
    if schema == Schema.GUEST and not any(
        t.startswith("identifiers.") and t != "identifiers.?.id" for t in taken
    ):
        columns = _with_identifiers(columns, constants)
    return MappingDocument(schema=schema, columns=tuple(columns), constants=constants)


def _with_identifiers(columns: list[ColumnRule], constants: dict[str, str]) -> list[ColumnRule]:
    """Identity for a file without identifier columns: its e-mail column first (provider
    email), then customer-number-like columns (provider SECOND_PROVIDER, to be confirmed)."""
    slots = 0
    out = list(columns)
    for index, rule in enumerate(out):
        if rule.targets == ("email",):
            out[index] = replace(rule, targets=("email", "identifiers.0.id"))
            constants["identifiers.0.provider"] = "email"
            slots = 1
            break
    for index, rule in enumerate(out):
        if rule.targets == ("identifiers.?.id",):
            out[index] = replace(rule, targets=(f"identifiers.{slots}.id",))
            constants[f"identifiers.{slots}.provider"] = SECOND_PROVIDER
            slots += 1
    return out


def _suggest_column(schema: str, name: str, values: list[str], taken: set[str]) -> ColumnRule:
    target = _target_by_name(schema, name)
    if target is None or (target in taken and not target.endswith("[]")):
        target = _target_by_values(schema, values)
    if target is None or (target in taken and not target.endswith("[]")):
        return ColumnRule(source=name.strip(), targets=())
    return ColumnRule(source=name.strip(), targets=(target,), **_transforms(target, values))


def _target_by_name(schema: str, name: str) -> str | None:
    exact = canonical_column(schema, name)
    if exact is not None:
        return exact
    folded = _fold(name)
    fields = _field_names(schema)
    if folded in fields:
        return fields[folded]
    if schema == Schema.GUEST:
        if folded in ALIASES:
            return ALIASES[folded]
        if folded in IDENTIFIER_ALIASES:
            return "identifiers.?.id"
        if folded in OPT_IN_ALIASES:
            return "subscriptions.0.status"
    close = difflib.get_close_matches(folded, list(fields), n=1, cutoff=0.85)
    return fields[close[0]] if close else None


def _target_by_values(schema: str, values: list[str]) -> str | None:
    if schema != Schema.GUEST or not values:
        return None
    if all(_EMAIL.fullmatch(v) for v in values):
        return "email"
    countries = _country_names()
    if all(v.upper() in COUNTRY_CODES or v.casefold() in countries for v in values):
        return "country"
    return None


def _transforms(target: str, values: list[str]) -> dict:
    """The value map or date format this column's sample values call for."""
    if target == "dateOfBirth":
        fmt = _date_format(values)
        return {"date_format": fmt} if fmt and fmt != "%Y-%m-%d" else {}
    if target in ("country", "nationality"):
        names = _country_names()
        found = {v: names[v.casefold()] for v in values if v.casefold() in names}
        return {"values": found} if found else {}
    if target == "email":
        return {"case": "lower"}
    table = {"gender": GENDER_VALUES, "title": TITLE_VALUES}.get(target)
    if target.startswith("subscriptions.") and target.endswith(".status"):
        table = OPT_IN_VALUES
    if table is None:
        return {}
    # The whole (small) table, not only the sampled values: the rest of the file has them too.
    # Only when the samples need it: a column already in CDP's codes is left as it is.
    known = {v.casefold() for v in (*GENDERS, *TITLES, *SUBSCRIPTION_STATUSES)}
    if all(v.casefold() in known for v in values):
        return {}
    return {"values": dict(table)}


def _date_format(values: list[str]) -> str | None:
    """The first of DATE_FORMATS every sample date parses with (None: leave the text)."""
    for fmt in DATE_FORMATS:
        try:
            for value in values:
                datetime.strptime(value, fmt)  # noqa: DTZ007 - only the shape is tested
        except ValueError:
            continue
        return fmt
    return None
