"""records.rules.orders: the order rules of cdp-batch-api.md 3.2, a passing and a failing case
each; the serialisation round trip of an order through its typed columns. Pure unit tests."""

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from records.rules import (
    ORDER_FIELDS,
    ORDER_ITEM_FIELDS,
    clean_order,
    order_key,
    order_redelivery_problems,
)
from records.serializing import (
    ORDER_COLUMNS,
    ORDER_ITEM_COLUMNS,
    UnstorableValue,
    dump_value,
    order_fields_from_value,
    order_items_from_value,
    order_value_from_instance,
)

PROVIDERS = ["email", "CRM_ID"]


def order(**changes: Any) -> dict[str, Any]:
    """A valid insert-mode order (the shape of the docs' S-OEXT example)."""
    value: dict[str, Any] = {
        "referenceId": "B94TXY-1",
        "channel": "WEB",
        "pointOfSale": "myretailsite.com",
        "status": "PURCHASED",
        "orderedAt": "2025-03-07T16:15:11.000Z",
        "currencyCode": "EUR",
        "price": 80.5,
        "paymentType": "Card",
        "cardType": "Visa",
        "contact": {
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
            "identifiers": [{"provider": "email", "id": "ada@example.com"}],
        },
        "orderItems": [
            {
                "type": "HOTEL",
                "productId": "ROOM-1",
                "name": "Double room",
                "description": "Two nights",
                "vendor": "Hotel Example",
                "quantity": 2,
                "price": 125.5,
                "currencyCode": "EUR",
                "referenceId": "B94TXY-1-1",
                "status": "PURCHASED",
            },
            {
                "type": "FEES",
                "productId": "DISC",
                "name": "Discount",
                "description": "Loyalty discount",
                "vendor": "Hotel Example",
                "price": -45,
                "currencyCode": "EUR",
                "referenceId": "B94TXY-1-2",
            },
        ],
        "consumers": [
            {
                "firstName": "Ada",
                "lastName": "Lovelace",
                "orderItems": [{"referenceId": "B94TXY-1-1"}],
            }
        ],
        "extensions": [{"name": "ext", "key": "default", "loyaltyTier": "gold"}],
    }
    value.update(changes)
    return value


def problems_of(value: dict[str, Any]) -> dict[str, str]:
    return {p.field: p.code for p in clean_order(value, identity_providers=PROVIDERS)[1]}


def test_clean_order_accepts_a_full_order_unchanged():
    value, problems = clean_order(order(), identity_providers=PROVIDERS)
    assert problems == []
    assert value == order()
    assert list(value) == [k for k in ORDER_FIELDS if k in value]


def test_clean_order_normalises_codes_numbers_and_dates():
    raw = order(channel="web", status="purchased", currencyCode="eur", price="80.50")
    raw["orderedAt"] = "2025-03-07T16:15:11Z"
    raw["orderItems"][0].update(type="hotel", price="125.5", quantity="2")
    value, problems = clean_order(raw, identity_providers=PROVIDERS)
    assert problems == []
    assert value == order()


@pytest.mark.parametrize(
    "field",
    ["referenceId", "channel", "pointOfSale", "status", "orderedAt", "currencyCode", "price",
     "paymentType", "contact", "orderItems"],
)  # fmt: skip
def test_clean_order_requires_every_insert_field(field):
    raw = order()
    del raw[field]
    assert problems_of(raw).get(field) == "required"


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"channel": "PIGEON"}, "channel", "invalid_choice"),
        ({"status": "SHIPPED"}, "status", "invalid_choice"),
        ({"currencyCode": "EURO"}, "currencyCode", "invalid_currency"),
        ({"price": "12,50"}, "price", "invalid_number"),
        ({"price": True}, "price", "invalid_type"),
        ({"paymentType": "Cheque"}, "paymentType", "invalid_choice"),
        ({"cardType": "Maestro"}, "cardType", "invalid_choice"),
        ({"cardType": None}, "cardType", "required"),
        ({"orderedAt": "yesterday"}, "orderedAt", "invalid_date"),
        ({"giftWrap": True}, "giftWrap", "unknown_field"),
        ({"contact": "ada@example.com"}, "contact", "invalid_type"),
    ],
)
def test_clean_order_reports_each_broken_rule(changes, field, code):
    assert problems_of(order(**changes)).get(field) == code


def test_clean_order_message_never_repeats_the_value():
    raw = order(price="secret-12,50")
    raw["contact"]["email"] = "not-an-address"
    _, problems = clean_order(raw, identity_providers=PROVIDERS)
    assert {p.field for p in problems} == {"price", "contact.email"}
    assert not any("secret" in p.message or "not-an-address" in p.message for p in problems)


def test_clean_order_card_type_only_required_for_card():
    assert problems_of(order(paymentType="Paypal", cardType=None)) == {}


