"""Tests for records.mapping: flat dotted columns and JSON objects -> CDP-shaped values."""

import pytest

from records.mapping import (
    MappingError,
    RowError,
    compile_header,
    known_columns,
    map_json_object,
)

GUEST_HEADER = [
    "identifiers.0.provider",
    "identifiers.0.id",
    "identifiers.1.provider",
    "identifiers.1.id",
    "email",
    "firstName",
    "phoneNumbers",
    "street.0",
    "street.1",
    "subscriptions.0.name",
    "subscriptions.0.status",
    "ext.loyaltyTier",
    "ext1.favouriteStore",
]


def test_compile_header_builds_nested_guest_value():
    mapping = compile_header("guest", GUEST_HEADER)
    row = mapping.to_row(
        [
            "email",
            "a@example.com",
            "CRM_ID",
            "C-1",
            "a@example.com",
            "Ann",
            "+353 1 234 5678;+353 87 000 0000",
            "12 Main St",
            "",
            "news",
            "SUBSCRIBED",
            "gold",
            "Dublin",
        ]
    )
    assert row.value == {
        "email": "a@example.com",
        "firstName": "Ann",
        "phoneNumbers": "+353 1 234 5678;+353 87 000 0000",
        "street": ["12 Main St"],
        "identifiers": [
            {"provider": "email", "id": "a@example.com"},
            {"provider": "CRM_ID", "id": "C-1"},
        ],
        "subscriptions": [{"name": "news", "status": "SUBSCRIBED"}],
        "extensions": [
            {"name": "ext", "key": "default", "loyaltyTier": "gold"},
            {"name": "ext1", "key": "default", "favouriteStore": "Dublin"},
        ],
    }
    assert row.mode is None  # no mode column: the import's option decides
    assert row.scope.subscriptions is True
    assert row.scope.extension_groups == frozenset({"ext", "ext1"})


def test_compile_header_leaves_out_empty_cells_and_empty_children():
    mapping = compile_header("guest", GUEST_HEADER)
    row = mapping.to_row(["email", "a@example.com", "", "", "  ", "", "", "", "", "", "", "", ""])
    assert row.value == {"identifiers": [{"provider": "email", "id": "a@example.com"}]}


def test_compile_header_scope_without_child_columns_keeps_children():
    mapping = compile_header("guest", ["identifiers.0.provider", "identifiers.0.id", "email"])
    assert mapping.scope.subscriptions is False
    assert mapping.scope.extension_groups == frozenset()


def test_compile_header_matches_fixed_names_case_insensitively():
    mapping = compile_header("guest", ["Identifiers.0.Provider", "IDENTIFIERS.0.ID", " Email "])
    row = mapping.to_row(["email", "a@example.com", "a@example.com"])
    assert row.value["email"] == "a@example.com"
    assert row.value["identifiers"] == [{"provider": "email", "id": "a@example.com"}]


def test_compile_header_refuses_unknown_columns_with_closest_names():
    with pytest.raises(MappingError) as info:
        compile_header("guest", ["identifiers.0.provider", "identifiers.0.id", "emial", "frstName"])
    message = info.value.message
    assert '"emial" (did you mean "email"?)' in message
    assert '"frstName" (did you mean "firstName"' in message
    assert "Ignore unknown columns" in message


def test_compile_header_drops_unknown_columns_when_asked():
    mapping = compile_header(
        "guest", ["identifiers.0.provider", "identifiers.0.id", "emial"], ignore_unknown=True
    )
    row = mapping.to_row(["email", "a@example.com", "whatever"])
    assert "emial" not in row.value
    assert row.value == {"identifiers": [{"provider": "email", "id": "a@example.com"}]}


def test_compile_header_requires_an_identifier_for_guests():
    with pytest.raises(MappingError) as info:
        compile_header("guest", ["email", "firstName"])
    assert "identifiers.0.provider, identifiers.0.id" in info.value.message


def test_compile_header_requires_both_halves_of_an_identifier():
    with pytest.raises(MappingError) as info:
        compile_header("guest", ["identifiers.0.provider", "identifiers.0.id", "identifiers.1.id"])
    assert "identifiers.1.provider" in info.value.message


def test_compile_header_refuses_duplicate_columns():
    with pytest.raises(MappingError) as info:
        compile_header("guest", ["identifiers.0.provider", "identifiers.0.id", "email", "Email"])
    assert '"email"' in info.value.message


