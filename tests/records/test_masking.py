"""Masking: the shapes shown to users without view_pii, and that no value survives it."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from records.masking import (
    can_view_pii,
    mask_date,
    mask_email,
    mask_identity_key,
    mask_message,
    mask_text,
    mask_value,
)

GUEST_VALUE = {
    "guestType": "customer",
    "title": "Mr",
    "firstName": "Jonathan",
    "lastName": "Harker",
    "gender": "male",
    "dateOfBirth": "1985-12-24T00:00Z",
    "email": "jonathan.harker@example.com",
    "phoneNumbers": ["+353161123345"],
    "street": ["Apartment 15", "West Drive Avenue"],
    "city": "Dublin",
    "state": "Leinster",
    "country": "IE",
    "postCode": "D02 X285",
    "nationality": "Irish",
    "language": "EN",
    "passportNumber": "PX1234567",
    "passportExpiry": "2030-01-01T00:00Z",
    "identifiers": [
        {"provider": "email", "id": "jonathan.harker@example.com"},
        {"provider": "CRM_ID", "id": "CRM-000123", "expiryDate": "2031-06-30T00:00:00.000Z"},
    ],
    "subscriptions": [
        {
            "name": "default",
            "pointOfSale": "shop.example",
            "channel": "EMAIL",
            "status": "SUBSCRIBED",
        }
    ],
    "extensions": [{"name": "ext", "key": "default", "loyaltyTier": "Gold", "vip": True}],
}

PERSONAL_STRINGS = [
    "Jonathan",
    "Harker",
    "1985-12-24",
    "jonathan.harker@example.com",
    "+353161123345",
    "Apartment 15",
    "West Drive Avenue",
    "Dublin",
    "D02 X285",
    "PX1234567",
    "2030-01-01",
    "CRM-000123",
    "Gold",
]


def test_mask_email_keeps_shape_only():
    assert mask_email("jonathan.harker@example.com") == "j***@e***.com"
    assert mask_email("a@b.co") == "a***@b***.co"
    assert mask_email("not-an-email") == "n***"


def test_mask_text_short_values_become_stars():
    assert mask_text("Al") == "***"
    assert mask_text("Jonathan") == "J***"
    assert mask_text("") == ""
    assert mask_text(None) == ""


def test_mask_text_value_made_of_stars_is_not_shown():
    assert mask_text("a***") == "***"
    assert mask_email("***@e***.com") == "***"


def test_mask_identity_key_keeps_provider():
    assert mask_identity_key("email:jonathan.harker@example.com") == "email:j***@e***.com"
    assert mask_identity_key("CRM_ID:CRM-000123") == "CRM_ID:C***"


def test_mask_date_hides_year():
    assert mask_date("1985-12-24T00:00Z") == "****-**-**"
    assert mask_date("") == ""


def test_mask_value_guest_masks_every_personal_field():
    masked = mask_value(GUEST_VALUE, "guest")
    text = json.dumps(masked)
    for personal in PERSONAL_STRINGS:
        assert personal not in text, personal
    assert masked["email"] == "j***@e***.com"
    assert masked["identifiers"][0] == {"provider": "email", "id": "j***@e***.com"}
    assert masked["identifiers"][1]["provider"] == "CRM_ID"
    assert masked["phoneNumbers"] == ["+3***45"]


def test_mask_value_guest_keeps_codes_and_enums():
    masked = mask_value(GUEST_VALUE, "guest")
    for key in ("guestType", "title", "gender", "country", "language", "nationality", "state"):
        assert masked[key] == GUEST_VALUE[key]
    assert masked["subscriptions"] == GUEST_VALUE["subscriptions"]
    assert masked["extensions"][0]["name"] == "ext"
    assert masked["extensions"][0]["vip"] is True


def test_mask_value_does_not_change_its_input():
    before = json.dumps(GUEST_VALUE, sort_keys=True)
    mask_value(GUEST_VALUE, "guest")
    assert json.dumps(GUEST_VALUE, sort_keys=True) == before


def test_mask_value_tracking_masks_notes_and_identifiers():
    value = {
        "serviceIdentifier": "TEST_PROVIDER",
        "channel": "EMAIL",
        "type": "SENT",
        "uotr": "c56a4180-65aa-42ec-a945-5fd21dec0538|0",
        "utms": {"utm_medium": "EMAIL"},
        "feedback": {"reasonCode": "PRICE_TOO_HIGH", "notes": "Called about her order"},
        "identifiers": [{"provider": "email", "id": "mina@example.com"}],
    }
    masked = mask_value(value, "tracking")
    text = json.dumps(masked)
    assert "Called about" not in text
    assert "mina@example.com" not in text
    assert "c56a4180" not in text
    assert masked["feedback"]["reasonCode"] == "PRICE_TOO_HIGH"
    assert masked["serviceIdentifier"] == "TEST_PROVIDER"


def test_mask_value_unknown_schema_refused():
    with pytest.raises(ValueError, match="Unknown CDP schema"):
        mask_value({}, "nonsense")


long_text = st.text(min_size=4, max_size=40)


@given(long_text)
def test_mask_text_never_contains_original(value):
    assert value not in mask_text(value)


@given(long_text)
def test_mask_email_never_contains_original(value):
    assert value not in mask_email(value)


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20), st.text(max_size=8))
def test_mask_email_never_contains_original_address(local, domain, tld):
    address = f"{local}@{domain}.{tld}"
    assert address not in mask_email(address)


@given(long_text)
def test_mask_identity_key_never_contains_original_id(ident):
    assert f"email:{ident}" not in mask_identity_key(f"email:{ident}")
    assert ident not in mask_identity_key(f"email:{ident}").partition(":")[2]


@given(
    st.fixed_dictionaries(
        {
            "email": long_text,
            "firstName": long_text,
            "lastName": long_text,
            "city": long_text,
            "postCode": long_text,
            "passportNumber": long_text,
            "dateOfBirth": long_text,
            "phoneNumbers": st.lists(long_text, min_size=1, max_size=3),
            "street": st.lists(long_text, min_size=1, max_size=3),
            "identifiers": st.lists(
                st.fixed_dictionaries({"provider": st.just("email"), "id": long_text}),
                min_size=1,
                max_size=3,
            ),
        }
    )
)
def test_mask_value_never_contains_a_personal_value(value):
    masked = mask_value(value, "guest")
    for key in ("email", "firstName", "lastName", "city", "postCode", "passportNumber"):
        assert value[key] not in masked[key]
    assert value["dateOfBirth"] not in masked["dateOfBirth"]
    for key in ("phoneNumbers", "street"):
        for original, shown in zip(value[key], masked[key], strict=True):
            assert original not in shown
    for original, shown in zip(value["identifiers"], masked["identifiers"], strict=True):
        assert original["id"] not in shown["id"]


def test_can_view_pii_needs_the_permission(user_factory):
    reviewer = user_factory("masking-reviewer")
    viewer = user_factory("masking-viewer", perms=("records.view_pii",))
    superuser = user_factory("masking-super", is_superuser=True)
    inactive = user_factory("masking-inactive", perms=("records.view_pii",), is_active=False)
    assert can_view_pii(reviewer) is False
    assert can_view_pii(viewer) is True
    assert can_view_pii(superuser) is True
    assert can_view_pii(inactive) is False
    assert can_view_pii(None) is False


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("Invalid email 'ada@example.com'", "Invalid email ***"),
        ('Field "firstName" too long: "Ada Lovelace"', "Field *** too long: ***"),
        ("Invalid phone +353 86 123 4567", "Invalid phone +***"),
        ("bad@example.com is not allowed", "*** is not allowed"),
        ("Guest is missing an identifier", "Guest is missing an identifier"),
    ],
)
def test_mask_message_hides_what_a_message_quotes_and_keeps_the_words(message, masked):
    assert mask_message(message) == masked
