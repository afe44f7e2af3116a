"""records.rules: every CDP data-model rule, a passing and a failing case each, plus properties.

Pure unit tests: no database, no settings. Every failing case checks the code, the field path
and that the message does not repeat the offending value (it is personal data).
"""

import json
import math
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from records.rules import (
    ACCEPTED_CURRENCY_CODES,
    COUNTRY_CODES,
    CURRENCY_CODES,
    GUEST_FIELDS,
    LANGUAGE_CODES,
    TITLES,
    TRACKING_FIELDS,
    Problem,
    clean_currency,
    clean_extension,
    clean_guest,
    clean_identifier,
    clean_subscription,
    clean_tracking,
    format_cdp_date,
    format_cdp_datetime,
    identity_key,
    normalize_email,
    normalize_lower,
    normalize_spaces,
    normalize_upper,
    parse_cdp_datetime,
)

PROVIDERS = ("CRM_ID", "email")
SECRET = "Zqxjv"  # a marker no message template contains


def guest(**fields):
    value = {"identifiers": [{"provider": "CRM_ID", "id": "C-1"}]}
    value.update(fields)
    return value


def clean(**fields):
    return clean_guest(guest(**fields), identity_providers=PROVIDERS)


def only_problem(problems, field, code, offending=SECRET):
    """The one problem of problems; it has field and code and does not quote the value."""
    assert [(p.field, p.code) for p in problems] == [(field, code)], problems
    message = problems[0].message
    assert message.endswith("."), message
    if offending:
        assert offending.lower() not in message.lower(), message
    return problems[0]


def has_problem(problems, field, code, offending=SECRET):
    found = [p for p in problems if p.field == field and p.code == code]
    assert len(found) == 1, problems
    if offending:
        assert offending.lower() not in found[0].message.lower(), found[0].message
    return found[0]


# --- Problem ---------------------------------------------------------------------------------


def test_problem_is_frozen_and_slotted():
    problem = Problem("email", "invalid_email", "Email address is not a valid address.")
    with pytest.raises(AttributeError):
        problem.code = "other"
    assert not hasattr(problem, "__dict__")


# --- guest: shape, order, unknown fields --------------------------------------------------


def test_guest_valid_minimal_has_no_problems_and_defaults_guest_type():
    value, problems = clean()
    assert problems == []
    assert value == {"guestType": "customer", "identifiers": [{"provider": "CRM_ID", "id": "C-1"}]}


def test_guest_full_record_is_normalised_where_cdp_rules_say():
    value, problems = clean(
        email=" Mary.OBrien@Example.COM ",
        firstName="mary-jane",
        lastName="o'BRIEN",
        title="mrs.",
        gender="FEMALE",
        dateOfBirth="1985-12-24",
        phoneNumbers="+353 1 612 3345 ; (01) 612-3345",
        street="apartment 15|west  drive avenue",
        city="DUBLIN",
        state="leinster",
        country="ie",
        postCode="d02 x285",
        nationality="irish",
        language="en",
        passportNumber="pa123456",
        passportExpiry="2030-01-31",
        firstSeen="2025-03-07 16:15:11",
        lastSeen="2025-03-07T17:15:11+01:00",
    )
    assert problems == []
    assert value == {
        "firstSeen": "2025-03-07T16:15:11.000Z",
        "lastSeen": "2025-03-07T16:15:11.000Z",
        "guestType": "customer",
        "title": "Mrs",
        "firstName": "mary-jane",  # names, streets and places kept as given (trimmed)
        "lastName": "o'BRIEN",
        "gender": "female",
        "dateOfBirth": "1985-12-24T00:00Z",
        "email": "mary.obrien@example.com",
        "phoneNumbers": ["+353 1 612 3345", "(01) 612-3345"],
        "language": "EN",
        "nationality": "irish",
        "passportNumber": "PA123456",
        "passportExpiry": "2030-01-31T00:00Z",
        "street": ["apartment 15", "west drive avenue"],
        "city": "DUBLIN",
        "state": "leinster",
        "country": "IE",
        "postCode": "D02 X285",
        "identifiers": [{"provider": "CRM_ID", "id": "C-1"}],
    }


def test_guest_keys_follow_the_canonical_order_whatever_the_input_order():
    fields = {"postCode": "d1", "email": "a@b.ie", "firstName": "Ann", "country": "IE"}
    forward, _ = clean(**fields)
    backward, _ = clean(**dict(reversed(list(fields.items()))))
    assert list(forward) == [k for k in GUEST_FIELDS if k in forward]
    assert json.dumps(forward) == json.dumps(backward)


def test_guest_blank_fields_are_left_out():
    value, problems = clean(firstName="", lastName="   ", email=None, phoneNumbers=" ; ")
    assert problems == []
    assert set(value) == {"guestType", "identifiers"}


def test_guest_unknown_field_is_reported_and_dropped():
    value, problems = clean(postcode="D02")  # CDP spells it postCode
    only_problem(problems, "postcode", "unknown_field")
    assert "postcode" not in value


def test_guest_text_of_wrong_type_is_reported_and_dropped():
    value, problems = clean(firstName=12345)
    only_problem(problems, "firstName", "invalid_type", "12345")
    assert "firstName" not in value


def test_guest_text_too_long_is_reported_and_kept():
    value, problems = clean(city=SECRET * 60)
    problem = only_problem(problems, "city", "too_long")
    assert "255" in problem.message
    assert value["city"] == SECRET * 60


# --- guest: guestType, title, gender ---------------------------------------------------------


