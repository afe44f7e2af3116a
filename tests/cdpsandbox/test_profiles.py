"""The profile store: what CDP would now hold after guest upserts, deletes, migrations."""

from __future__ import annotations

import pytest

from tests.cdpsandbox.conftest import guest, order

# These tests start the sandbox as a real process (the project's `integration` marker).
pytestmark = pytest.mark.integration


def crm(email: str, crm_id: str, **fields):
    record = guest(email, **fields)
    record["value"]["identifiers"].append({"provider": "CRM_ID", "id": crm_id})
    return record


def test_repeated_upserts_merge_into_one_profile(api, sandbox):
    first = guest("ada@example.com", firstName="Ada", city="Dublin")
    second = guest("ada@example.com", lastName="Lovelace", city="Cork")
    assert api.run([first])["status"]["code"] == "success"
    assert api.run([second])["status"]["code"] == "success"
    (profile,) = sandbox.control.profiles()
    assert profile["fields"]["firstName"] == "Ada"  # kept: upsert updates fields present
    assert profile["fields"]["lastName"] == "Lovelace"
    assert profile["fields"]["city"] == "Cork"  # overwritten by the later upsert
    assert profile["refs"] == [first["ref"], second["ref"]]
    assert len(profile["batches"]) == 2
    assert profile["identifiers"] == [{"provider": "email", "id": "ada@example.com"}]


def test_identifiers_accumulate_and_link(api, sandbox):
    api.run([guest("ada@example.com")])
    api.run([crm("ada@example.com", "C-1")])
    # A later record carrying only the CRM id reaches the same guest.
    only_crm = guest("ignored@example.com")
    only_crm["value"] = {"identifiers": [{"provider": "CRM_ID", "id": "C-1"}], "firstName": "Ada"}
    api.run([only_crm])
    (profile,) = sandbox.control.profiles()
    assert {(i["provider"], i["id"]) for i in profile["identifiers"]} == {
        ("email", "ada@example.com"),
        ("CRM_ID", "C-1"),
    }
    assert profile["fields"]["firstName"] == "Ada"
    assert len(profile["refs"]) == 3


def test_record_linking_two_profiles_merges_them(api, sandbox):
    api.run([guest("ada@example.com", firstName="Ada")])
    crm_only = guest("x@example.com")
    crm_only["value"] = {"identifiers": [{"provider": "CRM_ID", "id": "C-9"}], "lastName": "L"}
    api.run([crm_only])
    assert len(sandbox.control.profiles()) == 2
    api.run([crm("ada@example.com", "C-9")])
    (profile,) = sandbox.control.profiles()
    assert profile["fields"]["firstName"] == "Ada"
    assert profile["fields"]["lastName"] == "L"


def test_identifier_provider_not_in_rules_is_kept_but_not_matched(api, sandbox):
    record = guest("ada@example.com")
    record["value"]["identifiers"].append({"provider": "LOYALTY", "id": "L-1"})
    api.run([record])
    other = guest("bob@example.com")
    other["value"]["identifiers"].append({"provider": "LOYALTY", "id": "L-1"})
    api.run([other])
    assert len(sandbox.control.profiles()) == 2


def test_extension_group_is_overwritten_whole(api, sandbox):
    api.run(
        [
            guest(
                "ada@example.com",
                extensions=[
                    {"name": "ext", "key": "default", "tier": "gold", "points": 5},
                    {"name": "ext1", "key": "default", "segment": "A"},
                ],
            )
        ]
    )
    api.run(
        [guest("ada@example.com", extensions=[{"name": "ext", "key": "default", "tier": "silver"}])]
    )
    (profile,) = sandbox.control.profiles()
    groups = {g["name"]: g for g in profile["extensions"]}
    assert groups["ext"] == {"name": "ext", "key": "default", "tier": "silver"}
    assert groups["ext1"]["segment"] == "A"


def test_create_mode_conflicts_with_existing_guest(api, sandbox):
    api.run([guest("ada@example.com")])
    create = {**guest("ada@example.com"), "mode": "create"}
    final = api.run([create])
    assert api.fetch_log(final["status"]["log"]) == [
        {"ref": create["ref"], "code": "409", "message": "Conflict"}
    ]
    fresh = {**guest("new@example.com"), "mode": "create"}
    assert api.run([fresh])["status"]["code"] == "success"
    by_email = {p["fields"]["email"]: p for p in sandbox.control.profiles()}
    assert [h["applied"] for h in by_email["new@example.com"]["history"]] == ["create"]
    assert [h["applied"] for h in by_email["ada@example.com"]["history"]] == ["upsert"]


def test_guest_insert_mode_is_unsupported(api, sandbox):
    insert = {**guest("ada@example.com"), "mode": "insert"}
    final = api.run([insert])
    assert api.fetch_log(final["status"]["log"]) == [
        {"ref": insert["ref"], "code": "402", "message": "Unsupported mode"}
    ]
    assert sandbox.control.profiles() == []


