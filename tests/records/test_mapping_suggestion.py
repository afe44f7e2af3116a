"""Tests for the suggested mapping of a file nobody has mapped yet."""

from records.mapping.documents import to_json
from records.mapping.suggestion import suggest_mapping

HEADER = ["Customer No", " E-Mail ", "fname", "Surname", "Sex", "DOB", "address1", "address2",
          "Town", "Land", "EMAIL opt-in", "Frist Name", "Notes", "contact"]  # fmt: skip
SAMPLES = [
    ["C-1", "Anna@Example.com", "Anna", "Kelly", "F", "1999/11/11", "1 Main St", "", "Cork",
     "Ireland", "1", "x", "", "anna@example.com"],
    ["C-2", "bo@example.com", "Bo", "Li", "M", "1985/02/03", "2 High St", "Flat 1", "Oslo",
     "Norway", "0", "y", "", "bo@example.com"],
]  # fmt: skip


def targets(document):
    return {c.source: c.targets for c in document.columns}


def test_suggestion_by_name_alias_and_values():
    document = suggest_mapping("guest", HEADER, SAMPLES)
    found = targets(document)
    assert found["E-Mail"] == ("email", "identifiers.0.id")
    assert found["Customer No"] == ("identifiers.1.id",)
    assert found["fname"] == ("firstName",)
    assert found["Surname"] == ("lastName",)
    assert found["DOB"] == ("dateOfBirth",)
    assert found["address1"] == found["address2"] == ("street[]",)
    assert found["Town"] == ("city",)
    assert found["Land"] == ("country",)
    assert found["EMAIL opt-in"] == ("subscriptions.0.status",)
    assert found["Frist Name"] == ()  # firstName is taken by fname; a near miss is not forced
    assert found["Notes"] == ()
    assert found["contact"] == ()  # e-mail values, but email is already mapped
    assert document.constants["identifiers.0.provider"] == "email"
    assert document.constants["identifiers.1.provider"] == "CUSTOMER_NO"
    assert document.constants["subscriptions.0.name"] == "newsletter"


def test_suggestion_proposes_value_maps_and_date_formats():
    columns = {c.source: c for c in suggest_mapping("guest", HEADER, SAMPLES).columns}
    assert columns["DOB"].date_format == "%Y/%m/%d"
    assert columns["Sex"].values["m"] == "male"
    assert columns["Land"].values == {"Ireland": "IE", "Norway": "NO"}
    assert columns["EMAIL opt-in"].values["1"] == "SUBSCRIBED"
    assert columns["E-Mail"].case == "lower"
    assert columns["Surname"].case is None  # names keep their case


def test_suggestion_of_a_cdp_shaped_header_is_the_identity():
    header = ["identifiers.0.provider", "identifiers.0.id", "EMAIL", "firstName"]
    document = suggest_mapping("guest", header, [["email", "a@x.com", "a@x.com", "A"]])
    assert [c.targets for c in document.columns] == [
        ("identifiers.0.provider",),
        ("identifiers.0.id",),
        ("email",),
        ("firstName",),
    ]
    assert to_json(document)["columns"][2] == {
        "source": "EMAIL",
        "target": "email",
        "case": "lower",
    }
