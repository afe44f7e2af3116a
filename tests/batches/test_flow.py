"""The whole flow with the real parts: PostgreSQL, Redis, `rqworker batches --with-scheduler`
and the HTTPS sandbox. What CDP received is read from the sandbox's inspection endpoint, not
from what the app believes it sent."""

from __future__ import annotations

import os
import signal
from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command

from batches import services
from batches.models import Batch, BatchEvent, BatchFile, BatchItem
from cdpstage.errors import ApplicationError
from records.models import DeliveryStatus, Guest
from records.selectors import in_live_batch, live_batch_of
from records.serializing import value_hash
from tests.batches.conftest import descendants, make_ready_guests, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FINAL = {"succeeded", "partially_failed", "failed"}


def _status(batch: Batch) -> str:
    return Batch.objects.values_list("status", flat=True).get(pk=batch.pk)


def build_and_approve(stager, approver, *, timeout: float = 60) -> Batch:
    batch = services.batch_create(schema="guest", user=stager)
    wait_for(lambda: _status(batch) in ("built", "failed"), timeout=timeout, what="the build")
    batch.refresh_from_db()
    assert batch.status == "built", batch.message
    services.batch_approve(batch=batch, user=approver)
    return batch


def send_and_wait(batch: Batch, approver, *, timeout: float = 90) -> Batch:
    services.batch_send(batch=batch, user=approver)
    wait_for(lambda: _status(batch) in FINAL, timeout=timeout, what="the batch to end")
    batch.refresh_from_db()
    return batch


def arrived_refs(sandbox, batch: Batch) -> Counter:
    """Record refs CDP received in every live file of the batch (by the sandbox's account)."""
    refs: Counter = Counter()
    for batch_file in BatchFile.objects.filter(batch=batch):
        try:
            seen = sandbox.control.batch(str(batch_file.batch_ref))
        except Exception:  # never allocated at CDP
            continue
        if seen["status"] in ("success", "error"):
            refs.update(record["ref"] for record in seen["records"])
    return refs


def assert_everything_delivered_once(sandbox, batch: Batch, guests: list[Guest]) -> None:
    refs = arrived_refs(sandbox, batch)
    assert set(refs) == {str(g.ref) for g in guests}
    assert max(refs.values()) == 1, "a record arrived twice"
    # No bytes went up twice under one ref, and no file went under two live refs.
    for batch_file in BatchFile.objects.filter(batch=batch, status="success"):
        assert sandbox.control.batch(str(batch_file.batch_ref))["upload_count"] == 1


def test_flow_happy_path_delivers_every_record_once(
    sandbox, batches_worker, stager, approver, settings
):
    settings.CDP_MAX_FILE_BYTES = 2_500  # several files, sent one at a time
    guests = make_ready_guests(200)
    batches_worker(CDP_MAX_FILE_BYTES="2500")
    batch = build_and_approve(stager, approver)
    assert batch.file_count > 1
    batch = send_and_wait(batch, approver)

    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    assert batch.records_delivered == 200
    assert_everything_delivered_once(sandbox, batch, guests)
    assert set(BatchItem.objects.values_list("outcome", flat=True)) == {"delivered"}
    for guest in Guest.objects.all():
        assert guest.delivery_status == DeliveryStatus.DELIVERED
        assert guest.delivered_hash == guest.value_hash
        assert live_batch_of(model=Guest, record_id=guest.pk) is None
    # One file at a time: each allocation came after the previous file ended.
    files = list(BatchFile.objects.filter(batch=batch).order_by("sequence"))
    for earlier, later in zip(files, files[1:], strict=False):
        allocated = BatchEvent.objects.filter(file=later, to_status="allocated").get().created_at
        assert allocated >= earlier.finished_at
    calls = BatchEvent.objects.filter(kind="cdp_call")
    assert calls.filter(method="PUT", path__startswith="/v2/batches/").count() == len(files)
    assert not calls.filter(path__contains="?").exists()
    # The profiles CDP holds now carry our records.
    emails = {p["fields"].get("email") for p in sandbox.control.profiles()}
    assert {g.email for g in guests} <= emails


