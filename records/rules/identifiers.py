"""Identifier rules (S-GID, S-IDRULES): provider and id of each identifier, and guest identity."""

from collections.abc import Mapping, Sequence
from typing import Any

from .dates import format_cdp_datetime
from .fields import date_field, email_field, is_mapping, required_field, text_field
from .normalizers import normalize_email
from .problems import Problem, invalid_type, unknown_fields

# The keys of an identifier in CDP's guest data model (cdp-batch-api.md 3.1).
IDENTIFIER_FIELDS: tuple[str, ...] = ("provider", "id", "expiryDate")
_IDENTIFIER_KEYS = frozenset(IDENTIFIER_FIELDS)
_clean_provider = text_field("Identifier provider")
_clean_id = text_field("Identifier id")
_clean_email_id = email_field("Identifier id")
_clean_expiry_date = date_field("Identifier expiry date", format_cdp_datetime)


def clean_identifier(
    value: Mapping[str, Any],
    *,
    index: int,
    identity_providers: Sequence[str] | None,
    prefix: str = "identifiers",
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate one identifier {provider, id, expiryDate} (S-GID).

    identity_providers=None skips the provider-list check (tracking events without a tenant
    configuration at hand); prefix places the paths, e.g. "contact.identifiers" for orders.
    """
    problems: list[Problem] = []
    out = identifier_into(value, f"{prefix}.{index}", identity_providers, problems)
    return out, problems


def identifier_into(
    value: Any, base: str, identity_providers: Sequence[str] | None, problems: list[Problem]
) -> dict[str, Any]:
    """clean_identifier's body: append problems to the caller's list, return the value."""
    if not is_mapping(value):
        problems.append(invalid_type(base, "Identifier", "an object with provider and id"))
        return {}
    unknown_fields(value, _IDENTIFIER_KEYS, f"{base}.", "identifier", problems)
    out: dict[str, Any] = {}

    provider = required_field(
        value.get("provider"), f"{base}.provider", "Identifier provider", _clean_provider, problems
    )
    if provider is not None:
        out["provider"] = provider
        if identity_providers is not None and provider not in identity_providers:
            problems.append(_unknown_provider(f"{base}.provider", provider, identity_providers))

    raw_id = value.get("id")
    if type(raw_id) is int:
        raw_id = str(raw_id)  # CRM ids arrive as JSON numbers; the decimal text is the id
    # The sample files use an "email" provider; its ids are addresses and follow that rule,
    # lower case included, so "Foo@x.com" and "foo@x.com" are one guest.
    clean_id = _clean_email_id if provider is not None and _is_email(provider) else _clean_id
    ident = required_field(raw_id, f"{base}.id", "Identifier id", clean_id, problems)
    if ident is not None:
        out["id"] = ident

    raw_expiry = value.get("expiryDate")
    if raw_expiry is not None and raw_expiry != "":
        expiry = _clean_expiry_date(raw_expiry, f"{base}.expiryDate", problems)
        if expiry is not None:
            out["expiryDate"] = expiry
    return out


def _is_email(provider: str) -> bool:
    return provider == "email" or provider.lower() == "email"


# How an operator makes a new provider known; said wherever a provider is refused.
ADD_PROVIDER_HINT = (
    "add it under Staged records → Identity providers, or with "
    "`manage.py identity_providers add NAME`"
)


def _unknown_provider(field: str, provider: Any, identity_providers: Sequence[str]) -> Problem:
    accepted = ", ".join(identity_providers) if identity_providers else "none yet"
    # A provider names a source system (email, CRM_ID), not a person: safe to repeat, cut short.
    name = str(provider)[:40]
    return Problem(
        field,
        "unknown_provider",
        f'Identifier provider "{name}" is not a known identity provider (known: {accepted}); '
        f"to accept it, {ADD_PROVIDER_HINT}.",
    )


def identifier_in_use(field: str, other: str) -> Problem:
    """An identifier of a known provider that another staged guest has (S-IDRULES: CDP
    resolves guests by it, so both would become one profile). `other` names that guest by
    its ref or its row in a file, never by its personal data."""
    return Problem(
        field,
        "identifier_in_use",
        f"This identifier already belongs to {other}: CDP would resolve both guests to one "
        "profile, the later overwriting the other. Correct the identifier on one of them, or "
        "merge the two guests, first.",
    )


def check_identity(
    identifiers: Sequence[Mapping[str, Any]],
    identity_providers: Sequence[str],
    problems: list[Problem],
) -> None:
    """Require one identifier of a configured provider.

    Data model 2.1 matches guests only through identifiers whose provider is one of the
    tenant's identity rules (S-IDRULES); without one, CDP logs "identity missing" (S-LOG).
    """
    for ident in identifiers:
        if ident.get("provider") in identity_providers and ident.get("id"):
            return
    if identity_providers:
        message = (
            "At least one identifier from an identity provider is required "
            f"(accepted providers: {', '.join(identity_providers)})."
        )
    else:
        message = (
            "No identity providers are set up yet, so no guest can be identified; "
            f"{ADD_PROVIDER_HINT}."
        )
    problems.append(Problem("identifiers", "missing_identifier", message))


def identity_key(
    identifiers: Sequence[Mapping[str, Any]], *, identity_providers: Sequence[str]
) -> str | None:
    """'<provider>:<id>' of the identifier whose provider ranks first in identity_providers.

    Mirrors CDP's ordered identity rules (DESIGN.md §4). The id is normalised as
    clean_identifier does, so raw and cleaned identifiers give the same key.
    """
    for provider in identity_providers:
        for ident in identifiers:
            if not is_mapping(ident):
                continue
            raw_provider = ident.get("provider")
            if not isinstance(raw_provider, str) or raw_provider.strip() != provider:
                continue
            raw_id = ident.get("id")
            if type(raw_id) is int:
                raw_id = str(raw_id)
            if not isinstance(raw_id, str):
                continue
            key_id = normalize_email(raw_id) if _is_email(provider) else raw_id.strip()
            if key_id:
                return f"{provider}:{key_id}"
    return None
