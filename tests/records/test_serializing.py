"""Tests for records.serializing: the record <-> CDP value definition."""

import orjson
import pytest

from records.models import Guest
from records.rules import clean_guest
from records.serializing import (
    UnstorableValue,
    dump_value,
    guest_children_from_value,
    guest_fields_from_value,
    guest_value_from_instance,
    value_hash,
)
from tests.records.factories import GuestFactory, TrackingEventFactory

PROVIDERS = ["email", "CRM_ID"]


def test_dump_value_is_minified_utf8_in_given_order():
    text = dump_value({"b": "é", "a": [1, 2]})
    assert text == '{"b":"é","a":[1,2]}'


def test_value_hash_is_md5_hex_of_text():
    assert value_hash("{}") == "99914b932bd37a50b983c5e7c90ae93b"


def test_guest_fields_from_value_types_columns():
    fields = guest_fields_from_value(
        {"email": "a@example.com", "dateOfBirth": "1985-12-24T00:00Z", "street": ["1 Main St"]}
    )
    assert fields["email"] == "a@example.com"
    assert str(fields["date_of_birth"]) == "1985-12-24"
    assert fields["street"] == ["1 Main St"]
    assert fields["guest_type"] == "customer"


def test_guest_fields_from_value_types_text_that_is_no_date_as_no_date():
    # The rule reports it (invalid_date) and the stored value keeps the text for the steward.
    assert guest_fields_from_value({"dateOfBirth": "24/12/1985"})["date_of_birth"] is None


def test_guest_fields_from_value_keeps_text_of_any_length():
    # Lengths are CDP rules (reported, the row staged as invalid), not column limits.
    assert guest_fields_from_value({"postCode": "X" * 300})["post_code"] == "X" * 300


def test_guest_fields_from_value_refuses_a_type_its_column_cannot_hold():
    with pytest.raises(UnstorableValue) as info:
        guest_fields_from_value({"city": ["not", "text"]})
    assert (info.value.field, info.value.code) == ("city", "wrong_type")


def test_guest_children_from_value_keeps_order_and_attributes():
    children = guest_children_from_value(
        {
            "identifiers": [{"provider": "email", "id": "a@example.com"}],
            "subscriptions": [
                {"name": "news", "pointOfSale": "shop", "channel": "EMAIL", "status": "SUBSCRIBED"}
            ],
            "extensions": [{"name": "ext", "key": "default", "tier": "gold"}],
        }
    )
    assert children.identifiers == [(0, "email", "a@example.com", None)]
    assert children.subscriptions[0][1:5] == ("news", "shop", "EMAIL", "SUBSCRIBED")
    assert children.extensions == [("ext", "default", {"tier": "gold"})]


@pytest.mark.django_db
def test_guest_factory_stores_the_rules_canonical_value():
    guest = GuestFactory(
        email="Ann@Example.com",
        identifiers=[("email", "ann@example.com"), ("CRM_ID", "C-1")],
        subscriptions=[{"name": "news"}],
        extensions={"ext": {"tier": "gold", "points": 3}},
    )
    value = orjson.loads(guest.cdp_value)
    assert guest.identity_key == "email:ann@example.com"
    assert value["email"] == "ann@example.com"
    assert [e["tier"] for e in value["extensions"]] == ["gold"]
    assert list(value["extensions"][0]) == ["name", "key", "points", "tier"]
    assert guest.value_hash == value_hash(guest.cdp_value)
    assert guest.review_status == "new"


@pytest.mark.django_db
def test_guest_value_from_instance_round_trips_through_the_rules():
    guest = GuestFactory(date_of_birth="1985-12-24", extensions={"ext": {"b": "2", "a": "1"}})
    guest = Guest.objects.prefetch_related("identifiers", "subscriptions", "extensions").get(
        pk=guest.pk
    )
    rebuilt = guest_value_from_instance(guest)
    canonical, problems = clean_guest(rebuilt, identity_providers=PROVIDERS)
    assert problems == []
    assert dump_value(canonical) == guest.cdp_value
    assert dump_value(rebuilt) == guest.cdp_value


@pytest.mark.django_db
def test_tracking_factory_stores_value_and_guest_identity():
    event = TrackingEventFactory(identifiers=[{"provider": "email", "id": "T@Example.com"}])
    value = orjson.loads(event.cdp_value)
    assert value["serviceIdentifier"] == "TEST_PROVIDER"
    assert event.guest_identity_key == "email:t@example.com"
    assert event.value_hash == value_hash(event.cdp_value)


def test_guest_children_from_value_names_the_child_field_that_fails():
    with pytest.raises(UnstorableValue) as info:
        guest_children_from_value(
            {
                "subscriptions": [
                    {"name": "a", "channel": "EMAIL"},
                    {"name": "b", "channel": ["EMAIL"], "effectiveDate": "someday"},
                ]
            }
        )
    assert (info.value.field, info.value.code) == ("subscriptions.1.channel", "wrong_type")
    children = guest_children_from_value(
        {
            "identifiers": [{"provider": "email", "id": "x" * 300}],
            "subscriptions": [{"name": "b", "channel": "EMAIL", "effectiveDate": "someday"}],
            "extensions": [{"name": "ext", "a": "1"}, {"name": "ext", "b": "2"}],
        }
    )
    assert children.identifiers[0][2] == "x" * 300
    assert children.subscriptions[0][5] is None  # no date; the rule reports it
    assert children.extensions == [("ext", "default", {"a": "1"})]  # one row per name