def test_flow_rejected_records_get_their_outcome_and_can_be_resent_when_fixed(
    sandbox, batches_worker, stager, approver
):
    guests = make_ready_guests(20)
    rejected = guests[3:6]
    sandbox.control.fault(
        fail_records={
            str(g.ref): {"code": "400", "message": "Validation error"} for g in rejected[:2]
        }
    )
    # One record CDP itself cannot identify (a provider that is not an identity rule).
    odd = rejected[2]
    text = odd.cdp_value.replace('"provider":"email"', '"provider":"LOYALTY"')
    Guest.objects.filter(pk=odd.pk).update(cdp_value=text, value_hash=value_hash(text))
    batches_worker()
    batch = send_and_wait(build_and_approve(stager, approver), approver)

    assert batch.status == Batch.Status.PARTIALLY_FAILED
    assert (batch.records_delivered, batch.records_rejected, batch.records_failed) == (17, 3, 0)
    items = {str(i.record_ref): i for i in BatchItem.objects.all()}
    assert (items[str(rejected[0].ref)].code, items[str(rejected[0].ref)].message) == (
        "400",
        "Validation error",
    )
    assert items[str(odd.ref)].outcome == "rejected"
    assert "identifying" in items[str(odd.ref)].message
    statuses = dict(Guest.objects.values_list("pk", "delivery_status"))
    assert {statuses[g.pk] for g in rejected} == {DeliveryStatus.REJECTED}
    assert sum(1 for s in statuses.values() if s == DeliveryStatus.DELIVERED) == 17
    assert not in_live_batch(Guest.objects.all()).exists()
    error_file = BatchFile.objects.get(batch=batch)
    assert error_file.status == "error"
    assert error_file.error_log.name.endswith(".log.gz")
    assert "rejected 3 of 20" in error_file.message

    # Unchanged rejected records are not re-sent; a fixed one is.
    with pytest.raises(ApplicationError, match="must be fixed"):
        services.batch_resend(batch=batch, user=stager)
    fixed = odd.cdp_value
    Guest.objects.filter(pk=odd.pk).update(cdp_value=fixed, value_hash=value_hash(fixed))
    resend = services.batch_resend(batch=batch, user=stager)
    wait_for(lambda: _status(resend) == "built", what="the re-send build")
    resend.refresh_from_db()
    assert resend.resend_of == batch
    assert list(
        BatchItem.objects.filter(file__batch=resend).values_list("record_id", flat=True)
    ) == [odd.pk]
    services.batch_approve(batch=resend, user=approver)
    resend = send_and_wait(resend, approver)
    assert resend.status == Batch.Status.SUCCEEDED
    assert Guest.objects.get(pk=odd.pk).delivery_status == DeliveryStatus.DELIVERED


def test_flow_transient_faults_are_retried_with_back_off(sandbox, batches_worker, stager, approver):
    guests = make_ready_guests(10)
    sandbox.control.fault(
        faults=[
            {"target": "allocate", "kind": "503", "count": 2},
            {"target": "upload", "kind": "reset", "count": 1},
            {"target": "status", "kind": "429", "count": 1, "retry_after": 2},
        ]
    )
    batches_worker()
    batch = send_and_wait(build_and_approve(stager, approver), approver)

    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    assert_everything_delivered_once(sandbox, batch, guests)
    notes = list(
        BatchEvent.objects.filter(message__contains="Next try").values_list("message", flat=True)
    )
    assert len(notes) == 4
    assert any("HTTP 429" in note and "in 2 s" in note for note in notes)
    answered = list(
        BatchEvent.objects.filter(kind="cdp_call", path__startswith="/v2/").values_list(
            "method", "http_status"
        )
    )
    assert answered[:3] == [("PUT", 503), ("PUT", 503), ("PUT", 201)]


def test_flow_expired_upload_url_resends_under_a_new_ref(sandbox, batches_worker, stager, approver):
    guests = make_ready_guests(10)
    # The first upload hangs past its URL's lifetime, so S3 refuses it as expired.
    sandbox.control.fault(url_lifetime=3)
    sandbox.control.fault(target="upload", kind="stall", seconds=4.5)
    batches_worker()
    batch = send_and_wait(build_and_approve(stager, approver), approver)

    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    old, new = BatchFile.objects.filter(batch=batch).order_by("id")
    assert old.status == BatchFile.Status.SUPERSEDED
    assert "expired" in old.message
    assert new.previous == old
    assert (new.md5, new.file.name, new.sequence) == (old.md5, old.file.name, old.sequence)
    assert new.batch_ref != old.batch_ref
    assert sandbox.control.batch(str(old.batch_ref))["status"] == "uploading"
    assert set(BatchItem.objects.filter(file=old).values_list("outcome", flat=True)) == {"resent"}
    assert_everything_delivered_once(sandbox, batch, guests)


