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
    if known.issuperset(value):
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
