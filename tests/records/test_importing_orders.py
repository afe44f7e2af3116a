"""Importing orders (cdp-batch-api.md 3.2): CDP-shaped JSON and batch lines, flat CSV / XLSX
files with their items on the row, every problem of a row reported, all-or-nothing for refused
rows, and a re-inserted order caught before it can be sent twice. Through import_run_execute,
as the background job and the stage_import command run it."""

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from django.utils import timezone
from openpyxl import Workbook

from records.models import BatchMembership, DeliveryStatus, Order, OrderItem, ReviewStatus
from records.services.erasure import SUPPRESSED_CODE, guest_deletion_request
from records.services.retention import records_purge, retention_cutoff
from records.services.review import records_mark_ready
from tests.records.test_importing import report_rows, run_file

pytestmark = pytest.mark.django_db

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def order_line(reference: str = "R-1", **changes) -> dict:
    value = {
        "referenceId": reference,
        "channel": "WEB",
        "pointOfSale": "shop.example",
        "status": "PURCHASED",
        "orderedAt": "2025-03-07T16:15:11.000Z",
        "currencyCode": "EUR",
        "price": 10,
        "paymentType": "Cash",
        "contact": {"identifiers": [{"provider": "email", "id": "ada@example.com"}]},
        "orderItems": [
            {
                "type": "OTHER",
                "productId": "P-1",
                "name": "Thing",
                "description": "A thing",
                "vendor": "Shop",
                "price": 10,
                "currencyCode": "EUR",
                "referenceId": f"{reference}-1",
            }
        ],
    }
    value.update(changes)
    return value


def ndjson(*objects: dict) -> bytes:
    return b"".join(orjson.dumps(obj) + b"\n" for obj in objects)


def run_orders(tmp_path, data: bytes, name: str = "orders.ndjson", **options):
    return run_file(tmp_path, data, name=name, schema="order", **options)


def test_import_order_batch_lines_keep_their_upper_case_refs(tmp_path):
    run = run_orders(tmp_path, sample("orders.ndjson"))
    assert run.status == "succeeded", run.message
    assert (run.rows_created, run.rows_invalid) == (2, 0)
    flight = Order.objects.get(reference_id="D12ABC-7")
    # The line's ref, accepted in upper case, is the record's ref (the same UUID).
    assert str(flight.ref) == "6B29FC40-CA47-1067-B31D-00DD010662DA".lower()
    assert flight.mode == "insert"
    assert flight.review_status == ReviewStatus.NEW
    assert flight.contact_identity_key == "email:alan@example.com"
    value = orjson.loads(flight.cdp_value)
    line = orjson.loads(sample("orders.ndjson").splitlines()[0])["value"]
    assert value["orderItems"][0]["flightSegments"] == [
        {"destination": "LHR", "origin": "DUB"},
        {"destination": "DUB", "origin": "LHR"},
    ]
    line["orderItems"][0].pop("flightSegments")
    value["orderItems"][0].pop("flightSegments")
    assert value == line  # kept as given: already canonical
    (item,) = flight.items.all()
    assert (item.reference_id, item.type, item.price) == ("D12ABC-7-1", "FLIGHT", 480)


def test_import_order_csv_sample_with_items_on_the_row(tmp_path):
    run = run_orders(tmp_path, sample("orders.csv"), name="orders.csv")
    assert run.status == "succeeded", run.message
    assert (run.rows_created, run.rows_invalid) == (2, 0)
    order = Order.objects.get(reference_id="B94TXY-1")
    value = orjson.loads(order.cdp_value)
    assert value["price"] == 206
    assert value["orderItems"][1]["price"] == -45
    assert value["orderItems"][0]["extensions"] == [
        {"name": "ext", "key": "default", "roomType": "double"}
    ]
    assert value["extensions"] == [{"name": "ext", "key": "default", "loyaltyTier": "gold"}]
    assert value["consumers"] == [
        {"firstName": "Ada", "lastName": "Lovelace", "orderItems": [{"referenceId": "B94TXY-1-1"}]}
    ]
    assert list(order.items.values_list("position", "reference_id")) == [
        (0, "B94TXY-1-1"),
        (1, "B94TXY-1-2"),
    ]
    other = Order.objects.get(reference_id="C77QRS-4")
    assert other.items.count() == 1
    assert other.payment_type == "Paypal"