def test_flow_corrupted_file_is_resent_under_a_new_ref(sandbox, batches_worker, stager, approver):
    guests = make_ready_guests(10)
    sandbox.control.fault(corrupt_next=1)
    batches_worker()
    batch = send_and_wait(build_and_approve(stager, approver), approver)

    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    old, new = BatchFile.objects.filter(batch=batch).order_by("id")
    assert old.status == BatchFile.Status.CORRUPTED
    assert new.previous == old
    assert new.status == BatchFile.Status.SUCCESS
    assert sandbox.control.batch(str(old.batch_ref))["status"] == "corrupted"
    assert_everything_delivered_once(sandbox, batch, guests)
    assert batch.records_delivered == 10


def test_flow_bad_credentials_fail_at_once_with_a_readable_reason(
    sandbox, batches_worker, stager, approver
):
    make_ready_guests(5)
    batches_worker(CDP_API_TOKEN="not-the-token")
    batch = send_and_wait(build_and_approve(stager, approver), approver)

    assert batch.status == Batch.Status.FAILED
    batch_file = BatchFile.objects.get(batch=batch)
    assert (
        batch_file.message == "CDP refused the credentials; check CDP_CLIENT_KEY and CDP_API_TOKEN."
    )
    assert "check CDP_CLIENT_KEY" in batch.message
    # No retry for a 401: one call.
    assert BatchEvent.objects.filter(kind="cdp_call").count() == 1
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {DeliveryStatus.NOT_SENT}
    assert not in_live_batch(Guest.objects.all()).exists()
    assert "not-the-token" not in str(list(BatchEvent.objects.values_list("message", "data")))


def test_flow_worker_killed_mid_upload_loses_nothing_and_sends_nothing_twice(
    sandbox, batches_worker, stager, approver, settings
):
    settings.CDP_MAX_FILE_BYTES = 2_500
    guests = make_ready_guests(120)
    # The first upload hangs in the sandbox, so the kill lands in the middle of the request.
    # Its bytes have all been sent: the sandbox takes them when the stall ends, as S3 may
    # after its client died. The lease outlives that, as the production lease (30 s) outlives
    # any request in flight, so the next attempt finds them there and does not send them again.
    sandbox.control.fault(target="upload", kind="stall", seconds=6)
    worker = batches_worker(CDP_MAX_FILE_BYTES="2500", CDP_LEASE_SECONDS="15")
    batch = build_and_approve(stager, approver)
    services.batch_send(batch=batch, user=approver)
    wait_for(
        lambda: not sandbox.control.faults()["calls"]["upload"],
        timeout=60,
        what="the upload to reach the sandbox",
    )
    # Kill the whole worker like a lost container: its process group and the work horse,
    # which RQ puts in a group of its own.
    for pid in descendants(worker.pid):
        os.kill(pid, signal.SIGKILL)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    stuck = BatchFile.objects.get(batch=batch, sequence=1)
    assert stuck.status == BatchFile.Status.ALLOCATED

    batches_worker(CDP_MAX_FILE_BYTES="2500", CDP_LEASE_SECONDS="15")
    wait_for(lambda: _status(batch) in FINAL, timeout=150, what="the batch to end")
    batch.refresh_from_db()

    assert batch.status == Batch.Status.SUCCEEDED, batch.message
    assert_everything_delivered_once(sandbox, batch, guests)
    # Every file went under exactly one ref that CDP processed.
    processed = Counter(
        f.sequence
        for f in BatchFile.objects.filter(batch=batch)
        if sandbox.control.batch(str(f.batch_ref))["status"] in ("success", "error")
    )
    assert set(processed.values()) == {1}
    assert len(processed) == batch.file_count
    assert BatchEvent.objects.filter(actor_label="reconciler", file__sequence=1).exists()