def test_guest_type_customer_in_any_case_passes():
    value, problems = clean(guestType=" CUSTOMER ")
    assert problems == []
    assert value["guestType"] == "customer"


def test_guest_type_other_than_customer_fails():
    value, problems = clean(guestType="Visitor" + SECRET)
    only_problem(problems, "guestType", "invalid_guest_type")
    assert value["guestType"] == ("visitor" + SECRET).lower()


@pytest.mark.parametrize(("raw", "canonical"), [("mr", "Mr"), ("MRS.", "Mrs"), (" Dr ", "Dr")])
def test_guest_title_from_list_gets_list_casing(raw, canonical):
    value, problems = clean(title=raw)
    assert problems == []
    assert value["title"] == canonical


def test_guest_title_outside_current_list_fails_and_names_allowed_values():
    _, problems = clean(title="Lady")  # in the 2015 list only
    problem = only_problem(problems, "title", "invalid_choice", "Lady")
    assert all(title in problem.message for title in TITLES)


def test_guest_gender_is_lower_cased():
    value, problems = clean(gender="Unknown")
    assert problems == []
    assert value["gender"] == "unknown"


def test_guest_gender_outside_list_fails():
    _, problems = clean(gender=SECRET)
    problem = only_problem(problems, "gender", "invalid_choice")
    assert "male, female, unknown" in problem.message


# --- guest: dates ----------------------------------------------------------------------------


def test_guest_date_of_birth_in_the_past_passes_without_milliseconds():
    value, problems = clean(dateOfBirth="1985-12-24T00:00:00.000Z")
    assert problems == []
    assert value["dateOfBirth"] == "1985-12-24T00:00Z"


def test_guest_date_of_birth_accepts_date_objects_from_spreadsheets():
    value, problems = clean(dateOfBirth=date(1985, 12, 24))
    assert problems == []
    assert value["dateOfBirth"] == "1985-12-24T00:00Z"


def test_guest_date_of_birth_in_the_future_fails():
    value, problems = clean(dateOfBirth="2999-01-01")
    only_problem(problems, "dateOfBirth", "date_not_in_past", "2999")
    assert value["dateOfBirth"] == "2999-01-01T00:00Z"


@pytest.mark.parametrize("raw", ["1985-13-01", "24/12/1985", "1985-12-24T25:00Z", "yesterday"])
def test_guest_date_of_birth_not_a_date_fails(raw):
    value, problems = clean(dateOfBirth=raw)
    only_problem(problems, "dateOfBirth", "invalid_date", raw)
    assert value["dateOfBirth"] == raw


def test_guest_passport_expiry_valid_date_passes_even_in_future():
    value, problems = clean(passportExpiry="2031-06-30T00:00Z")
    assert problems == []
    assert value["passportExpiry"] == "2031-06-30T00:00Z"


def test_guest_passport_expiry_invalid_date_fails():
    _, problems = clean(passportExpiry="2031-02-30")
    only_problem(problems, "passportExpiry", "invalid_date", "2031-02-30")


def test_guest_first_seen_is_written_in_utc_with_milliseconds():
    value, problems = clean(firstSeen="2025-03-07T18:15:11.1234+02:00")
    assert problems == []
    assert value["firstSeen"] == "2025-03-07T16:15:11.123Z"


def test_guest_last_seen_invalid_fails():
    _, problems = clean(lastSeen="2025-03-07T16:15:11" + SECRET)
    only_problem(problems, "lastSeen", "invalid_date")


def test_guest_date_of_wrong_type_fails():
    _, problems = clean(firstSeen=1741364111)
    only_problem(problems, "firstSeen", "invalid_type", "1741364111")


# --- guest: email, phones, street, names --------------------------------------------------


def test_guest_email_is_stripped_and_lower_cased():
    value, problems = clean(email="  Foo.Bar+Tag@Example.CO.UK ")
    assert problems == []
    assert value["email"] == "foo.bar+tag@example.co.uk"


@pytest.mark.parametrize(
    "raw",
    [
        f"{SECRET}@",
        f"@{SECRET}.com",
        f"{SECRET}",
        f"{SECRET} x@example.com",
        f"{SECRET}@@example.com",
        f"{SECRET}@example",
        f"{SECRET}@example.c",
        f"{SECRET}@example..com",
        f"{SECRET}@.example.com",
        f"<{SECRET}@example.com>",
        f"{SECRET}@example.com;other@example.com",
    ],
)
def test_guest_email_with_bad_shape_fails(raw):
    value, problems = clean(email=raw)
    problem = only_problem(problems, "email", "invalid_email")
    assert problem.message == "Email address is not a valid address."
    assert value["email"] == raw.strip().lower()


def test_guest_email_longer_than_254_fails():
    _, problems = clean(email=SECRET + "a" * 250 + "@example.com")
    only_problem(problems, "email", "too_long")


def test_guest_phone_numbers_list_passes():
    value, problems = clean(phoneNumbers=["+353161123345", " 01  612 3345 "])
    assert problems == []
    assert value["phoneNumbers"] == ["+353161123345", "01 612 3345"]


@pytest.mark.parametrize("raw", ["+35 12", "call 0161123345", "0161123345 ext 4"])
def test_guest_phone_number_with_bad_shape_fails(raw):
    _, problems = clean(phoneNumbers=["+353161123345", raw])
    only_problem(problems, "phoneNumbers.1", "invalid_phone", raw)


