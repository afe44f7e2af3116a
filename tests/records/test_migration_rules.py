"""Tests for records.rules.migration and records.rules.modes: pure functions."""

import pytest

from records.rules import clean_migration, guest_at_cdp, parse_guest_mode

PROVIDERS = ["email", "CRM_ID"]


def _side(*pairs, **extra):
    return {"identifiers": [{"provider": p, "id": i, **extra} for p, i in pairs]}


def test_clean_migration_keeps_both_sides_canonical():
    value, problems = clean_migration(
        {
            "migrateTo": _side(("CRM_ID", " C-1 ")),
            "migrateFrom": _side(("email", "Old@Example.com"), expiryDate="2030-01-01T00:00Z"),
        },
        identity_providers=PROVIDERS,
    )
    assert problems == []
    assert value == {
        "migrateFrom": {
            "identifiers": [
                {
                    "provider": "email",
                    "id": "old@example.com",
                    "expiryDate": "2030-01-01T00:00:00.000Z",
                }
            ]
        },
        "migrateTo": {"identifiers": [{"provider": "CRM_ID", "id": "C-1"}]},
    }
    assert list(value) == ["migrateFrom", "migrateTo"]


@pytest.mark.parametrize(
    ("value", "field", "code"),
    [
        ({"migrateTo": _side(("email", "b@x.com"))}, "migrateFrom.identifiers", "required"),
        (
            {"migrateFrom": _side(("email", "a@x.com")), "migrateTo": {"identifiers": []}},
            "migrateTo.identifiers",
            "missing_identifier",
        ),
        (
            {"migrateFrom": _side(("FAX", "1")), "migrateTo": _side(("email", "b@x.com"))},
            "migrateFrom.identifiers.0.provider",
            "unknown_provider",
        ),
        (
            {"migrateFrom": _side(("email", "a@x.com")), "migrateTo": _side(("email", "A@x.com"))},
            "migrateTo.identifiers",
            "same_guest",
        ),
        (
            {
                "migrateFrom": _side(("email", "a@x.com")),
                "migrateTo": _side(("email", "b@x.com")),
                "firstName": "Ann",
            },
            "firstName",
            "unknown_field",
        ),
        (
            {"migrateFrom": "a@x.com", "migrateTo": _side(("email", "b@x.com"))},
            "migrateFrom",
            "invalid_type",
        ),
    ],
)
def test_clean_migration_problems(value, field, code):
    _, problems = clean_migration(value, identity_providers=PROVIDERS)
    assert (field, code) in {(p.field, p.code) for p in problems}


def test_problem_messages_name_the_side_never_the_value():
    _, problems = clean_migration(
        {"migrateFrom": _side(("email", "a@x.com")), "migrateTo": {"identifiers": []}},
        identity_providers=PROVIDERS,
    )
    (problem,) = problems
    assert problem.message.startswith("The guest to migrate to:")
    assert "a@x.com" not in problem.message


@pytest.mark.parametrize(
    ("word", "mode"),
    [("upsert", "upsert"), ("INSERT", "create"), ("create", "create"), ("merge", None), (3, None)],
)
def test_parse_guest_mode_writes_only_documented_modes(word, mode):
    assert parse_guest_mode(word) == mode


@pytest.mark.parametrize(
    ("delivered_hash", "status", "at_cdp"),
    [("", "not_sent", False), ("", "rejected", False), ("abc", "rejected", True),
     ("abc", "delivered", True), ("", "unknown", True)],
)  # fmt: skip
def test_guest_at_cdp(delivered_hash, status, at_cdp):
    assert guest_at_cdp(delivered_hash=delivered_hash, delivery_status=status) is at_cdp
