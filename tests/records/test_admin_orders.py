"""Order review admin: masked list and page without view_pii, items inline, edits through the
review service (re-validated, the delivered-order rule included), the review actions."""

import pytest
from django.urls import reverse

from records.models import DeliveryStatus, Order, ReviewStatus
from tests.records.test_admin_review import _post_data
from tests.records.test_importing import run_file
from tests.records.test_importing_orders import SAMPLES

pytestmark = pytest.mark.django_db

REVIEWER_PERMS = (
    "records.view_order",
    "records.change_order",
    "records.view_orderitem",
    "records.review_order",
)
EDITOR_PERMS = (
    *REVIEWER_PERMS,
    "records.view_pii",
    "records.change_orderitem",
    "records.add_orderitem",
    "records.delete_orderitem",
)
CHANGELIST = reverse("admin:records_order_changelist")
PERSONAL = ("ada@example.com", "Lovelace", "grace@example.com", "Hopper")


@pytest.fixture
def orders(tmp_path):
    run = run_file(tmp_path, (SAMPLES / "orders.csv").read_bytes(), name="o.csv", schema="order")
    assert run.status == "succeeded", run.message
    return Order.objects.order_by("id")


@pytest.fixture
def reviewer(client, user_factory):
    user = user_factory("ord-reviewer", perms=REVIEWER_PERMS, is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def editor(client, user_factory):
    user = user_factory("ord-editor", perms=EDITOR_PERMS, is_staff=True)
    client.force_login(user)
    return user


def _change_url(order):
    return reverse("admin:records_order_change", args=[order.pk])


def test_order_changelist_masks_the_contact_for_reviewer(client, reviewer, orders):
    html = client.get(CHANGELIST).content.decode()
    assert "B94TXY-1" in html
    assert "C77QRS-4" in html
    assert "email:a***@e***.com" in html
    for snippet in PERSONAL:
        assert snippet not in html


def test_order_page_masks_contact_and_consumers_but_shows_items(client, reviewer, orders):
    response = client.get(_change_url(orders[0]))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Double room" in html  # the items are not personal
    assert "B94TXY-1-2" in html
    for snippet in PERSONAL:
        assert snippet not in html
    assert "Save and mark ready" not in html  # read-only without view_pii


def test_order_page_shows_everything_with_view_pii(client, editor, orders):
    html = client.get(_change_url(orders[0])).content.decode()
    assert "ada@example.com" in html
    assert "Lovelace" in html


def test_order_search_by_reference_and_contact(client, reviewer, orders):
    html = client.get(CHANGELIST, {"q": "C77QRS-4"}).content.decode()
    assert "C77QRS-4" in html
    assert "B94TXY-1<" not in html
    html = client.get(CHANGELIST, {"q": "ada@example.com"}).content.decode()
    assert "B94TXY-1" in html
    assert "C77QRS-4" not in html


def test_order_edit_of_an_item_revalidates_the_order(client, editor, orders):
    order = orders[0]
    url = _change_url(order)
    data = _post_data(client.get(url))
    data["items-1-price"] = "-50"
    data["items-0-currency_code"] = "GBP"
    data["_continue"] = "1"
    client.post(url, data)
    order.refresh_from_db()
    assert '"price":-50' in order.cdp_value
    assert order.review_status == ReviewStatus.NEW
    data = _post_data(client.get(url))
    data["items-0-name"] = "x" * 129
    client.post(url, data)
    order.refresh_from_db()
    assert order.review_status == ReviewStatus.INVALID
    assert [e["field"] for e in order.validation_errors] == ["orderItems.0.name"]


def test_order_edit_after_delivery_makes_it_invalid(client, editor, orders):
    order = orders[1]
    Order.objects.filter(pk=order.pk).update(
        delivery_status=DeliveryStatus.DELIVERED, delivered_hash=order.value_hash
    )
    url = _change_url(order)
    data = _post_data(client.get(url))
    data["status"] = "REFUNDED"
    client.post(url, data)
    order.refresh_from_db()
    assert order.review_status == ReviewStatus.INVALID
    assert [e["code"] for e in order.validation_errors] == ["order_already_delivered"]


def test_order_mark_ready_action(client, reviewer, orders):
    response = client.post(
        CHANGELIST,
        {"action": "mark_ready", "_selected_action": [o.pk for o in orders]},
        follow=True,
    )
    assert "2 orders marked ready." in response.content.decode()
    assert set(Order.objects.values_list("review_status", flat=True)) == {ReviewStatus.READY}
