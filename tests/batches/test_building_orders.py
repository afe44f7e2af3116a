"""Batches of orders, built in-process: insert-mode lines of the stored values, one order per
reference id + ordered-at in a batch, and an order CDP confirmed never selected again, not even
by a full send (cdp-batch-api.md 3.2: a second insert is a second order)."""

import gzip
import json

import pytest
from django.core.files.storage import default_storage

from batches import services
from batches.models import BatchFile, BatchItem
from cdpstage.errors import ApplicationError
from records.models import DeliveryStatus, Order, ReviewStatus
from records.services import lifecycle
from records.services.review import records_mark_ready
from tests.records.test_importing import run_file
from tests.records.test_importing_orders import SAMPLES, ndjson, order_line

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "progress"])


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    """No Redis: these tests run the build themselves."""
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )


@pytest.fixture
def reviewer(user_factory):
    return user_factory("reviewer", perms=("records.review_order",))


def stage_ready_orders(tmp_path, reviewer, data: bytes, name: str = "orders.ndjson") -> None:
    run = run_file(tmp_path, data, name=name, schema="order")
    assert run.status == "succeeded", run.message
    records_mark_ready(model=Order, queryset=Order.objects.all(), user=reviewer)


def build(batch):
    batch.refresh_from_db()
    services.batch_build(batch_id=batch.pk, attempt=batch.attempt)
    batch.refresh_from_db()
    return batch


def lines_of(batch) -> list[dict]:
    out = []
    for batch_file in BatchFile.objects.filter(batch=batch):
        with default_storage.open(batch_file.file.name, "rb") as stored:
            out += [json.loads(line) for line in gzip.decompress(stored.read()).splitlines()]
    return out


def test_order_batch_lines_are_insert_records_of_the_stored_values(tmp_path, reviewer, stager):
    stage_ready_orders(tmp_path, reviewer, (SAMPLES / "orders.ndjson").read_bytes())
    batch = build(services.batch_create(schema="order", user=stager))
    assert batch.status == "built", batch.message
    lines = lines_of(batch)
    orders = {str(o.ref): o for o in Order.objects.all()}
    assert {line["ref"] for line in lines} == set(orders)
    for line in lines:
        assert (line["schema"], line["mode"]) == ("order", "insert")
        assert line["value"] == json.loads(orders[line["ref"]].cdp_value)
    # The upper-case ref of the source line is the same record ref, written as CDP expects.
    assert "6b29fc40-ca47-1067-b31d-00dd010662da" in {line["ref"] for line in lines}


def test_delivered_order_is_never_selected_again(tmp_path, reviewer, stager):
    stage_ready_orders(tmp_path, reviewer, ndjson(order_line("R-1"), order_line("R-2")))
    batch = build(services.batch_create(schema="order", user=stager))
    assert batch.records_total == 2
    # CDP confirmed both; the batch ended.
    lifecycle.records_record_outcomes(
        model=Order,
        outcomes=("SELECT record_id, 'delivered', value_hash FROM batches_batchitem", []),
    )
    services.records_release(batch_id=batch.pk, schema="order")
    assert set(Order.objects.values_list("delivery_status", flat=True)) == {
        DeliveryStatus.DELIVERED
    }
    # A full send takes delivered, unchanged guests again; never an order.
    with pytest.raises(ApplicationError, match="no ready order records"):
        services.batch_create(schema="order", user=stager, include_unchanged=True)
    # Changed in a re-imported extract: invalid (it would be a second order), never ready.
    run = run_file(tmp_path, ndjson(order_line("R-1", status="REFUNDED")), name="again.ndjson",
                   schema="order")  # fmt: skip
    assert run.rows_invalid == 1
    changed = Order.objects.get(reference_id="R-1")
    assert changed.review_status == ReviewStatus.INVALID
    result = records_mark_ready(model=Order, queryset=Order.objects.all(), user=reviewer)
    assert (result.changed, result.skipped_invalid) == (0, 1)
    # Even if someone forced it ready, the selection leaves a confirmed order out.
    Order.objects.filter(pk=changed.pk).update(review_status="ready", validation_errors=[])
    with pytest.raises(ApplicationError, match="no ready order records"):
        services.batch_create(schema="order", user=stager)
    assert BatchItem.objects.count() == 2
