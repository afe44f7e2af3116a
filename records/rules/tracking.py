"""Tracking event rules (cdp-batch-api.md §3.3). No official field table exists (Q4); the
fields are those of the only public example, plus the guest's identifiers."""

from collections.abc import Mapping, Sequence
from typing import Any

from .dates import format_cdp_datetime
from .fields import (
    CODE_PATTERN,
    MAX_LONG_TEXT_LENGTH,
    Cleaner,
    child_items,
    date_field,
    is_mapping,
    required_field,
    text_field,
)
from .identifiers import identifier_into
from .normalizers import normalize_upper
from .problems import Problem, invalid_type, unknown_fields

# Canonical key order: the public example's, then the guest identity.
TRACKING_FIELDS: tuple[str, ...] = (
    "serviceIdentifier", "occurredAt", "channel", "type", "uotr", "utms", "feedback", "identifiers",
)  # fmt: skip
_TRACKING_KEYS = frozenset(TRACKING_FIELDS)
FEEDBACK_FIELDS: tuple[str, ...] = ("reasonCode", "notes")
_FEEDBACK_KEYS = frozenset(FEEDBACK_FIELDS)


def _code(label: str, example: str) -> Cleaner:
    """An upper-case code whose list CDP does not publish: shape is all we can check."""

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


_clean_service = text_field("Service identifier")
_clean_occurred_at = date_field("Occurred at", format_cdp_datetime)
_clean_channel = _code("Channel", "EMAIL")
_clean_type = _code("Type", "SENT")
_clean_uotr = text_field("Tracking reference (uotr)")
_clean_utm = text_field("UTM parameter")
_clean_reason_code = _code("Feedback reason code", "PRICE_TOO_HIGH")
_clean_notes = text_field("Feedback notes", max_length=MAX_LONG_TEXT_LENGTH)


def clean_tracking(
    value: Mapping[str, Any], *, identity_providers: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate and normalise a tracking event; return its canonical CDP value and problems.

    identifiers are optional; when given they follow the guest identifier rule, checked
    against identity_providers if the caller passes the configured list.
    """
    problems: list[Problem] = []
    unknown_fields(value, _TRACKING_KEYS, "", "tracking event", problems)
    out: dict[str, Any] = {}
    _put(out, "serviceIdentifier", required_field(
        value.get("serviceIdentifier"), "serviceIdentifier", "Service identifier",
        _clean_service, problems,
    ))  # fmt: skip
    _put(out, "occurredAt", required_field(
        value.get("occurredAt"), "occurredAt", "Occurred at", _clean_occurred_at, problems
    ))  # fmt: skip
    _put(out, "channel", _optional(value.get("channel"), "channel", _clean_channel, problems))
    _put(out, "type", required_field(value.get("type"), "type", "Type", _clean_type, problems))
    _put(out, "uotr", _optional(value.get("uotr"), "uotr", _clean_uotr, problems))
    _put(out, "utms", _utms(value.get("utms"), problems))
    _put(out, "feedback", _feedback(value.get("feedback"), problems))

    raw = value.get("identifiers")
    if raw is not None and raw != "":
        identifiers = [
            identifier_into(item, f"identifiers.{index}", identity_providers, problems)
            for index, item in child_items(raw, "identifiers", "Identifiers", problems)
        ]
        if identifiers:
            out["identifiers"] = identifiers
    return out, problems


def _put(out: dict[str, Any], key: str, cleaned: Any) -> None:
    if cleaned is not None:
        out[key] = cleaned


def _optional(raw: Any, field: str, clean: Cleaner, problems: list[Problem]) -> Any:
    if raw is None or raw == "":
        return None
    return clean(raw, field, problems)


def _utms(raw: Any, problems: list[Problem]) -> dict[str, str] | None:
    """UTM parameters, string to string, keys sorted (flat files fold `utms.utm_source`)."""
    if raw is None or raw == "":
        return None
    if not is_mapping(raw):
        problems.append(invalid_type("utms", "UTM parameters", "an object of texts"))
        return None
    out: dict[str, str] = {}
    for key in sorted(k for k in raw if isinstance(k, str) and k):
        item = raw[key]
        if item is None or item == "":
            continue
        cleaned = _clean_utm(item, f"utms.{key}", problems)
        if cleaned is not None:
            out[key] = cleaned
    return out or None


def _feedback(raw: Any, problems: list[Problem]) -> dict[str, str] | None:
    if raw is None or raw == "":
        return None
    if not is_mapping(raw):
        problems.append(invalid_type("feedback", "Feedback", "an object with reasonCode and notes"))
        return None
    unknown_fields(raw, _FEEDBACK_KEYS, "feedback.", "tracking feedback", problems)
    out: dict[str, str] = {}
    _put(out, "reasonCode", _optional(
        raw.get("reasonCode"), "feedback.reasonCode", _clean_reason_code, problems
    ))  # fmt: skip
    _put(out, "notes", _optional(raw.get("notes"), "feedback.notes", _clean_notes, problems))
    return out or None