def test_flow_upload_location_on_a_foreign_host_fails_the_file_and_names_the_host(
    sandbox, batches_worker, stager, approver
):
    make_ready_guests(3)
    batches_worker()
    batch = build_and_approve(stager, approver)
    sandbox.control.fault(url_base="https://attacker.example")
    batch = send_and_wait(batch, approver)

    batch_file = BatchFile.objects.get(batch=batch)
    assert batch.status == Batch.Status.FAILED
    assert batch_file.status == BatchFile.Status.FAILED
    assert "https://attacker.example, which is not an allowed host" in batch_file.last_error
    refused = BatchEvent.objects.get(kind="cdp_call", file=batch_file, data__target="upload")
    assert refused.data["origin"] == "https://attacker.example"
    assert refused.http_status is None
    assert "?" not in refused.path
    calls = BatchEvent.objects.filter(kind="cdp_call")
    assert not calls.exclude(data__has_key="origin").exists()
    assert set(calls.values_list("data__origin", flat=True)) == {
        sandbox.base_url,
        "https://attacker.example",
    }


def accepted_at_cdp(sandbox) -> Counter:
    """How many times CDP accepted (2xx outcome) each record ref, over every batch it holds."""
    accepted: Counter = Counter()
    for summary in sandbox.control.batches():
        seen = sandbox.control.batch(summary["ref"])
        accepted.update(
            o["ref"] for o in seen.get("outcomes", []) if str(o["code"]).startswith("2")
        )
    return accepted


def test_flow_unreadable_error_log_leaves_outcomes_unknown_and_nothing_is_sent_twice(
    sandbox, batches_worker, stager, approver
):
    """Issue 11: CDP applied most records of an `error` file whose log kept answering 404; the
    records were marked "not delivered" and `batch_resend` sent them again (3,803 twice)."""
    guests = make_ready_guests(20)
    rejected = guests[:2]
    sandbox.control.fault(
        fail_records={str(g.ref): {"code": "400", "message": "Validation error"} for g in rejected}
    )
    # The log answers 404 as often as the worker tries (CDP_MAX_ATTEMPTS), then is readable.
    sandbox.control.fault(target="log", kind="404", count=3)
    batches_worker(CDP_MAX_ATTEMPTS="3")
    batch = send_and_wait(build_and_approve(stager, approver), approver)

    batch_file = BatchFile.objects.get(batch=batch)
    assert batch_file.status == BatchFile.Status.LOG_UNAVAILABLE, batch_file.message
    assert (batch_file.stats["successCount"], batch_file.stats["errorCount"]) == (18, 2)
    assert "18 applied, 2 failed" in batch_file.message
    assert "new link" not in batch_file.message + batch.message
    assert (batch.records_delivered, batch.records_failed, batch.records_unconfirmed) == (0, 0, 20)
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {
        DeliveryStatus.UNCONFIRMED
    }
    # What used to send the 18 applied records a second time is refused, and so is a new batch.
    with pytest.raises(ApplicationError, match="unknown outcome are not re-sent"):
        services.batch_resend(batch=batch, user=stager)
    with pytest.raises(ApplicationError, match="no ready guest records"):
        services.batch_create(schema="guest", user=stager)
    accepted = accepted_at_cdp(sandbox)
    assert len(sandbox.control.batches()) == 1
    assert set(accepted) == {str(g.ref) for g in guests[2:]}
    assert set(accepted.values()) == {1}

    # Later the log is readable: the command gives every record its real outcome.
    out = StringIO()
    call_command("batch_fetch_log", str(batch.pk), stdout=out)
    assert "rejected 2 of 20" in out.getvalue()
    batch.refresh_from_db()
    assert (batch.records_delivered, batch.records_rejected, batch.records_unconfirmed) == (
        18,
        2,
        0,
    )
    statuses = dict(Guest.objects.values_list("pk", "delivery_status"))
    assert {statuses[g.pk] for g in rejected} == {DeliveryStatus.REJECTED}
    assert {statuses[g.pk] for g in guests[2:]} == {DeliveryStatus.DELIVERED}
    # Only the rejected ones could go again, once fixed; nothing reached CDP twice.
    with pytest.raises(ApplicationError, match="must be fixed"):
        services.batch_resend(batch=batch, user=stager)
    assert set(accepted_at_cdp(sandbox).values()) == {1}
