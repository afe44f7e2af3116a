"""The one definition of personal-data masking, for the admin, batch samples and anything shown.

Users without `records.view_pii` see a shape of the value (`j***@e***.com`, `+3***45`), never
the value itself. Codes and enums (country, language, gender, guestType, identifier providers,
subscription fields) are not personal and stay readable so reviewers can still do their job.
"""

import re
from collections.abc import Mapping
from typing import Any

STARS = "***"

# Keys of a canonical CDP value (cdp-batch-api.md section 3) that hold personal data, wherever
# they appear: on a guest, and on an order's contact and consumers later.
PERSONAL_TEXT_KEYS = frozenset(
    {"firstName", "lastName", "city", "postCode", "passportNumber", "uotr", "notes"}
)
PERSONAL_DATE_KEYS = frozenset({"dateOfBirth", "passportExpiry"})
PERSONAL_LIST_KEYS = frozenset({"phoneNumbers", "street"})
EMAIL_KEYS = frozenset({"email"})
# Lists of identifier objects: the `id` is personal, the `provider` is a configured rule name.
IDENTIFIER_LIST_KEYS = frozenset({"identifiers"})
# Extension attributes are free-form (the tenant's schema): their values may be anything, so
# strings and numbers are masked; booleans carry too little to identify anyone.
EXTENSION_LIST_KEYS = frozenset({"extensions"})
EXTENSION_FIXED_KEYS = frozenset({"name", "key"})

__all__ = [
    "PERSONAL_FIELD_NAMES",
    "can_view_pii",
    "mask_date",
    "mask_email",
    "mask_identity_key",
    "mask_text",
    "mask_value",
]

# Model field names (records.models.Guest / TrackingEvent) that hold personal data: the admin
# masks exactly these and the review services refuse edits to them without view_pii.
PERSONAL_FIELD_NAMES: dict[str, frozenset[str]] = {
    "guest": frozenset(
        {
            "identity_key",
            "email",
            "first_name",
            "last_name",
            "date_of_birth",
            "phone_numbers",
            "street",
            "city",
            "post_code",
            "passport_number",
            "passport_expiry",
        }
    ),
    "tracking": frozenset({"guest_identity_key", "identifiers", "uotr", "feedback"}),
    # The contact and consumers are people; items and the order's own fields are not.
    "order": frozenset({"contact", "contact_identity_key", "consumers"}),
    "migration": frozenset({"from_identity_key", "to_identity_key", "migrate_from", "migrate_to"}),
}


def _guard(original: str, masked: str) -> str:
    # A value made of the mask's own characters ("a***") would survive masking; never show it.
    if original and original in masked:
        return STARS
    return masked


def mask_text(value: object) -> str:
    """Mask free text: the first character of a value of 4+ characters, then stars."""
    if value is None:
        return ""
    text = str(value)
    if not text:
        return ""
    if len(text) < 4:
        return STARS
    return _guard(text, text[0] + STARS)


# What a free-text message (CDP's error-log reasons) may quote of a record: an email address,
# a quoted value, a run of digits (phone, date, id).
QUOTED_OR_PERSONAL = re.compile(r"[^\s@'\"]+@[^\s@'\"]+|'[^']*'|\"[^\"]*\"|\d[\d\s./:+-]{2,}\d")


def mask_message(value: object) -> str:
    """A message with every email, quoted value and digit run in it masked, the words kept:
    "Invalid email 'ada@example.com'" reads "Invalid email ***"."""
    if value is None:
        return ""
    return QUOTED_OR_PERSONAL.sub(STARS, str(value))


def mask_email(value: object) -> str:
    """Mask an email address as `j***@e***.com`: first letters and the top-level domain."""
    if value is None:
        return ""
    text = str(value)
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return mask_text(text)
    name, dot, tld = domain.rpartition(".")
    if dot and name and 0 < len(tld) <= 6 and tld.isalpha():
        masked_domain = f"{name[0]}{STARS}.{tld}"
    else:
        masked_domain = domain[0] + STARS
    return _guard(text, f"{local[0]}{STARS}@{masked_domain}")


