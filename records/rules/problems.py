"""The validation result type and the wording shared by every rule."""

from collections.abc import Collection, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: where (CDP dotted path), what (stable code) and a readable sentence.

    The message never quotes the offending value: values are personal data, and messages end
    up in error reports and logs. Field paths, configured names and limits may appear.
    """

    field: str
    code: str
    message: str


# What each problem code means, in a reviewer's words (summaries and filters show these, not the
# codes). A code missing here is shown as its own words ("some_code" -> "Some code").
PROBLEM_LABELS: dict[str, str] = {
    "required": "Required value missing",
    "invalid_type": "Wrong kind of value",
    "too_long": "Value too long",
    "invalid_choice": "Not one of the allowed values",
    "unknown_field": "Unknown field",
    "invalid_email": "Invalid e-mail address",
    "invalid_phone": "Invalid phone number",
    "invalid_date": "Invalid date",
    "invalid_datetime": "Invalid date and time",
    "date_not_in_past": "Date in the future",
    "invalid_country": "Unknown country code",
    "invalid_language": "Unknown language code",
    "invalid_currency": "Unknown currency code",
    "invalid_code": "Badly formed code",
    "invalid_guest_type": "Guest type not accepted",
    "missing_identifier": "No identity (identifier or e-mail)",
    "unknown_provider": "Unknown identity provider",
    "identifier_in_use": "Identifier of another guest",
    "same_guest": "Migration to the same guest",
    "insert_already_at_cdp": "Insert of a guest CDP has",
    "duplicate_extension": "Extension given twice",
    "too_many_extensions": "Too many extensions",
    "duplicate_attribute": "Extension attribute given twice",
    "too_many_attributes": "Too many extension attributes",
    "invalid_attribute_name": "Invalid extension attribute name",
    "invalid_attribute_value": "Invalid extension attribute value",
    "invalid_number": "Not a number",
    "duplicate_item_reference": "Order item reference given twice",
    "unknown_order_item": "Consumer linked to no order item",
    "order_already_delivered": "Order already delivered to CDP",
}


def problem_label(code: str) -> str:
    """The readable label of a problem code."""
    return PROBLEM_LABELS.get(code) or code.replace("_", " ").capitalize()


def required(field: str, label: str) -> Problem:
    return Problem(field, "required", f"{label} is required.")


def invalid_type(field: str, label: str, expected: str) -> Problem:
    return Problem(field, "invalid_type", f"{label} must be {expected}.")


def too_long(field: str, label: str, max_length: int) -> Problem:
    return Problem(field, "too_long", f"{label} is longer than {max_length} characters.")


def invalid_choice(field: str, label: str, choices: Collection[str]) -> Problem:
    return Problem(field, "invalid_choice", f"{label} must be one of: {', '.join(choices)}.")


def unknown_fields(
    value: Mapping, known: frozenset[str], prefix: str, model: str, problems: list[Problem]
) -> None:
    """Report every key of value that is not in known (the caller drops them)."""
    if value.keys() <= known:  # a set comparison of the keys view: no set built per call
        return
    for key in value:
        if key not in known:
            problems.append(
                Problem(
                    f"{prefix}{key}",
                    "unknown_field",
                    f"This field is not part of the CDP {model} data model; it is left out.",
                )
            )