def test_compile_header_tracking_groups_utms_and_feedback():
    mapping = compile_header(
        "tracking",
        ["serviceIdentifier", "occurredAt", "type", "utms.utm_source", "feedback.reasoncode"],
    )
    row = mapping.to_row(["SVC", "2025-01-01T00:00:00Z", "SENT", "news", "PRICE"])
    assert row.value == {
        "serviceIdentifier": "SVC",
        "occurredAt": "2025-01-01T00:00:00Z",
        "type": "SENT",
        "utms": {"utm_source": "news"},
        "feedback": {"reasonCode": "PRICE"},
    }
    assert row.mode == "insert"


def test_compile_header_tracking_requires_its_fields():
    with pytest.raises(MappingError) as info:
        compile_header("tracking", ["serviceIdentifier"])
    assert "occurredAt" in info.value.message
    assert "type" in info.value.message


def test_compile_header_subscription_file_links_by_identifier_or_email():
    mapping = compile_header(
        "subscription", ["email", "name", "pointOfSale", "channel", "status", "effectiveDate"]
    )
    row = mapping.to_row(["A@example.com", "news", "shop", "EMAIL", "SUBSCRIBED", ""])
    assert row.link == {"email": "A@example.com"}
    assert row.value == {
        "name": "news",
        "pointOfSale": "shop",
        "channel": "EMAIL",
        "status": "SUBSCRIBED",
    }
    mapping = compile_header(
        "subscription",
        ["identifiers.0.provider", "identifiers.0.id", "name", "pointOfSale", "channel", "status"],
    )
    row = mapping.to_row(["CRM_ID", "C-1", "news", "shop", "EMAIL", "SUBSCRIBED"])
    assert row.link == {"provider": "CRM_ID", "id": "C-1"}


def test_compile_header_subscription_file_requires_link_and_fields():
    with pytest.raises(MappingError) as info:
        compile_header("subscription", ["name", "channel"])
    assert "identifiers.0.provider + identifiers.0.id (or email)" in info.value.message
    assert "pointOfSale" in info.value.message


def test_compile_header_extension_file_rows_carry_groups():
    mapping = compile_header("extension", ["email", "ext.tier", "ext2.store"])
    row = mapping.to_row(["a@example.com", "gold", ""])
    assert row.value == {"extensions": [{"name": "ext", "key": "default", "tier": "gold"}]}


def test_flat_ref_column_must_be_a_uuid():
    mapping = compile_header("guest", ["ref", "identifiers.0.provider", "identifiers.0.id"])
    with pytest.raises(RowError) as info:
        mapping.to_row(["not-a-uuid", "email", "a@example.com"])
    assert info.value.code == "invalid_ref"


def test_map_json_object_passes_guest_value_through():
    value = {
        "identifiers": [{"provider": "email", "id": "a@example.com"}],
        "extensions": [{"name": "ext", "key": "default", "b": 1, "a": True}],
    }
    row = map_json_object("guest", value)
    assert row.value["identifiers"] == value["identifiers"]
    assert list(row.value["extensions"][0]) == ["name", "key", "a", "b"]
    assert row.scope.subscriptions is False
    assert row.scope.extension_groups is None


def test_map_json_object_unwraps_batch_lines_and_keeps_ref():
    ref = "6a1f5d1e-6c59-4b8a-9c56-0a4e8f7b1c2d"
    row = map_json_object(
        "guest",
        {
            "ref": ref,
            "schema": "guest",
            "mode": "upsert",
            "value": {"identifiers": [{"provider": "email", "id": "a@example.com"}]},
        },
    )
    assert row.ref == ref
    assert row.value == {"identifiers": [{"provider": "email", "id": "a@example.com"}]}


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ({"schema": "tracking", "mode": "insert", "value": {}}, "wrong_schema"),
        ({"schema": "guest", "mode": "delete", "value": {}}, "unsupported_mode"),
        ({"schema": "guest", "mode": "upsert", "value": []}, "not_an_object"),
        ({"ref": "x", "schema": "guest", "mode": "upsert", "value": {}}, "invalid_ref"),
    ],
)
def test_map_json_object_refuses_bad_batch_lines(line, code):
    with pytest.raises(RowError) as info:
        map_json_object("guest", line)
    assert info.value.code == code


@pytest.mark.parametrize(
    ("cell", "mode"),
    [("insert", "create"), ("Create", "create"), (" upsert ", "upsert"), ("", None)],
)
def test_guest_mode_column_gives_the_envelope_mode(cell, mode):
    mapping = compile_header("guest", ["identifiers.0.provider", "identifiers.0.id", "mode"])
    assert mapping.to_row(["email", "a@example.com", cell]).mode == mode