def test_guest_phone_numbers_of_wrong_type_fails():
    _, problems = clean(phoneNumbers={"home": "+353161123345"})
    only_problem(problems, "phoneNumbers", "invalid_type", "353161123345")


def test_guest_street_from_flat_file_is_split_and_kept_as_given():
    value, problems = clean(street="1ST floor; 12B MAIN street")
    assert problems == []
    assert value["street"] == ["1ST floor", "12B MAIN street"]


def test_guest_street_line_too_long_fails():
    _, problems = clean(street=["Main Street", SECRET * 60])
    only_problem(problems, "street.1", "too_long")


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("McDonald", "McDonald"),
        ("van Beethoven", "van Beethoven"),
        ("NYC", "NYC"),
        ("o'brien", "o'brien"),
        ("  JOHN   smith ", "JOHN smith"),  # whitespace trimmed and collapsed, letters kept
        ("ÉMILE ZOLA", "ÉMILE ZOLA"),
    ],
)
def test_guest_names_are_kept_as_given(raw, canonical):
    value, problems = clean(firstName=raw, lastName=raw, city=raw, nationality=raw)
    assert problems == []
    assert [value[k] for k in ("firstName", "lastName", "city", "nationality")] == [canonical] * 4


def test_guest_text_longer_than_its_bound_is_reported_with_the_rule():
    value, problems = clean(postCode="D" * 21, passportNumber="P" * 51, nationality="N" * 101)
    assert {(p.field, p.code, p.message) for p in problems} == {
        ("postCode", "too_long", "Post code is longer than 20 characters."),
        ("passportNumber", "too_long", "Passport number is longer than 50 characters."),
        ("nationality", "too_long", "Nationality is longer than 100 characters."),
    }
    assert value["postCode"] == "D" * 21  # kept, for the steward to fix


def test_guest_country_name_is_kept_as_given_and_reported():
    value, problems = clean(country=" Ireland ")
    problem = only_problem(problems, "country", "invalid_country")
    assert problem.message == "Country must be an ISO 3166-1 alpha-2 country code such as IE."
    assert value["country"] == "Ireland"


@pytest.mark.parametrize(
    "spelling",
    ["anna@bücher.de", "Anna@XN--BCHER-KVA.DE", "anna@bu\u0308cher.de", " ANNA@Bücher.de "],
)
def test_idn_email_addresses_have_one_normal_form(spelling):
    value, problems = clean(email=spelling, identifiers=[{"provider": "email", "id": spelling}])
    assert problems == []
    assert value["email"] == value["identifiers"][0]["id"] == "anna@bücher.de"
    key = identity_key(value["identifiers"], identity_providers=PROVIDERS)
    assert key == "email:anna@bücher.de"


def test_guest_post_code_and_passport_number_are_upper_cased():
    value, problems = clean(postCode=" d02 x285", passportNumber="ab 12")
    assert problems == []
    assert (value["postCode"], value["passportNumber"]) == ("D02 X285", "AB 12")


# --- guest: country, language; currency ------------------------------------------------------


def test_guest_country_iso_alpha2_passes_upper_cased():
    value, problems = clean(country=" gb ")
    assert problems == []
    assert value["country"] == "GB"


@pytest.mark.parametrize("raw", ["UK", "XK", "IRL", "Ireland", "EU"])
def test_guest_country_not_an_assigned_alpha2_fails(raw):
    _, problems = clean(country=raw)
    only_problem(problems, "country", "invalid_country", raw)


def test_guest_language_iso_639_1_passes_upper_cased():
    value, problems = clean(language="fr")
    assert problems == []
    assert value["language"] == "FR"


@pytest.mark.parametrize("raw", ["ENG", "en-GB", "XX", "QQ"])
def test_guest_language_not_an_iso_639_1_code_fails(raw):
    _, problems = clean(language=raw)
    only_problem(problems, "language", "invalid_language", raw)


def test_code_lists_hold_the_real_assigned_codes():
    assert len(COUNTRY_CODES) == 249
    assert {"IE", "GB", "US", "SS", "AX", "BQ"} <= COUNTRY_CODES
    assert not {"UK", "EU", "XK", "AN"} & COUNTRY_CODES
    assert len(LANGUAGE_CODES) == 184
    assert {"EN", "FR", "DE", "GA", "ZU"} <= LANGUAGE_CODES
    assert not {"XX", "EG", "IW"} & LANGUAGE_CODES
    assert {"EUR", "USD", "GBP", "XCG", "ZWG", "SLE"} <= CURRENCY_CODES
    assert not {"HRK", "BGN", "ZWL"} & CURRENCY_CODES
    assert all(len(code) == 3 and code.isupper() for code in ACCEPTED_CURRENCY_CODES)


def test_currency_iso_4217_passes_upper_cased():
    problems = []
    assert clean_currency(" eur ", "currencyCode", problems) == "EUR"
    assert problems == []


def test_currency_withdrawn_code_passes_for_historical_orders():
    problems = []
    assert clean_currency("HRK", "currencyCode", problems) == "HRK"
    assert problems == []


@pytest.mark.parametrize("raw", ["EURO", "XYZ", "€"])
def test_currency_not_an_iso_4217_code_fails(raw):
    problems = []
    clean_currency(raw, "orderItems.0.currencyCode", problems)
    only_problem(problems, "orderItems.0.currencyCode", "invalid_currency", raw)


# --- identifiers -----------------------------------------------------------------------------