def mask_phone(value: object) -> str:
    """Mask a phone number, keeping its first two and last two characters."""
    if value is None:
        return ""
    text = str(value)
    if len(text) < 8:
        return mask_text(text)
    return _guard(text, f"{text[:2]}{STARS}{text[-2:]}")


def mask_date(value: object) -> str:
    """Mask a date or date-time completely: even the year of birth narrows a person down."""
    if value is None or value == "":
        return ""
    return _guard(str(value), "****-**-**")


def mask_identity_key(value: object) -> str:
    """Mask `provider:id` as `provider:<masked id>`; the provider is a configured rule name."""
    if value is None:
        return ""
    text = str(value)
    provider, colon, ident = text.partition(":")
    if not colon:
        return mask_text(text)
    masked_id = mask_email(ident) if "@" in ident else mask_text(ident)
    return _guard(text, f"{provider}:{masked_id}")


def mask_identifier(value: Mapping[str, Any]) -> dict[str, Any]:
    """Mask one identifier object: its `id` (provider and expiry stay)."""
    masked = dict(value)
    if "id" in masked:
        ident = masked["id"]
        masked["id"] = (
            mask_email(ident) if isinstance(ident, str) and "@" in ident else (mask_text(ident))
        )
    return masked


def _mask_scalar(value: object) -> object:
    if value is None or isinstance(value, bool):
        return value
    return mask_text(value)


def _mask_extension(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: (item if key in EXTENSION_FIXED_KEYS else _mask_scalar(item))
        for key, item in value.items()
    }


def _mask_node(value: object) -> object:
    if isinstance(value, Mapping):
        return _mask_mapping(value)
    if isinstance(value, list):
        return [_mask_node(item) for item in value]
    return value


def _mask_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    masked: dict[str, Any] = {}
    for key, item in value.items():
        if item is None:
            masked[key] = None
        elif key in EMAIL_KEYS:
            masked[key] = mask_email(item)
        elif key in PERSONAL_TEXT_KEYS:
            masked[key] = _mask_scalar(item)
        elif key in PERSONAL_DATE_KEYS:
            masked[key] = mask_date(item)
        elif key in PERSONAL_LIST_KEYS:
            items = item if isinstance(item, list) else [item]
            mask = mask_phone if key == "phoneNumbers" else mask_text
            masked[key] = [mask(line) for line in items]
        elif key in IDENTIFIER_LIST_KEYS and isinstance(item, list):
            masked[key] = [
                mask_identifier(ident) if isinstance(ident, Mapping) else _mask_scalar(ident)
                for ident in item
            ]
        elif key in EXTENSION_LIST_KEYS and isinstance(item, list):
            masked[key] = [
                _mask_extension(ext) if isinstance(ext, Mapping) else _mask_scalar(ext)
                for ext in item
            ]
        else:
            masked[key] = _mask_node(item)
    return masked


def mask_value(value: Mapping[str, Any], schema: str) -> dict[str, Any]:
    """Return a copy of a canonical CDP `value` with every personal field masked.

    `schema` is the record's CDP schema ("guest", "tracking", later "order"); the same key
    rules apply to all of them, so a personal key nested anywhere (an order's contact, a
    consumer) is masked too. Unknown keys are walked, not trusted: their nested personal keys
    are masked, their own scalar values are kept (they are enums or codes in the CDP model).
    """
    if schema not in {"guest", "tracking", "order", "migration"}:
        raise ValueError(f"Unknown CDP schema {schema!r}.")
    return _mask_mapping(value)


def can_view_pii(user: Any) -> bool:
    """Whether this user may see personal data unmasked (`records.view_pii`, or superuser)."""
    return bool(user is not None and user.is_active and user.has_perm("records.view_pii"))
