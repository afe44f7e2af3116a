"""Subscription rules (BX15, S-REST20GUEST; legacy, Q6): name, pointOfSale, channel, status."""

from functools import lru_cache
from typing import Any

from .codes import SUBSCRIPTION_CHANNELS, SUBSCRIPTION_STATUSES
from .dates import format_cdp_datetime
from .fields import Cleaner, choice_field, date_field, is_mapping, required_field, text_field
from .normalizers import normalize_upper
from .problems import Problem, invalid_type, unknown_fields

# The keys of a subscription in CDP's guest data model (cdp-batch-api.md 3.1).
SUBSCRIPTION_FIELDS: tuple[str, ...] = ("name", "pointOfSale", "channel", "status", "effectiveDate")
_SUBSCRIPTION_KEYS = frozenset(SUBSCRIPTION_FIELDS)
# Required when the subscription is present (BX15), in canonical order.
_REQUIRED: tuple[tuple[str, str, Cleaner], ...] = (
    ("name", "Subscription name", text_field("Subscription name")),
    ("pointOfSale", "Subscription point of sale", text_field("Subscription point of sale")),
    (
        "channel",
        "Subscription channel",
        choice_field("Subscription channel", SUBSCRIPTION_CHANNELS, normalize_upper),
    ),
    (
        "status",
        "Subscription status",
        choice_field("Subscription status", SUBSCRIPTION_STATUSES, normalize_upper),
    ),
)
_clean_effective_date = date_field("Subscription effective date", format_cdp_datetime)


def clean_subscription(value: Any, *, index: int) -> tuple[dict[str, Any], list[Problem]]:
    """Validate one subscription: name, pointOfSale, channel and status are required."""
    problems: list[Problem] = []
    out = subscription_into(value, f"subscriptions.{index}", problems)
    return out, problems


def subscription_into(value: Any, base: str, problems: list[Problem]) -> dict[str, Any]:
    """clean_subscription's body: append problems to the caller's list, return the value."""
    if type(value) is dict:
        # Most files hold a handful of distinct subscriptions repeated on every row; the
        # result depends on nothing but the input, so it is computed once per distinct one.
        try:
            out, found = _cached(base, tuple(value.items()))
        except TypeError:  # an unhashable (invalid) value
            pass
        else:
            problems.extend(found)
            return dict(out)
    return _subscription(value, base, problems)


@lru_cache(maxsize=4096)
def _cached(base: str, items: tuple[tuple[str, Any], ...]) -> tuple[dict[str, Any], tuple]:
    problems: list[Problem] = []
    out = _subscription(dict(items), base, problems)
    return out, tuple(problems)


def _subscription(value: Any, base: str, problems: list[Problem]) -> dict[str, Any]:
    if not is_mapping(value):
        problems.append(invalid_type(base, "Subscription", "an object"))
        return {}
    unknown_fields(value, _SUBSCRIPTION_KEYS, f"{base}.", "subscription", problems)
    out: dict[str, Any] = {}
    for key, label, clean in _REQUIRED:
        cleaned = required_field(value.get(key), f"{base}.{key}", label, clean, problems)
        if cleaned is not None:
            out[key] = cleaned
    raw_date = value.get("effectiveDate")
    if raw_date is not None and raw_date != "":
        effective = _clean_effective_date(raw_date, f"{base}.effectiveDate", problems)
        if effective is not None:
            out["effectiveDate"] = effective
    return out