def test_identifier_valid_passes():
    value, problems = clean_identifier(
        {"provider": "CRM_ID", "id": " C-1 ", "expiryDate": "2030-01-01"},
        index=0,
        identity_providers=PROVIDERS,
    )
    assert problems == []
    assert value == {"provider": "CRM_ID", "id": "C-1", "expiryDate": "2030-01-01T00:00:00.000Z"}


def test_identifier_unknown_provider_fails_naming_the_accepted_ones():
    _, problems = clean_identifier(
        {"provider": SECRET, "id": "C-1"}, index=2, identity_providers=PROVIDERS
    )
    # A provider names a source system, not a person: the refusal names it, to add it.
    problem = only_problem(problems, "identifiers.2.provider", "unknown_provider", None)
    assert f'"{SECRET}"' in problem.message
    assert "CRM_ID, email" in problem.message


def test_identifier_provider_match_is_case_sensitive():
    _, problems = clean_identifier(
        {"provider": "crm_id", "id": "C-1"}, index=0, identity_providers=PROVIDERS
    )
    only_problem(problems, "identifiers.0.provider", "unknown_provider", None)  # names CRM_ID


def test_identifier_without_provider_fails():
    _, problems = clean_identifier({"id": SECRET}, index=0, identity_providers=PROVIDERS)
    only_problem(problems, "identifiers.0.provider", "required")


def test_identifier_without_id_fails():
    _, problems = clean_identifier(
        {"provider": "CRM_ID", "id": "  "}, index=1, identity_providers=PROVIDERS
    )
    only_problem(problems, "identifiers.1.id", "required")


def test_identifier_expiry_date_invalid_fails():
    _, problems = clean_identifier(
        {"provider": "CRM_ID", "id": "C-1", "expiryDate": SECRET},
        index=0,
        identity_providers=PROVIDERS,
    )
    only_problem(problems, "identifiers.0.expiryDate", "invalid_date")


def test_identifier_email_provider_id_is_normalised_and_checked_as_email():
    value, problems = clean_identifier(
        {"provider": "email", "id": " Ann@Example.COM"}, index=0, identity_providers=PROVIDERS
    )
    assert problems == []
    assert value["id"] == "ann@example.com"
    _, problems = clean_identifier(
        {"provider": "email", "id": SECRET}, index=0, identity_providers=PROVIDERS
    )
    only_problem(problems, "identifiers.0.id", "invalid_email")


def test_identifier_numeric_id_from_json_becomes_text():
    value, problems = clean_identifier(
        {"provider": "CRM_ID", "id": 12345}, index=0, identity_providers=PROVIDERS
    )
    assert problems == []
    assert value["id"] == "12345"


def test_identifier_unknown_key_fails():
    _, problems = clean_identifier(
        {"provider": "CRM_ID", "id": "C-1", "type": SECRET}, index=0, identity_providers=PROVIDERS
    )
    only_problem(problems, "identifiers.0.type", "unknown_field")


def test_identifier_not_an_object_fails():
    _, problems = clean_identifier(SECRET, index=0, identity_providers=PROVIDERS)
    only_problem(problems, "identifiers.0", "invalid_type")


def test_identifier_prefix_places_the_path():
    _, problems = clean_identifier(
        {"provider": "CRM_ID"}, index=0, identity_providers=PROVIDERS, prefix="contact.identifiers"
    )
    only_problem(problems, "contact.identifiers.0.id", "required")


def test_guest_identifier_from_configured_provider_passes():
    _, problems = clean_guest(
        {"identifiers": [{"provider": "email", "id": "a@b.ie"}]}, identity_providers=PROVIDERS
    )
    assert problems == []


def test_guest_without_identifiers_fails_naming_the_providers():
    _, problems = clean_guest({"email": SECRET + "@example.com"}, identity_providers=PROVIDERS)
    problem = only_problem(problems, "identifiers", "missing_identifier")
    assert "CRM_ID, email" in problem.message


def test_guest_with_only_unknown_providers_fails_twice():
    _, problems = clean_guest(
        {"identifiers": [{"provider": "LOYALTY", "id": SECRET}]}, identity_providers=PROVIDERS
    )
    has_problem(problems, "identifiers.0.provider", "unknown_provider")
    has_problem(problems, "identifiers", "missing_identifier")
    assert len(problems) == 2


def test_guest_without_configured_providers_says_so():
    _, problems = clean_guest(guest(), identity_providers=())
    problem = has_problem(problems, "identifiers", "missing_identifier")
    assert "manage.py identity_providers add NAME" in problem.message


def test_guest_unknown_provider_is_named_with_how_to_add_it():
    value = guest(identifiers=[{"provider": "LOYALTY_NO", "id": "L-1"}])
    _, problems = clean_guest(value, identity_providers=("email",))
    problem = has_problem(problems, "identifiers.0.provider", "unknown_provider")
    assert '"LOYALTY_NO"' in problem.message
    assert "known: email" in problem.message
    assert "Identity providers" in problem.message


def test_guest_with_two_identifiers_of_known_providers_is_valid():
    value = guest(
        identifiers=[
            {"provider": "email", "id": "anna@example.com"},
            {"provider": "CUSTOMER_NO", "id": "C-1001"},
        ]
    )
    cleaned, problems = clean_guest(value, identity_providers=("email", "CUSTOMER_NO"))
    assert problems == []
    assert [i["provider"] for i in cleaned["identifiers"]] == ["email", "CUSTOMER_NO"]