def test_delete_unknown_guest_is_404_in_log(api):
    delete = {**guest("ghost@example.com"), "mode": "delete"}
    final = api.run([delete])
    assert api.fetch_log(final["status"]["log"]) == [
        {"ref": delete["ref"], "code": "404", "message": "Guest not found"}
    ]


def test_delete_by_name_only_is_not_enough(api):
    delete = {**guest(), "mode": "delete", "value": {"firstName": "Ada", "lastName": "L"}}
    final = api.run([delete])
    assert api.fetch_log(final["status"]["log"])[0]["message"] == "Not Enough Identifying Info"


def test_delete_keeps_orders_gdpr_delete_removes_them(api, sandbox):
    api.run([guest("a@example.com"), order("a@example.com", "O-A")])
    api.run([guest("b@example.com"), order("b@example.com", "O-B")])
    ident = {"identifiers": [{"provider": "email", "id": "a@example.com"}]}
    api.run([{**guest(), "mode": "delete", "value": ident}])
    ident_b = {"identifiers": [{"provider": "email", "id": "b@example.com"}]}
    api.run([{**guest(), "mode": "gdpr_delete", "value": ident_b}])
    assert sandbox.control.profiles() == []
    assert [o["referenceId"] for o in sandbox.control.orders()] == ["O-A"]


def test_order_delete(api, sandbox):
    api.run([order("a@example.com", "O-1")])
    delete = {**order(), "mode": "delete", "value": {"referenceId": "O-1"}}
    final = api.run([delete])
    assert final["status"]["code"] == "success"
    assert sandbox.control.orders() == []
    again = {**order(), "mode": "delete", "value": {"referenceId": "O-1"}}
    log = api.fetch_log(api.run([again])["status"]["log"])
    assert log[0]["code"] == "404"


def test_order_insert_repeat_overwrites_and_counts(api, sandbox):
    api.run([order("a@example.com", "O-1", price=10)])
    api.run([order("a@example.com", "O-1", price=12)])
    (stored,) = sandbox.control.orders()
    assert stored["price"] == 12
    assert stored["repeats"] == 1


def test_migration_moves_orders(api, sandbox):
    api.run([guest("old@example.com"), order("old@example.com", "O-1"), guest("new@example.com")])
    migration = {
        **guest(),
        "schema": "migration",
        "mode": "guest",
        "value": {
            "migrateFrom": {"identifiers": [{"provider": "email", "id": "old@example.com"}]},
            "migrateTo": {"identifiers": [{"provider": "email", "id": "new@example.com"}]},
        },
    }
    assert api.run([migration])["status"]["code"] == "success"
    by_email = {p["fields"]["email"]: p for p in sandbox.control.profiles()}
    assert by_email["old@example.com"]["orders"] == []
    assert [o["referenceId"] for o in by_email["new@example.com"]["orders"]] == ["O-1"]
    (applied,) = sandbox.control.migrations()
    old, new = by_email["old@example.com"], by_email["new@example.com"]
    assert (applied["ref"], applied["from"], applied["to"]) == (
        migration["ref"],
        old["id"],
        new["id"],
    )
    assert applied["orders_moved"] == 1
    assert old["history"][-1] == {
        "ref": migration["ref"],
        "batch": applied["batch"],
        "applied": "migrated_from",
    }
    assert new["history"][-1]["applied"] == "migrated_to"


def _migration(source: str, target: str, **identifier) -> dict:
    return {
        **guest(),
        "schema": "migration",
        "mode": "guest",
        "value": {
            "migrateFrom": {"identifiers": [{"provider": "email", "id": source, **identifier}]},
            "migrateTo": {"identifiers": [{"provider": "email", "id": target}]},
        },
    }


def test_migration_to_an_unknown_or_the_same_guest_is_refused(api, sandbox):
    api.run([guest("old@example.com")])
    unknown = _migration("old@example.com", "nobody@example.com")
    same = _migration("old@example.com", "old@example.com")
    final = api.run([unknown, same])
    assert api.fetch_log(final["status"]["log"]) == [
        {"ref": unknown["ref"], "code": "404", "message": "Guest not found"},
        {"ref": same["ref"], "code": "400", "message": "Validation error"},
    ]
    assert sandbox.control.migrations() == []


def test_migration_identifiers_may_carry_an_expiry_date(api, sandbox):
    api.run([guest("old@example.com"), guest("new@example.com")])
    migration = _migration(
        "old@example.com", "new@example.com", expiryDate="2030-01-01T00:00:00.000Z"
    )
    assert api.run([migration])["status"]["code"] == "success"
    assert len(sandbox.control.migrations()) == 1


def test_failed_record_does_not_touch_profiles(api, sandbox):
    bad = guest("ada@example.com", gender="M")
    assert api.run([bad])["status"]["code"] == "error"
    assert sandbox.control.profiles() == []