def test_clean_order_contact_needs_a_configured_identifier():
    raw = order()
    raw["contact"]["identifiers"] = [{"provider": "LOYALTY", "id": "L-1"}]
    found = problems_of(raw)
    assert found["contact.identifiers.0.provider"] == "unknown_provider"
    assert found["contact.identifiers"] == "missing_identifier"


def test_clean_order_contact_follows_the_guest_rules():
    raw = order()
    raw["contact"].update(email="Ada@Example.COM", country="Ireland", passportNumber="X1")
    value, problems = clean_order(raw, identity_providers=PROVIDERS)
    assert value["contact"]["email"] == "ada@example.com"
    assert {p.field: p.code for p in problems} == {
        "contact.country": "invalid_country",
        "contact.passportNumber": "unknown_field",  # a consumer's field, not the contact's
    }


def test_clean_order_item_rules():
    raw = order()
    item = raw["orderItems"][0]
    item.update(name="x" * 129, type="hotel room", originalPrice=100)
    del item["vendor"]
    found = problems_of(raw)
    assert found == {
        "orderItems.0.name": "too_long",
        "orderItems.0.type": "invalid_code",
        "orderItems.0.vendor": "required",
        "orderItems.0.originalCurrencyCode": "required",
    }


def test_clean_order_needs_one_item_and_unique_item_references():
    assert problems_of(order(orderItems=[]))["orderItems"] == "required"
    raw = order()
    raw["orderItems"][1]["referenceId"] = "B94TXY-1-1"
    assert problems_of(raw)["orderItems.1.referenceId"] == "duplicate_item_reference"


def test_clean_order_consumers_link_to_items_of_the_order():
    raw = order()
    raw["consumers"][0]["orderItems"] = [{"referenceId": "ELSEWHERE"}]
    del raw["consumers"][0]["lastName"]
    found = problems_of(raw)
    assert found == {
        "consumers.0.orderItems.0.referenceId": "unknown_order_item",
        "consumers.0.lastName": "required",
    }
    raw["consumers"][0]["orderItems"] = None
    assert problems_of(raw)["consumers.0.orderItems"] == "required"


def test_clean_order_one_ext_extension_on_order_and_item():
    raw = order(extensions=[{"name": "ext1", "a": 1}])
    raw["orderItems"][0]["extensions"] = [{"name": "ext", "a": 1}, {"name": "ext", "b": 2}]
    found = problems_of(raw)
    assert found["extensions.0.name"] == "invalid_choice"
    assert found["orderItems.0.extensions"] == "too_many_extensions"


def test_clean_order_keeps_flight_segments_with_sorted_keys():
    raw = order()
    raw["orderItems"][0]["flightSegments"] = [{"origin": "DUB", "destination": "LHR"}]
    value, problems = clean_order(raw, identity_providers=PROVIDERS)
    assert problems == []
    segments = value["orderItems"][0]["flightSegments"]
    assert list(segments[0]) == ["destination", "origin"]
    raw["orderItems"][0]["flightSegments"] = "DUB-LHR"
    assert problems_of(raw)["orderItems.0.flightSegments"] == "invalid_type"


def test_order_key_is_ordered_at_and_reference():
    value, _ = clean_order(order(), identity_providers=PROVIDERS)
    assert order_key(value) == "2025-03-07T16:15:11.000Z|B94TXY-1"
    assert order_key({"referenceId": "B94TXY-1"}) is None


def test_order_redelivery_problems_only_for_a_delivered_changed_order():
    assert order_redelivery_problems(value_hash="a", delivered_hash="") == []
    assert order_redelivery_problems(value_hash="a", delivered_hash="a") == []
    (problem,) = order_redelivery_problems(value_hash="b", delivered_hash="a")
    assert problem.code == "order_already_delivered"


def test_order_columns_name_every_field_of_the_rules():
    assert set(ORDER_COLUMNS) | {"orderItems"} == set(ORDER_FIELDS)
    assert set(ORDER_ITEM_COLUMNS) == set(ORDER_ITEM_FIELDS)


def _instance(value: dict[str, Any]) -> SimpleNamespace:
    """An Order-like object holding the typed columns of a value (as the database would)."""
    items = [SimpleNamespace(**row) for row in order_items_from_value(value)]
    fields = copy.deepcopy(order_fields_from_value(value))
    return SimpleNamespace(**fields, items=SimpleNamespace(all=lambda: items))


def test_order_value_round_trips_through_the_typed_columns():
    raw = order()
    raw["orderItems"][0]["flightSegments"] = [{"destination": "LHR", "origin": "DUB"}]
    value, _ = clean_order(raw, identity_providers=PROVIDERS)
    rebuilt, problems = clean_order(
        order_value_from_instance(_instance(value)), identity_providers=PROVIDERS
    )
    assert problems == []
    assert dump_value(rebuilt) == dump_value(value)


def test_order_fields_from_value_refuse_an_unstorable_type():
    with pytest.raises(UnstorableValue) as caught:
        order_fields_from_value({"contact": ["not", "an", "object"]})
    assert caught.value.field == "contact"