def test_guest_blank_identifier_columns_are_absent_not_invalid():
    value, problems = clean(
        identifiers=[{"provider": "", "id": ""}, {"provider": "CRM_ID", "id": "C-1"}]
    )
    assert problems == []
    assert value["identifiers"] == [{"provider": "CRM_ID", "id": "C-1"}]


def test_guest_identifier_problem_path_uses_the_input_index():
    _, problems = clean(identifiers=[{"provider": "", "id": ""}, {"provider": "CRM_ID"}])
    has_problem(problems, "identifiers.1.id", "required")


def test_guest_identifiers_not_a_list_fails():
    _, problems = clean(identifiers={"provider": "CRM_ID", "id": SECRET})
    has_problem(problems, "identifiers", "invalid_type")


def test_identity_key_uses_the_first_configured_provider():
    identifiers = [{"provider": "email", "id": "a@b.ie"}, {"provider": "CRM_ID", "id": "C-1"}]
    assert identity_key(identifiers, identity_providers=PROVIDERS) == "CRM_ID:C-1"
    assert identity_key(identifiers, identity_providers=("email", "CRM_ID")) == "email:a@b.ie"


def test_identity_key_is_none_without_a_configured_provider():
    identifiers = [{"provider": "LOYALTY", "id": "L-1"}, {"provider": "CRM_ID", "id": " "}]
    assert identity_key(identifiers, identity_providers=PROVIDERS) is None


def test_identity_key_normalises_like_the_rules():
    raw = [{"provider": "email", "id": " Ann@Example.COM "}]
    value, _ = clean_guest({"identifiers": raw}, identity_providers=PROVIDERS)
    assert identity_key(raw, identity_providers=PROVIDERS) == "email:ann@example.com"
    assert identity_key(value["identifiers"], identity_providers=PROVIDERS) == (
        "email:ann@example.com"
    )


# --- subscriptions ---------------------------------------------------------------------------

SUBSCRIPTION = {
    "name": "default",
    "pointOfSale": "shop.ie",
    "channel": "email",
    "status": "subscribed",
}


def test_subscription_valid_passes_with_upper_case_codes():
    value, problems = clean_subscription({**SUBSCRIPTION, "effectiveDate": "2024-01-01"}, index=0)
    assert problems == []
    assert value == {
        "name": "default",
        "pointOfSale": "shop.ie",
        "channel": "EMAIL",
        "status": "SUBSCRIBED",
        "effectiveDate": "2024-01-01T00:00:00.000Z",
    }


@pytest.mark.parametrize("channel", ["EMAIL", "sms", "Push_Notification"])
def test_subscription_documented_channels_pass(channel):
    _, problems = clean_subscription({**SUBSCRIPTION, "channel": channel}, index=0)
    assert problems == []


def test_subscription_channel_outside_list_fails():
    _, problems = clean_subscription({**SUBSCRIPTION, "channel": SECRET}, index=1)
    problem = only_problem(problems, "subscriptions.1.channel", "invalid_choice")
    assert "EMAIL" in problem.message


def test_subscription_status_outside_list_fails():
    _, problems = clean_subscription({**SUBSCRIPTION, "status": SECRET}, index=0)
    problem = only_problem(problems, "subscriptions.0.status", "invalid_choice")
    assert "PENDING, SUBSCRIBED, UNSUBSCRIBED, UNKNOWN" in problem.message


@pytest.mark.parametrize("key", ["name", "pointOfSale", "channel", "status"])
def test_subscription_required_field_missing_fails(key):
    value = {k: v for k, v in SUBSCRIPTION.items() if k != key}
    _, problems = clean_subscription(value, index=0)
    only_problem(problems, f"subscriptions.0.{key}", "required")


def test_subscription_effective_date_invalid_fails():
    _, problems = clean_subscription({**SUBSCRIPTION, "effectiveDate": SECRET}, index=0)
    only_problem(problems, "subscriptions.0.effectiveDate", "invalid_date")


def test_subscription_unknown_key_fails():
    _, problems = clean_subscription({**SUBSCRIPTION, "topic": SECRET}, index=0)
    only_problem(problems, "subscriptions.0.topic", "unknown_field")


def test_subscription_results_are_independent_copies():
    first, _ = clean_subscription(dict(SUBSCRIPTION), index=0)
    first["name"] = "changed"
    second, _ = clean_subscription(dict(SUBSCRIPTION), index=0)
    assert second["name"] == "default"


def test_guest_subscriptions_are_cleaned_in_place():
    value, problems = clean(subscriptions=[SUBSCRIPTION, {**SUBSCRIPTION, "status": "nope"}])
    only_problem(problems, "subscriptions.1.status", "invalid_choice", "nope")
    assert [s["status"] for s in value["subscriptions"]] == ["SUBSCRIBED", "NOPE"]


# --- extensions ------------------------------------------------------------------------------


def test_extension_defaults_name_and_key_and_sorts_attributes():
    value, problems = clean_extension({"tier": "gold", "points": "12"}, index=0)
    assert problems == []
    assert list(value.items()) == [
        ("name", "ext"),
        ("key", "default"),
        ("points", "12"),
        ("tier", "gold"),
    ]


def test_extension_flat_file_strings_stay_strings():
    value, _ = clean_extension({"name": "ext", "points": "12", "member": "true"}, index=0)
    assert value["points"] == "12"
    assert value["member"] == "true"


def test_extension_json_types_are_kept():
    value, problems = clean_extension(
        {"name": "ext2", "points": 12, "member": True, "ratio": 0.5}, index=0
    )
    assert problems == []
    assert (value["points"], value["member"], value["ratio"]) == (12, True, 0.5)