def test_guest_mode_column_refuses_other_modes():
    mapping = compile_header("guest", ["identifiers.0.provider", "identifiers.0.id", "mode"])
    with pytest.raises(RowError) as info:
        mapping.to_row(["email", "a@example.com", "delete"])
    assert (info.value.column, info.value.code) == ("mode", "unsupported_mode")


@pytest.mark.parametrize(("mode", "expected"), [("insert", "create"), ("create", "create")])
def test_guest_batch_line_in_insert_mode_is_staged_as_create(mode, expected):
    line = {"schema": "guest", "mode": mode, "value": {"email": "a@example.com"}}
    assert map_json_object("guest", line).mode == expected


MIGRATION_HEADER = [
    "migrateFrom.identifiers.0.provider",
    "migrateFrom.identifiers.0.id",
    "migrateFrom.identifiers.0.expiryDate",
    "migrateTo.identifiers.0.provider",
    "migrateTo.identifiers.0.id",
    "MIGRATETO.identifiers.1.provider",
    "migrateTo.identifiers.1.id",
]


def test_migration_file_columns_build_both_sides():
    mapping = compile_header("migration", MIGRATION_HEADER)
    row = mapping.to_row(
        ["email", "old@example.com", "", "email", "new@example.com", "CRM_ID", "C-1"]
    )
    assert row.mode == "guest"
    assert row.value == {
        "migrateFrom": {"identifiers": [{"provider": "email", "id": "old@example.com"}]},
        "migrateTo": {
            "identifiers": [
                {"provider": "email", "id": "new@example.com"},
                {"provider": "CRM_ID", "id": "C-1"},
            ]
        },
    }


def test_migration_file_needs_both_sides_and_no_guest_columns():
    with pytest.raises(MappingError) as info:
        compile_header(
            "migration",
            ["migrateFrom.identifiers.0.provider", "migrateFrom.identifiers.0.id", "email"],
        )
    assert "migrateTo.identifiers.0.provider" in info.value.message
    assert '"email"' in info.value.message
    with pytest.raises(MappingError):
        compile_header(
            "guest", ["identifiers.0.provider", "identifiers.0.id", "migrateTo.identifiers.0.id"]
        )


def test_map_json_object_takes_migration_lines_and_values():
    value = {
        "migrateFrom": {"identifiers": [{"provider": "email", "id": "old@example.com"}]},
        "migrateTo": {"identifiers": [{"provider": "email", "id": "new@example.com"}]},
    }
    line = map_json_object("migration", {"schema": "migration", "mode": "guest", "value": value})
    assert (line.value, line.mode) == (value, "guest")
    assert map_json_object("migration", value).value == value
    with pytest.raises(RowError) as info:
        map_json_object("migration", {"schema": "migration", "mode": "upsert", "value": value})
    assert info.value.code == "unsupported_mode"


def test_map_json_object_unknown_field_names_closest():
    with pytest.raises(MappingError) as info:
        map_json_object("guest", {"identifiers": [], "emial": "x"})
    assert '"emial" (did you mean "email"?)' in info.value.message


def test_map_json_object_child_objects_carry_link():
    row = map_json_object(
        "extension", {"identifiers": [{"provider": "CRM_ID", "id": 42}], "name": "ext1", "x": 1}
    )
    assert row.link == {"provider": "CRM_ID", "id": "42"}
    assert row.value == {"extensions": [{"name": "ext1", "x": 1}]}


def test_known_columns_lists_templates():
    assert "identifiers.<n>.provider" in known_columns("guest")
    assert "ext.<attribute>" in known_columns("extension")


def test_a_mapping_maps_a_column_or_a_constant_to_the_guest_mode():
    from records.mapping.applying import plan_mapping
    from records.mapping.documents import parse_document

    def document(columns, constants):
        return parse_document(
            {
                "format": "cdpstage-mapping",
                "version": 1,
                "name": "modes",
                "schema": "guest",
                "columns": columns,
                "constants": {"identifiers[0].provider": "email", **constants},
            }
        )

    by_column = document(
        [
            {"source": "Mail", "target": "identifiers[0].id"},
            {"source": "New?", "target": "mode", "values": {"Y": "insert", "N": "upsert"}},
        ],
        {},
    )
    plan = plan_mapping(by_column, ["Mail", "New?"])
    assert plan.flat.to_row(plan.cells(["a@example.com", "Y"])).mode == "create"
    assert plan.flat.to_row(plan.cells(["a@example.com", "N"])).mode == "upsert"
    constant = document([{"source": "Mail", "target": "identifiers[0].id"}], {"mode": "insert"})
    plan = plan_mapping(constant, ["Mail"])
    assert plan.flat.to_row(plan.cells(["a@example.com"])).mode == "create"