def test_import_order_xlsx(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet.append(
        ["referenceId", "orderedAt", "status", "channel", "pointOfSale", "currencyCode", "price",
         "paymentType", "contact.identifiers.0.provider", "contact.identifiers.0.id",
         "orderItems.0.referenceId", "orderItems.0.type", "orderItems.0.productId",
         "orderItems.0.name", "orderItems.0.description", "orderItems.0.vendor",
         "orderItems.0.price", "orderItems.0.currencyCode"]
    )  # fmt: skip
    sheet.append(
        ["X-1", "2025-01-02T03:04:05Z", "PURCHASED", "WEB", "shop", "EUR", 12.5, "Cash",
         "email", "zoe@example.com", "X-1-1", "OTHER", "P", "N", "D", "V", 12.5, "EUR"]
    )  # fmt: skip
    book.save(tmp_path / "orders.xlsx")
    run = run_orders(tmp_path, (tmp_path / "orders.xlsx").read_bytes(), name="orders.xlsx")
    assert run.status == "succeeded", run.message
    value = orjson.loads(Order.objects.get().cdp_value)
    assert value["price"] == 12.5
    assert value["orderedAt"] == "2025-01-02T03:04:05.000Z"


def test_import_order_reports_every_problem_of_a_row(tmp_path):
    bad = order_line("R-2", channel="PIGEON", price="12,50", paymentType="Card")
    bad["orderItems"][0].pop("vendor")
    run = run_orders(tmp_path, ndjson(order_line("R-1"), bad))
    assert run.status == "succeeded", run.message
    assert (run.rows_created, run.rows_invalid) == (2, 1)
    order = Order.objects.get(reference_id="R-2")
    assert order.review_status == ReviewStatus.INVALID
    codes = {(e["field"], e["code"]) for e in order.validation_errors}
    assert codes == {
        ("channel", "invalid_choice"),
        ("price", "invalid_number"),
        ("cardType", "required"),
        ("orderItems.0.vendor", "required"),
    }
    lines = {(r["row"], r["column"], r["code"]) for r in report_rows(run)}
    assert ("2", "orderItems.0.vendor", "required") in lines
    assert len([line for line in lines if line[0] == "2"]) == 4


def test_import_order_refused_row_imports_nothing(tmp_path):
    run = run_orders(
        tmp_path,
        ndjson(
            {"ref": "not-a-uuid", "schema": "order", "mode": "insert", "value": order_line()},
            order_line("R-2"),
        ),
    )
    assert run.status == "failed"
    assert Order.objects.count() == 0
    assert OrderItem.objects.count() == 0
    assert any(r["code"] == "invalid_ref" for r in report_rows(run))


def test_import_order_line_in_guest_import_and_back(tmp_path):
    line = {"ref": None, "schema": "order", "mode": "insert", "value": order_line()}
    guest_run = run_file(tmp_path, ndjson(line), name="guests.ndjson", schema="guest")
    assert guest_run.status == "failed"
    order_run = run_orders(tmp_path, ndjson(line))
    assert order_run.status == "succeeded", order_run.message
    upsert = {**line, "mode": "upsert"}
    refused = run_orders(tmp_path, ndjson(upsert))
    assert refused.status == "failed"
    assert [r["code"] for r in report_rows(refused)] == ["unsupported_mode"]


def test_import_order_twice_in_a_file_the_later_row_wins(tmp_path):
    later = order_line("R-1", price=12, status="CONFIRMED")
    later["orderItems"][0]["price"] = 12
    run = run_orders(tmp_path, ndjson(order_line("R-1"), later))
    assert run.status == "succeeded", run.message
    order = Order.objects.get()
    assert order.status == "CONFIRMED"
    assert order.source_row == 2
    assert any(r["code"] == "repeated_order" for r in report_rows(run))


def test_import_order_again_updates_and_replaces_items(tmp_path):
    run_orders(tmp_path, ndjson(order_line("R-1")))
    first = Order.objects.get()
    same = run_orders(tmp_path, ndjson(order_line("R-1")))
    assert (same.rows_created, same.rows_updated, same.rows_unchanged) == (0, 0, 1)
    changed = order_line("R-1")
    changed["orderItems"].append({**changed["orderItems"][0], "referenceId": "R-1-2"})
    again = run_orders(tmp_path, ndjson(changed))
    assert (again.rows_created, again.rows_updated) == (0, 1)
    order = Order.objects.get()
    assert order.pk == first.pk
    assert order.ref == first.ref
    assert list(order.items.values_list("reference_id", flat=True)) == ["R-1-1", "R-1-2"]


def test_import_order_delivered_and_changed_is_staged_invalid(tmp_path):
    run_orders(tmp_path, ndjson(order_line("R-1")))
    Order.objects.update(
        delivery_status=DeliveryStatus.DELIVERED, delivered_hash=Order.objects.get().value_hash
    )
    unchanged = run_orders(tmp_path, ndjson(order_line("R-1")))
    assert unchanged.rows_unchanged == 1
    assert unchanged.rows_invalid == 0
    changed = run_orders(tmp_path, ndjson(order_line("R-1", status="REFUNDED")))
    assert changed.status == "succeeded"
    assert changed.rows_invalid == 1
    order = Order.objects.get()
    assert order.review_status == ReviewStatus.INVALID
    assert [e["code"] for e in order.validation_errors] == ["order_already_delivered"]
    assert [r["code"] for r in report_rows(changed)] == ["order_already_delivered"]


def test_import_order_in_a_live_batch_is_refused(tmp_path, user_factory):
    run_orders(tmp_path, ndjson(order_line("R-1")))
    order = Order.objects.get()
    BatchMembership.objects.create(batch_id=42, kind="order", record_id=order.pk)
    run = run_orders(tmp_path, ndjson(order_line("R-1", price=11)))
    assert run.status == "failed"
    (line,) = report_rows(run)
    assert line["code"] == "locked"
    assert "batch 42" in line["reason"]
    order.refresh_from_db()
    assert order.price == 10


def test_import_order_ref_of_another_order_is_refused(tmp_path):
    ref = "6b29fc40-ca47-1067-b31d-00dd010662da"
    run_orders(tmp_path, ndjson({"ref": ref, "schema": "order", "mode": "insert",
                                 "value": order_line("R-1")}))  # fmt: skip
    run = run_orders(
        tmp_path,
        ndjson(
            {"ref": ref.upper(), "schema": "order", "mode": "insert", "value": order_line("R-2")}
        ),
    )
    assert run.status == "failed"
    assert [r["code"] for r in report_rows(run)] == ["ref_in_use"]


def test_import_order_then_mark_ready(tmp_path, user_factory):
    run_orders(tmp_path, sample("orders.csv"), name="orders.csv")
    reviewer = user_factory("reviewer", perms=("records.review_order",))
    result = records_mark_ready(model=Order, queryset=Order.objects.all(), user=reviewer)
    assert result.changed == 2


def test_retention_purges_the_people_of_a_delivered_order_and_keeps_the_rest(tmp_path):
    run_orders(tmp_path, sample("orders.csv"), name="orders.csv")
    order = Order.objects.get(reference_id="B94TXY-1")
    Order.objects.filter(pk=order.pk).update(
        delivery_status=DeliveryStatus.DELIVERED,
        delivered_hash=order.value_hash,
        delivered_at=timezone.now() - timedelta(days=40),
    )
    result = records_purge(cutoff=retention_cutoff(30))
    assert result.records["orders"] == 1
    order.refresh_from_db()
    assert (order.contact, order.consumers, order.contact_identity_key) == ({}, [], "")
    assert order.cdp_value == ""
    assert order.purged_at is not None
    assert (order.reference_id, order.items.count()) == ("B94TXY-1", 2)
    # Never selected again: its value hash is still the delivered one.
    assert order.value_hash == order.delivered_hash


def test_order_of_an_erased_person_is_invalid_and_never_ready(tmp_path, user_factory):
    run_orders(tmp_path, ndjson(order_line("R-1"), order_line("R-2")))
    Order.objects.filter(reference_id="R-2").update(
        contact={"identifiers": [{"provider": "email", "id": "other@example.com"}]}
    )
    stager = user_factory("eraser", perms=("records.add_guestdeletion",))
    # A request made after the import marks the staged order; one made before, the import.
    guest_deletion_request(identifiers=[("email", "ada@example.com")], gdpr=True, user=stager)
    first = Order.objects.get(reference_id="R-1")
    assert first.review_status == ReviewStatus.INVALID
    assert [e["code"] for e in first.validation_errors] == [SUPPRESSED_CODE]
    assert Order.objects.get(reference_id="R-2").review_status == ReviewStatus.NEW
    again = run_orders(tmp_path, ndjson(order_line("R-3")))
    assert again.status == "succeeded"
    assert Order.objects.get(reference_id="R-3").review_status == ReviewStatus.INVALID
    reviewer = user_factory("ord-rev", perms=("records.review_order",))
    result = records_mark_ready(model=Order, queryset=Order.objects.all(), user=reviewer)
    assert (result.changed, result.skipped_invalid) == (1, 2)