@pytest.mark.parametrize("name", ["ext", "ext1", "EXT5"])
def test_extension_allowed_names_pass(name):
    value, problems = clean_extension({"name": name, "a": "1"}, index=0)
    assert problems == []
    assert value["name"] == name.lower()


@pytest.mark.parametrize("name", ["ext6", "ext0", "loyalty"])
def test_extension_other_names_fail(name):
    _, problems = clean_extension({"name": name, "a": "1"}, index=3)
    problem = only_problem(problems, "extensions.3.name", "invalid_choice", name)
    assert "ext, ext1, ext2, ext3, ext4, ext5" in problem.message


def test_extension_key_other_than_default_fails():
    _, problems = clean_extension({"key": SECRET, "a": "1"}, index=0)
    only_problem(problems, "extensions.0.key", "invalid_choice")


@pytest.mark.parametrize("attr", ["Tier", "loyalty_tier", "tier-2", "2tier", "tïer"])
def test_extension_attribute_name_not_camel_case_alphanumeric_fails(attr):
    _, problems = clean_extension({"name": "ext1", attr: SECRET}, index=0)
    only_problem(problems, f"ext1.{attr}", "invalid_attribute_name")


@pytest.mark.parametrize("raw", [[SECRET], {"a": SECRET}, math.nan, math.inf, b"x"])
def test_extension_attribute_value_not_a_scalar_fails(raw):
    value, problems = clean_extension({"name": "ext", "tier": raw}, index=0)
    only_problem(problems, "ext.tier", "invalid_attribute_value")
    assert "tier" not in value


def test_extension_attribute_text_too_long_fails():
    _, problems = clean_extension({"tier": SECRET * 201}, index=0)
    only_problem(problems, "ext.tier", "too_long")


def test_extension_at_most_100_attributes():
    hundred = {f"a{i}": "x" for i in range(100)}
    _, problems = clean_extension(hundred, index=0)
    assert problems == []
    _, problems = clean_extension({**hundred, "a100": "x"}, index=1)
    problem = only_problem(problems, "extensions.1", "too_many_attributes")
    assert "100" in problem.message


def test_extension_not_an_object_fails():
    _, problems = clean_extension([SECRET], index=0)
    only_problem(problems, "extensions.0", "invalid_type")


def test_guest_extension_attributes_unique_across_groups():
    value, problems = clean(
        extensions=[{"name": "ext", "points": "1"}, {"name": "ext1", "points": "2", "tier": "b"}]
    )
    only_problem(problems, "ext1.points", "duplicate_attribute", None)
    assert len(value["extensions"]) == 2


def test_guest_extension_group_name_used_once():
    _, problems = clean(extensions=[{"name": "ext1", "a": "1"}, {"name": "EXT1", "b": "2"}])
    only_problem(problems, "extensions.1.name", "duplicate_extension", None)


def test_guest_extension_groups_at_most_six():
    groups = [{"name": name, f"a{i}": "1"} for i, name in enumerate(["ext", "ext1", "ext2"])]
    groups += [{"name": name, f"b{i}": "1"} for i, name in enumerate(["ext3", "ext4", "ext5"])]
    _, problems = clean(extensions=groups)
    assert problems == []
    _, problems = clean(extensions=[*groups, {"name": "ext", "c": "1"}])
    has_problem(problems, "extensions", "too_many_extensions", None)


def test_guest_extension_group_without_attributes_is_left_out():
    value, problems = clean(extensions=[{"name": "ext", "key": "default", "tier": ""}])
    assert problems == []
    assert "extensions" not in value


# --- tracking --------------------------------------------------------------------------------

EVENT = {
    "serviceIdentifier": "TEST_PROVIDER",
    "occurredAt": "2015-03-07T14:15:00.000Z",
    "channel": "email",
    "type": "sent",
    "uotr": "c56a4180-65aa-42ec-a945-5fd21dec0538|0",
    "utms": {"utm_source": "BOXEVER", "utm_medium": "EMAIL", "utm_term": ""},
    "feedback": {"reasonCode": "price_too_high", "notes": "Too dear."},
}


def test_tracking_example_event_passes_normalised():
    value, problems = clean_tracking(EVENT)
    assert problems == []
    assert value == {
        "serviceIdentifier": "TEST_PROVIDER",
        "occurredAt": "2015-03-07T14:15:00.000Z",
        "channel": "EMAIL",
        "type": "SENT",
        "uotr": "c56a4180-65aa-42ec-a945-5fd21dec0538|0",
        "utms": {"utm_medium": "EMAIL", "utm_source": "BOXEVER"},
        "feedback": {"reasonCode": "PRICE_TOO_HIGH", "notes": "Too dear."},
    }
    assert list(value) == [k for k in TRACKING_FIELDS if k in value]


@pytest.mark.parametrize("key", ["serviceIdentifier", "occurredAt", "type"])
def test_tracking_required_field_missing_fails(key):
    _, problems = clean_tracking({**EVENT, key: " "})
    only_problem(problems, key, "required")


def test_tracking_occurred_at_invalid_fails():
    _, problems = clean_tracking({**EVENT, "occurredAt": SECRET})
    only_problem(problems, "occurredAt", "invalid_date")


@pytest.mark.parametrize("key", ["type", "channel"])
def test_tracking_code_with_bad_shape_fails(key):
    _, problems = clean_tracking({**EVENT, key: SECRET + " opened!"})
    only_problem(problems, key, "invalid_code")


