"""Orders over the whole flow with the real parts: import (the service the import job runs) ->
mark ready (a reviewer) -> build -> approve (a second person) -> send, by a real
`rqworker batches --with-scheduler`, to the HTTPS sandbox; what CDP holds is read from the
sandbox's inspection endpoint, not from what the app believes it sent."""

from __future__ import annotations

import json

import pytest

from batches import services
from batches.models import Batch, BatchItem
from cdpstage.errors import ApplicationError
from records.models import DeliveryStatus, Order, ReviewStatus
from records.services.review import records_mark_ready
from tests.batches.conftest import wait_for
from tests.batches.test_flow import FINAL, _status
from tests.records.test_importing import run_file
from tests.records.test_importing_orders import SAMPLES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "progress"]),
]


def test_flow_orders_arrive_at_cdp_exactly_as_staged(
    sandbox, batches_worker, stager, approver, user_factory, tmp_path
):
    for name in ("orders.csv", "orders.ndjson"):
        run = run_file(tmp_path, (SAMPLES / name).read_bytes(), name=name, schema="order")
        assert run.status == "succeeded", run.message
    reviewer = user_factory("reviewer", perms=("records.review_order",))
    assert records_mark_ready(model=Order, queryset=Order.objects.all(), user=reviewer).changed == 4
    batches_worker()

    batch = services.batch_create(schema="order", user=stager)
    wait_for(lambda: _status(batch) in ("built", "failed"), timeout=60, what="the build")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT, batch.message
    with pytest.raises(ApplicationError):
        services.batch_approve(batch=batch, user=stager)  # four eyes
    services.batch_approve(batch=batch, user=approver)
    services.batch_send(batch=batch, user=approver)
    wait_for(lambda: _status(batch) in FINAL, timeout=90, what="the batch to end")
    batch.refresh_from_db()
    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    assert batch.records_delivered == 4

    # What CDP holds: each order once, under its own record ref, exactly its staged value
    # (the sandbox keeps the contact as the order's guest, not on the order).
    arrived = {order["refs"][0]: order for order in sandbox.control.orders()}
    staged = {str(order.ref): order for order in Order.objects.all()}
    assert set(arrived) == set(staged)
    for ref, order in staged.items():
        held = arrived[ref]
        assert held["refs"] == [ref]
        assert held["repeats"] == 0
        value = json.loads(order.cdp_value)
        contact = value.pop("contact")
        assert {k: v for k, v in held.items() if k not in ("guest", "refs", "repeats")} == value
        profile = next(p for p in sandbox.control.profiles() if p["id"] == held["guest"])
        assert contact["identifiers"][0] in profile["identifiers"]
    assert "6b29fc40-ca47-1067-b31d-00dd010662da" in arrived  # the upper-case ref of the source
    flight = arrived["6b29fc40-ca47-1067-b31d-00dd010662da"]
    assert [s["origin"] for s in flight["orderItems"][0]["flightSegments"]] == ["DUB", "LHR"]

    assert set(BatchItem.objects.values_list("outcome", flat=True)) == {"delivered"}
    for order in Order.objects.all():
        assert order.delivery_status == DeliveryStatus.DELIVERED
        assert order.delivered_hash == order.value_hash

    # Sending them again is caught before anything goes out: a full send takes none, and a
    # changed extract stages the changed order as invalid.
    with pytest.raises(ApplicationError, match="no ready order records"):
        services.batch_create(schema="order", user=stager, include_unchanged=True)
    changed = (SAMPLES / "orders.csv").read_text().replace("PURCHASED", "REFUNDED", 1)
    again = run_file(tmp_path, changed.encode(), name="orders-again.csv", schema="order")
    assert (again.rows_invalid, again.rows_unchanged) == (1, 1)
    refunded = Order.objects.get(reference_id="B94TXY-1")
    assert refunded.review_status == ReviewStatus.INVALID
    assert [e["code"] for e in refunded.validation_errors] == ["order_already_delivered"]
    assert len(sandbox.control.orders()) == 4
