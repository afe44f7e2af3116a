"""The compiled guest row plan gives what the general path gives, or declines the row.

The plan (records.importing.staging.guest_plan) is the import's fast path for flat guest
files; the general path (FlatMapping.to_row, clean_guest, identity_key) is the definition.
For every row below, the plan either returns exactly the general path's value, identity key,
ref and typed COPY columns, or None (the row has a problem and goes the general way).
"""

import pytest

from records.importing.copytext import copy_row
from records.importing.staging.base import GUEST_TYPED
from records.importing.staging.guest_plan import GuestRowPlan
from records.mapping import RowError, compile_header
from records.rules import clean_guest, identity_key
from records.serializing import guest_fields_from_value

PROVIDERS = ["email", "CRM_ID"]

HEADER = [
    "identifiers.0.provider", "identifiers.0.id", "identifiers.1.provider", "identifiers.1.id",
    "email", "title", "firstName", "lastName", "gender", "dateOfBirth", "phoneNumbers",
    "street.0", "street.1", "city", "country", "postCode", "subscriptions.0.name",
    "subscriptions.0.pointOfSale", "subscriptions.0.channel", "subscriptions.0.status",
    "subscriptions.0.effectiveDate", "ext.tier", "ext.points", "ext1.store",
]  # fmt: skip

VALID = [
    "email", "ann@example.com", "CRM_ID", "C-1", "ann@example.com", "Ms", "Ann", "Murphy",
    "female", "1985-12-24", "+353 1 234567;+353 87 1234567", "1 Main St", "Apt 2", "Dublin",
    "IE", "D02 X285", "newsletter", "shop.example.com", "EMAIL", "SUBSCRIBED",
    "2024-01-02T10:00:00Z", "gold", "12", "Cork",
]  # fmt: skip


def with_cells(**changes: str) -> list[str]:
    row = list(VALID)
    for column, cell in changes.items():
        row[HEADER.index(column.replace("__", "."))] = cell
    return row


# Rows the plan takes: the usual kinds of valid values, blanks and text that needs escaping.
TAKEN = [
    VALID,
    with_cells(title="mrs.", gender="MALE", country="ie", postCode="d02 x285"),
    with_cells(firstName="  Ann   Marie ", lastName="O'Brien\\Smith", city="Cork\tCity"),
    with_cells(street__0='1 "Main" St', street__1="", phoneNumbers="+353 1 234567"),
    with_cells(email="", identifiers__0__provider="", identifiers__0__id=""),
    with_cells(ext__tier="", ext__points="", ext1__store=" "),
    with_cells(
        subscriptions__0__name="",
        subscriptions__0__pointOfSale="",
        subscriptions__0__channel="",
        subscriptions__0__status="",
        subscriptions__0__effectiveDate="",
    ),  # fmt: skip
    with_cells(identifiers__0__id=" ANN@Example.COM ", dateOfBirth="1985-12-24T00:00Z"),
    VALID[:10],  # a short row: the missing cells are blank
]

# Rows with a problem: the plan declines them (the general path reports the problems).
DECLINED = [
    with_cells(email="not-an-address"),
    with_cells(identifiers__0__provider="", identifiers__1__provider="OTHER"),
    with_cells(identifiers__0__provider="", identifiers__1__provider=""),
    with_cells(country="Ireland"),
    with_cells(dateOfBirth="2999-01-01"),
    with_cells(dateOfBirth="24/12/1985"),
    with_cells(postCode="X" * 21),
    with_cells(subscriptions__0__channel=""),
    with_cells(ext__tier="x" * 1001),
    with_cells(title="Captain"),
    with_cells(phoneNumbers="12"),
]


def general(mapping, cells):
    mapped = mapping.to_row(cells)
    value, problems = clean_guest(mapped.value, identity_providers=PROVIDERS)
    key = identity_key(value.get("identifiers", ()), identity_providers=PROVIDERS)
    return value, problems, key, mapped.ref


@pytest.mark.parametrize("cells", TAKEN)
def test_the_plan_gives_the_general_paths_value_key_and_columns(cells):
    mapping = compile_header("guest", HEADER)
    value, problems, key, ref = general(mapping, cells)
    assert problems == []
    planned = GuestRowPlan(mapping, PROVIDERS)(cells)
    assert planned is not None
    fields = guest_fields_from_value(value)
    assert planned == (value, key, ref, copy_row([fields[c] for c in GUEST_TYPED]))
    assert list(planned[0]) == list(value)  # the same key order: the same canonical bytes


@pytest.mark.parametrize("cells", DECLINED)
def test_the_plan_declines_a_row_with_a_problem(cells):
    mapping = compile_header("guest", HEADER)
    assert general(mapping, cells)[1] != []
    assert GuestRowPlan(mapping, PROVIDERS)(cells) is None


def test_the_plan_reads_a_ref_column_and_refuses_a_bad_ref_as_the_general_path_does():
    mapping = compile_header("guest", ["ref", *HEADER])
    plan = GuestRowPlan(mapping, PROVIDERS)
    ref = "0b7e3e1c-7d0b-4d52-9b8a-3b5f0b1f2a10"
    assert plan([ref.upper(), *VALID])[2] == ref
    with pytest.raises(RowError) as raised:
        plan(["not-a-uuid", *VALID])
    assert raised.value.code == "invalid_ref"


def test_the_plan_defaults_the_guest_type_and_keeps_list_columns_apart():
    header = ["identifiers.0.provider", "identifiers.0.id", "phoneNumbers.0", "phoneNumbers.1"]
    mapping = compile_header("guest", header)
    cells = ["email", "a@example.com", "+353 1 234567", "+353 87 1234567"]
    value, problems, key, _ref = general(mapping, cells)
    planned = GuestRowPlan(mapping, PROVIDERS)(cells)
    assert problems == []
    assert planned is not None
    assert planned[0] == value
    assert planned[1] == key == "email:a@example.com"
    assert planned[0]["guestType"] == "customer"
    assert planned[0]["phoneNumbers"] == ["+353 1 234567", "+353 87 1234567"]