def test_tracking_utm_value_not_text_fails():
    _, problems = clean_tracking({**EVENT, "utms": {"utm_term": ["a"]}})
    only_problem(problems, "utms.utm_term", "invalid_type")


def test_tracking_utms_not_an_object_fails():
    _, problems = clean_tracking({**EVENT, "utms": SECRET})
    only_problem(problems, "utms", "invalid_type")


def test_tracking_feedback_unknown_key_fails():
    _, problems = clean_tracking({**EVENT, "feedback": {"reasonCode": "X", "score": SECRET}})
    only_problem(problems, "feedback.score", "unknown_field")


def test_tracking_unknown_field_fails():
    value, problems = clean_tracking({**EVENT, "guestRef": SECRET})
    only_problem(problems, "guestRef", "unknown_field")
    assert "guestRef" not in value


def test_tracking_identifiers_follow_the_identifier_rule():
    value, problems = clean_tracking(
        {**EVENT, "identifiers": [{"provider": "email", "id": "A@B.IE"}]},
        identity_providers=PROVIDERS,
    )
    assert problems == []
    assert value["identifiers"] == [{"provider": "email", "id": "a@b.ie"}]
    _, problems = clean_tracking(
        {**EVENT, "identifiers": [{"provider": SECRET, "id": "x"}]}, identity_providers=PROVIDERS
    )
    only_problem(problems, "identifiers.0.provider", "unknown_provider", None)  # names it


def test_tracking_identifiers_without_configuration_need_provider_and_id_only():
    _, problems = clean_tracking({**EVENT, "identifiers": [{"provider": "ANY", "id": "x"}]})
    assert problems == []
    _, problems = clean_tracking({**EVENT, "identifiers": [{"provider": "ANY"}]})
    only_problem(problems, "identifiers.0.id", "required")


# --- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-07T16:15:11.000Z", datetime(2025, 3, 7, 16, 15, 11, tzinfo=UTC)),
        ("2025-03-07T16:15:11.5z", datetime(2025, 3, 7, 16, 15, 11, 500000, tzinfo=UTC)),
        ("1985-12-24T00:00Z", datetime(1985, 12, 24, tzinfo=UTC)),
        ("1985-12-24", datetime(1985, 12, 24, tzinfo=UTC)),
        ("2025-03-07 16:15:11", datetime(2025, 3, 7, 16, 15, 11, tzinfo=UTC)),
        ("2025-03-07T17:15:11+01:00", datetime(2025, 3, 7, 16, 15, 11, tzinfo=UTC)),
        ("2025-03-07T11:15:11-0500", datetime(2025, 3, 7, 16, 15, 11, tzinfo=UTC)),
        (" 2025-03-07T16:15:11.123456789Z ", datetime(2025, 3, 7, 16, 15, 11, 123456, tzinfo=UTC)),
    ],
)
def test_parse_cdp_datetime_accepts_file_variants(text, expected):
    parsed = parse_cdp_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2025-W10-5",
        "20250307T161511Z",
        "2024-01-01T16",
        "07/03/2025",
        "2025-02-30",
        "1985-12-24Z",
    ],
)
def test_parse_cdp_datetime_rejects_other_text_without_quoting_it(text):
    with pytest.raises(ValueError, match="ISO-8601") as excinfo:
        parse_cdp_datetime(text)
    assert not text or text not in str(excinfo.value)


def test_format_cdp_datetime_writes_utc_milliseconds():
    dt = datetime(2025, 3, 7, 17, 15, 11, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert format_cdp_datetime(dt) == "2025-03-07T16:15:11.999Z"
    assert format_cdp_datetime(datetime(2025, 3, 7, 16, 15, 11)) == "2025-03-07T16:15:11.000Z"


def test_format_cdp_date_writes_minutes_without_milliseconds():
    assert format_cdp_date(date(1985, 12, 24)) == "1985-12-24T00:00Z"
    assert format_cdp_date(datetime(1985, 12, 24, 10, 30, 59, tzinfo=UTC)) == "1985-12-24T10:30Z"


# --- normalisers -----------------------------------------------------------------------------


def test_normalisers_examples():
    assert normalize_email(" A@B.IE ") == "a@b.ie"
    assert normalize_upper(" d02 x285 ") == "D02 X285"
    assert normalize_lower(" MALE ") == "male"
    assert normalize_spaces("  mary \t Jane  ") == "mary Jane"


# --- properties ------------------------------------------------------------------------------

PROPERTY = settings(deadline=None, max_examples=200)


@PROPERTY
@given(st.text())
def test_normalisers_are_idempotent(s):
    for normalise in (normalize_email, normalize_upper, normalize_lower, normalize_spaces):
        once = normalise(s)
        assert normalise(once) == once, normalise.__name__


@PROPERTY
@given(st.text())
def test_normalize_email_is_lower_case(s):
    assert normalize_email(s) == normalize_email(s).lower()


@PROPERTY
@given(st.text())
def test_normalize_upper_is_upper_case(s):
    assert normalize_upper(s) == normalize_upper(s).upper()


@PROPERTY
@given(st.text())
def test_normalize_spaces_keeps_the_letters(s):
    assert normalize_spaces(s) == " ".join(s.split())


AWARE = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1900, 1, 2),
    max_value=datetime(2099, 12, 30),
    timezones=st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)


@PROPERTY
@given(AWARE)
def test_format_then_parse_round_trips_to_the_millisecond(dt):
    parsed = parse_cdp_datetime(format_cdp_datetime(dt))
    assert parsed == dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    assert format_cdp_datetime(parsed) == format_cdp_datetime(dt)


