"""Guest migration rules (schema `migration`, mode `guest`; cdp-batch-api.md section 3.1.4).

A migration record names two CDP profiles by their identifiers: the guest whose entities
(orders, browsing history, flow-execution history) move, `migrateFrom`, and the guest that
receives them, `migrateTo`. Each side is `{"identifiers": [...]}` with identifiers as for
guests (S-GID: provider and id required in migration, expiryDate optional); several
identifiers per side are accepted, as the guest model takes them. Nothing else is part of
the record (S-GMIG's example and the sandbox both refuse other keys).
"""

from collections.abc import Mapping, Sequence
from typing import Any

from .fields import child_items, is_mapping
from .identifiers import check_identity, identifier_into, identity_key
from .problems import Problem, invalid_type, unknown_fields

MIGRATION_SIDES: tuple[str, ...] = ("migrateFrom", "migrateTo")
_MIGRATION_KEYS = frozenset(MIGRATION_SIDES)
_SIDE_KEYS = frozenset(("identifiers",))
_SIDE_LABELS = {"migrateFrom": "The guest to migrate from", "migrateTo": "The guest to migrate to"}


def clean_migration(
    value: Mapping[str, Any], *, identity_providers: Sequence[str]
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate a migration record's value; return its canonical CDP value and problems.

    Both sides need an identifier of a configured identity provider (CDP resolves each side
    through the identity rules, S-IDRULES), and the two sides must be different guests.
    """
    problems: list[Problem] = []
    unknown_fields(value, _MIGRATION_KEYS, "", "guest migration", problems)
    out: dict[str, Any] = {}
    for side in MIGRATION_SIDES:
        identifiers = _side(value.get(side), side, identity_providers, problems)
        out[side] = {"identifiers": identifiers}
    source = identity_key(out["migrateFrom"]["identifiers"], identity_providers=identity_providers)
    target = identity_key(out["migrateTo"]["identifiers"], identity_providers=identity_providers)
    if source is not None and source == target:
        problems.append(
            Problem(
                "migrateTo.identifiers",
                "same_guest",
                "The guest to migrate to is the guest to migrate from (same identifier): a "
                "migration moves one guest's data to another guest.",
            )
        )
    return out, problems


def _side(
    raw: Any, side: str, identity_providers: Sequence[str], problems: list[Problem]
) -> list[dict[str, Any]]:
    label = _SIDE_LABELS[side]
    if raw is None or raw == "":
        problems.append(
            Problem(f"{side}.identifiers", "required", f"{label} needs its identifiers.")
        )
        return []
    if not is_mapping(raw):
        problems.append(invalid_type(side, label, "an object with identifiers"))
        return []
    unknown_fields(raw, _SIDE_KEYS, f"{side}.", "guest migration side", problems)
    found = raw.get("identifiers")
    identifiers: list[dict[str, Any]] = []
    if found is not None and found != "":
        base = f"{side}.identifiers"
        identifiers = [
            identifier_into(item, f"{base}.{index}", identity_providers, problems)
            for index, item in child_items(found, base, "Identifiers", problems)
        ]
    side_problems: list[Problem] = []
    check_identity(identifiers, identity_providers, side_problems)
    for problem in side_problems:
        problems.append(Problem(f"{side}.identifiers", problem.code, f"{label}: {problem.message}"))
    return identifiers
