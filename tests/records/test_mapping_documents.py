"""Tests for mapping documents, their transforms and applying them to a file's header."""

import pytest

from records.mapping import MappingError
from records.mapping.applying import plan_mapping
from records.mapping.documents import (
    MappingDocumentError,
    header_fingerprint,
    parse_document,
    to_json,
)
from records.mapping.transforms import compile_rule


def doc(columns, **extra):
    return {"format": "cdpstage-mapping", "version": 1, "schema": "guest", "columns": columns,
            **extra}  # fmt: skip


EMAIL_ID = {"source": "Mail", "target": ["email", "identifiers[0].id"]}
PROVIDER = {"constants": {"identifiers[0].provider": "email"}}


def test_document_round_trips_through_its_canonical_json():
    data = doc([EMAIL_ID, {"source": "Notes", "target": "ignore"}], **PROVIDER)
    document = parse_document(data)
    assert document.columns[0].targets == ("email", "identifiers.0.id")
    assert document.columns[1].ignored
    assert parse_document(to_json(document)) == document


def test_document_reports_every_problem_at_once():
    data = doc(
        [
            {"source": "A", "target": "emial"},
            {"source": "B", "target": "dateOfBirth", "date_format": "yyyy"},
            {"source": "C", "target": "firstName", "case": "title"},
            {"source": "a", "target": "city"},
        ],
        constants={"nosuch": "x"},
    )
    with pytest.raises(MappingDocumentError) as info:
        parse_document(data)
    problems = info.value.problems
    assert len(problems) == 5
    assert '"emial" is not a guest field' in problems[0]
    assert "date_format" in problems[1]
    assert "names keep their own case" in problems[2]
    assert "already mapped by column 1" in problems[3]
    assert "nosuch" in problems[4]


def test_document_schema_must_match_the_import():
    with pytest.raises(MappingDocumentError, match="for guest files; the import is of tracking"):
        parse_document(doc([EMAIL_ID], **PROVIDER), schema="tracking")


@pytest.mark.parametrize(
    ("rule", "cell", "expected"),
    [
        ({"date_format": "%Y/%m/%d"}, "1999/11/11", "1999-11-11"),
        ({"date_format": "%d.%m.%Y"}, " 24.12.1985 ", "1985-12-24"),
        ({"date_format": "%d.%m.%Y %H:%M"}, "24.12.1985 16:15", "1985-12-24T16:15:00"),
        ({"date_format": "excel"}, "36475", "1999-11-11"),
        ({"date_format": "excel"}, "36475.5", "1999-11-11T12:00:00"),
        ({"date_format": "%Y/%m/%d"}, "11/11/1999", "11/11/1999"),  # left for the rule to flag
        ({"values": {"M": "male"}}, "m", "male"),
        ({"values": {"Ireland": "IE"}}, "Narnia", "Narnia"),
        ({"case": "lower"}, " Anna@X.COM ", "anna@x.com"),
        ({"split": ","}, "+353 1, +353 2,", "+353 1|+353 2"),
        ({"trim": False}, " kept ", " kept "),
        ({}, "  McDonald ", "McDonald"),
    ],
)
def test_transforms(rule, cell, expected):
    target = "phoneNumbers" if "split" in rule else "firstName"
    document = parse_document(doc([{"source": "X", "target": target, **rule}]))
    assert compile_rule(document.columns[0])(cell) == expected


def test_fingerprint_ignores_case_spacing_and_order():
    assert header_fingerprint([" E-Mail", "First  Name"]) == header_fingerprint(
        ["first name", "e-mail "]
    )
    assert header_fingerprint(["E-Mail"]) != header_fingerprint(["Email"])


def test_plan_appends_street_lines_and_writes_constants_only_with_their_group():
    document = parse_document(
        doc(
            [
                EMAIL_ID,
                {"source": "Customer No", "target": "identifiers[1].id"},
                {"source": "address1", "target": "street[]"},
                {"source": "address2", "target": "street[]"},
            ],
            constants={
                "identifiers[0].provider": "email",
                "identifiers[1].provider": "CUST",
                "guestType": "customer",
            },  # fmt: skip
        )
    )
    plan = plan_mapping(document, ["Customer No", "Mail", "address1", "address2"])
    row = plan.flat.to_row(plan.cells(["", "a@x.com", "1 Main St", "Apt 2"]))
    assert row.value["street"] == ["1 Main St", "Apt 2"]
    assert row.value["identifiers"] == [{"provider": "email", "id": "a@x.com"}]
    assert row.value["guestType"] == "customer"


def test_plan_reports_every_header_problem_at_once():
    document = parse_document(doc([EMAIL_ID, {"source": "Gone", "target": "city"}]))
    with pytest.raises(MappingError) as info:
        plan_mapping(document, ["Mail", "Extra", "Another"])
    message = info.value.message
    assert 'lacks columns the mapping reads: "Gone"' in message
    assert 'does not cover: "Extra", "Another"' in message
    assert "identifiers.0.provider" in message  # the missing required CDP column


def test_plan_never_quotes_the_values_of_a_headerless_file():
    document = parse_document(doc([EMAIL_ID], **PROVIDER))
    with pytest.raises(MappingError) as info:
        plan_mapping(document, ["anna@example.com", "+353 87 123", "1999-11-11", "Anna"])
    assert "looks like data" in info.value.message
    assert "anna@example.com" not in info.value.message
    assert "353" not in info.value.message