@PROPERTY
@given(AWARE)
def test_format_date_then_parse_round_trips_to_the_minute(dt):
    parsed = parse_cdp_datetime(format_cdp_date(dt))
    assert parsed == dt.replace(second=0, microsecond=0)
    assert format_cdp_date(parsed) == format_cdp_date(dt)


def _maybe(strategy):
    return st.one_of(st.none(), st.just(""), st.just("  "), strategy)


_TEXT = st.text(max_size=12)
_DATES = st.one_of(
    AWARE.map(format_cdp_datetime),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)).map(date.isoformat),
    _TEXT,
)
_NAMES = st.one_of(st.sampled_from(["o'brien", "MARY-JANE", "McDonald", "  ann  lee "]), _TEXT)
_IDENTIFIERS = st.lists(
    st.fixed_dictionaries(
        {"provider": _maybe(st.sampled_from(["CRM_ID", "email", "LOYALTY"])),
         "id": _maybe(st.one_of(_TEXT, st.emails(), st.integers(0, 10**9)))},
        optional={"expiryDate": _maybe(_DATES)},
    ),
    max_size=3,
)  # fmt: skip
_SUBSCRIPTIONS = st.lists(
    st.fixed_dictionaries(
        {"name": _maybe(_TEXT), "pointOfSale": _maybe(st.just("shop.ie")),
         "channel": _maybe(st.sampled_from(["email", "SMS", "FAX"])),
         "status": _maybe(st.sampled_from(["subscribed", "PENDING", "gone"]))},
        optional={"effectiveDate": _maybe(_DATES)},
    ),
    max_size=2,
)  # fmt: skip
_ATTRIBUTE_VALUES = st.one_of(
    _TEXT, st.integers(), st.booleans(), st.floats(), st.lists(st.integers(), max_size=1)
)
_EXTENSIONS = st.lists(
    st.builds(
        lambda name, key, attrs: {"name": name, "key": key, **attrs},
        _maybe(st.sampled_from(["ext", "EXT1", "ext2", "ext9"])),
        _maybe(st.sampled_from(["default", "other"])),
        st.dictionaries(
            st.sampled_from(["tier", "points", "memberSince", "Bad_name", "x1"]),
            _ATTRIBUTE_VALUES,
            max_size=4,
        ),
    ),
    max_size=3,
)
GUESTS = st.fixed_dictionaries(
    {},
    optional={
        "firstSeen": _maybe(_DATES), "lastSeen": _maybe(_DATES),
        "guestType": _maybe(st.sampled_from(["customer", "VISITOR"])),
        "title": _maybe(st.sampled_from(["mr.", "MRS", "Lady"])),
        "firstName": _maybe(_NAMES), "lastName": _maybe(_NAMES),
        "gender": _maybe(st.sampled_from(["MALE", "female", "x"])),
        "dateOfBirth": _maybe(_DATES),
        "email": _maybe(st.one_of(st.emails(), _TEXT)),
        "phoneNumbers": _maybe(st.one_of(_TEXT, st.lists(_TEXT, max_size=2))),
        "language": _maybe(st.sampled_from(["en", "EN", "ENG", "xx"])),
        "nationality": _maybe(_NAMES), "passportNumber": _maybe(_TEXT),
        "passportExpiry": _maybe(_DATES),
        "street": _maybe(st.one_of(_TEXT, st.lists(_NAMES, max_size=2))),
        "city": _maybe(_NAMES), "state": _maybe(_NAMES),
        "country": _maybe(st.sampled_from(["ie", "GB", "UK", "xx"])),
        "postCode": _maybe(_TEXT),
        "identifiers": _IDENTIFIERS, "subscriptions": _SUBSCRIPTIONS, "extensions": _EXTENSIONS,
        "unknownField": _TEXT, "firstname": _TEXT,
    },
)  # fmt: skip


@PROPERTY
@given(GUESTS)
def test_clean_guest_canonical_value_is_a_fixed_point(raw):
    value, problems = clean_guest(raw, identity_providers=PROVIDERS)
    json.dumps(value, allow_nan=False)  # writable as a batch line
    again, new_problems = clean_guest(value, identity_providers=PROVIDERS)
    assert again == value
    assert json.dumps(again) == json.dumps(value)
    # Fields of an unusable type are left out, so re-cleaning may find fewer problems, but
    # never new ones (paths may differ only where blank children were dropped).
    assert not Counter(p.code for p in new_problems) - Counter(p.code for p in problems)
    if not problems:
        assert new_problems == []


@PROPERTY
@given(_IDENTIFIERS)
def test_identity_key_is_the_same_for_raw_and_cleaned_identifiers(identifiers):
    value, _ = clean_guest({"identifiers": identifiers}, identity_providers=PROVIDERS)
    assert identity_key(identifiers, identity_providers=PROVIDERS) == identity_key(
        value.get("identifiers", []), identity_providers=PROVIDERS
    )


def test_guest_child_that_is_not_an_object_is_reported_and_dropped():
    value, problems = clean(
        subscriptions=[SECRET], identifiers=[SECRET, {"provider": "CRM_ID", "id": "C-1"}]
    )
    has_problem(problems, "identifiers.0", "invalid_type")
    has_problem(problems, "subscriptions.0", "invalid_type")
    assert value["identifiers"] == [{"provider": "CRM_ID", "id": "C-1"}]
    assert "subscriptions" not in value
