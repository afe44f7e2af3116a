"""Upload, poll, outcomes, retries, dispatch and the reconciler, run in-process with a fake CDP
client (the real client is tested against the sandbox in test_client / test_flow)."""

from __future__ import annotations

import gzip
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.utils import timezone

from batches import services
from batches.client import (
    AllocateResult,
    BatchStatus,
    CdpAuthError,
    CdpTransientError,
)
from batches.models import Batch, BatchEvent, BatchFile, BatchItem
from batches.selectors import batch_sample_lines, delivery_history
from batches.services import failures, polling
from cdpstage.errors import ApplicationError
from records.models import DeliveryStatus, Guest
from records.selectors import in_live_batch, live_batch_of
from tests.batches.conftest import make_ready_guests

pytestmark = pytest.mark.django_db(transaction=True)


class FakeClient:
    """Answers like CDP would; `script` lists what each call does next (value or exception)."""

    def __init__(self) -> None:
        self.script: dict[str, list[Any]] = {"allocate": [], "upload": [], "status": [], "log": []}
        self.calls: list[str] = []
        self.uploaded: list[bytes] = []

    def _next(self, name: str, default: Any) -> Any:
        self.calls.append(name)
        step = self.script[name].pop(0) if self.script[name] else default
        if isinstance(step, Exception):
            raise step
        return step

    def allocate(self, ref, *, checksum, size):
        return self._next(
            "allocate",
            AllocateResult(
                ref=ref,
                status_code="uploading",
                location_expiry=timezone.now() + timedelta(hours=1),
                raw={"ref": ref},
                location_url="https://s3.example.test/upload?Signature=x",
            ),
        )

    def upload(self, location_url, body, *, md5_hex, size):
        self._next("upload", None)
        self.uploaded.append(body.read())

    def status(self, ref):
        return self._next("status", _status("processing"))

    def download_log(self, log_url, destination):
        data = self._next("log", b"")
        destination.write(data)
        return len(data)


def _status(code: str, *, log: str | None = None) -> BatchStatus:
    return BatchStatus(
        ref="r",
        code=code,
        stats={"totalCount": 1} if code in ("success", "error") else None,
        location_expiry=timezone.now() + timedelta(hours=1),
        raw={"status": {"code": code}},
        log_url=log,
        location_url="https://s3.example.test/upload?Signature=x",
    )


@pytest.fixture
def enqueued(monkeypatch):
    pushed: list[tuple[str, tuple, str, float]] = []
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit",
        lambda queue, func, *args, **kw: pushed.append(
            (func, args, kw["job_id"], kw.get("delay_seconds", 0))
        ),
    )
    return pushed


@pytest.fixture
def cdp(monkeypatch, settings):
    settings.CDP_BASE_URL = "https://cdp.example.test"
    settings.CDP_CLIENT_KEY, settings.CDP_API_TOKEN = "key", "token"
    settings.CDP_RETRY_INTERVALS = [3, 7]
    settings.CDP_POLL_INTERVALS = [2, 4]
    settings.CDP_MAX_ATTEMPTS = 3
    fake = FakeClient()
    monkeypatch.setattr(polling.CdpClient, "from_settings", classmethod(lambda cls, **kw: fake))
    return fake


@pytest.fixture
def sending(stager, approver, enqueued, cdp):
    """A batch of 4 guests, built, approved and sent (its first upload job enqueued)."""
    make_ready_guests(4)
    batch = services.batch_create(schema="guest", user=stager)
    services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    services.batch_approve(batch=batch, user=approver)
    services.batch_send(batch=batch, user=approver)
    return batch


def _run_next(enqueued) -> None:
    """Run the last enqueued file job, as the worker would."""
    func, args, _job_id, _delay = enqueued[-1]
    {
        "batches.jobs.batchfile_upload": services.batchfile_upload_step,
        "batches.jobs.batchfile_poll": services.batchfile_poll_step,
    }[func](file_id=args[0], attempt=args[1])


def _file(batch: Batch) -> BatchFile:
    return BatchFile.objects.filter(batch=batch).order_by("-id").first()


def test_upload_step_allocates_verifies_uploads_and_schedules_the_poll(sending, enqueued, cdp):
    assert enqueued[-1][2] == f"batchfile-{_file(sending).pk}-upload-a1"
    _run_next(enqueued)
    batch_file = _file(sending)
    assert batch_file.status == BatchFile.Status.UPLOADED
    with default_storage.open(batch_file.file.name, "rb") as stored:
        assert cdp.uploaded == [stored.read()]
    func, args, job_id, delay = enqueued[-1]
    assert (func, job_id, delay) == (
        "batches.jobs.batchfile_poll",
        f"batchfile-{args[0]}-poll-a2",
        2,
    )
    # The stored status reply carries no signature (it never had one here either).
    assert "Signature" not in str(batch_file.status_json)


def test_upload_step_refuses_a_file_changed_since_approval(sending, enqueued, cdp):
    batch_file = _file(sending)
    path = default_storage.path(batch_file.file.name)
    with open(path, "r+b") as stored:
        stored.seek(20)
        stored.write(b"\x00")
    _run_next(enqueued)
    batch_file.refresh_from_db()
    assert batch_file.status == BatchFile.Status.FAILED
    assert "no longer matches the checksum that was approved" in batch_file.message
    assert "upload" not in cdp.calls
    sending.refresh_from_db()
    assert sending.status == Batch.Status.FAILED
    assert not in_live_batch(Guest.objects.all()).exists()


def test_transient_errors_back_off_honour_retry_after_then_give_up(sending, enqueued, cdp):
    cdp.script["allocate"] = [
        CdpTransientError("CDP answered HTTP 503.", http_status=503),
        CdpTransientError("CDP answered HTTP 429.", http_status=429, retry_after=30),
        CdpTransientError("CDP answered HTTP 503.", http_status=503),
    ]
    _run_next(enqueued)
    assert enqueued[-1][2:] == (f"batchfile-{_file(sending).pk}-upload-a2", 3)
    _run_next(enqueued)
    assert enqueued[-1][3] == 30  # Retry-After beats the 7 s back-off
    _run_next(enqueued)
    batch_file = _file(sending)
    assert batch_file.status == BatchFile.Status.FAILED
    assert batch_file.message.startswith("Gave up after 3 attempts.")
    assert BatchEvent.objects.filter(file=batch_file, message__contains="Next try").count() == 2


def test_auth_error_fails_at_once(sending, enqueued, cdp):
    cdp.script["allocate"] = [
        CdpAuthError("CDP refused the credentials; check CDP_CLIENT_KEY and CDP_API_TOKEN.")
    ]
    _run_next(enqueued)
    assert _file(sending).status == BatchFile.Status.FAILED
    assert cdp.calls == ["allocate"]


def test_a_stale_attempt_cannot_claim_the_file(sending, enqueued, cdp):
    batch_file = _file(sending)
    services.schedule_file_step(file_id=batch_file.pk, step="upload", expected_attempt=1)
    services.batchfile_upload_step(file_id=batch_file.pk, attempt=1)
    assert cdp.calls == []
    services.batchfile_upload_step(file_id=batch_file.pk, attempt=2)
    services.batchfile_upload_step(file_id=batch_file.pk, attempt=2)  # a duplicate run
    assert cdp.calls == ["allocate", "upload"]


def test_resumed_upload_does_not_send_bytes_that_already_arrived(sending, enqueued, cdp):
    batch_file = _file(sending)
    services.batchfile_transition(file_id=batch_file.pk, target=BatchFile.Status.ALLOCATED)
    services.schedule_file_step(file_id=batch_file.pk, step="upload")
    cdp.script["status"] = [_status("processing")]
    _run_next(enqueued)
    assert cdp.calls == ["status"]
    assert _file(sending).status == BatchFile.Status.UPLOADED
    assert enqueued[-1][0] == "batches.jobs.batchfile_poll"


def test_success_delivers_every_record_and_ends_the_batch(sending, enqueued, cdp):
    _run_next(enqueued)
    cdp.script["status"] = [_status("processing"), _status("success")]
    _run_next(enqueued)
    assert _file(sending).status == BatchFile.Status.PROCESSING
    assert enqueued[-1][3] == 4  # the second poll interval
    _run_next(enqueued)
    sending.refresh_from_db()
    assert sending.status == Batch.Status.SUCCEEDED
    for guest in Guest.objects.all():
        assert guest.delivery_status == DeliveryStatus.DELIVERED
        assert guest.delivered_hash == guest.value_hash
        assert live_batch_of(model=Guest, record_id=guest.pk) is None
        # The retention period counts from CDP's confirmation.
        assert guest.delivered_at is not None
        assert guest.delivered_at >= sending.approved_at
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["approver@example.com", "stager@example.com"]
    assert "All 4 records were delivered." in message.body
    # A link a mail client can open: absolute, on the configured site URL.
    assert f"http://127.0.0.1:8000/admin/batches/batch/{sending.pk}/change/" in message.body
    assert "@example.com" not in message.body.replace(message.to[0], "")


def test_error_log_gives_each_record_its_outcome(sending, enqueued, cdp):
    _run_next(enqueued)
    items = list(BatchItem.objects.filter(file=_file(sending)).order_by("line"))
    log = b"".join(
        orjson.dumps(line) + b"\n"
        for line in (
            {"ref": str(items[0].record_ref), "code": "400", "message": "Validation error"},
            {"ref": str(items[1].record_ref), "code": 200, "message": "ok"},
            {"ref": "null", "code": "400", "message": "Failed to parse import line"},
            {"ref": "2b1f0f4e-0000-4000-8000-000000000000", "code": "400", "message": "x"},
        )
    )
    cdp.script["status"] = [_status("error", log="https://s3.example.test/log?Signature=s")]
    cdp.script["log"] = [gzip.compress(log)]
    _run_next(enqueued)

    batch_file = _file(sending)
    assert batch_file.status == BatchFile.Status.ERROR
    outcomes = [
        (i.outcome, i.code, i.message)
        for i in BatchItem.objects.filter(file=batch_file).order_by("line")
    ]
    assert outcomes[0] == ("rejected", "400", "Validation error")
    assert outcomes[1] == ("delivered", "200", "ok")
    # A line CDP could not attribute: the others are not known to be applied.
    assert {o[0] for o in outcomes[2:]} == {"unknown"}
    assert batch_file.file_error_count == 1
    assert batch_file.file_errors == [{"code": "400", "message": "Failed to parse import line"}]
    assert "1 log line(s) name records that are not in this file" in batch_file.message
    with default_storage.open(batch_file.error_log.name, "rb") as stored:
        assert gzip.decompress(stored.read()) == log
    sending.refresh_from_db()
    assert sending.status == Batch.Status.PARTIALLY_FAILED
    assert (
        sending.records_delivered,
        sending.records_rejected,
        sending.records_failed,
        sending.records_unconfirmed,
    ) == (1, 1, 0, 2)
    statuses = dict(Guest.objects.values_list("pk", "delivery_status"))
    assert statuses[items[0].record_id] == DeliveryStatus.REJECTED
    assert statuses[items[1].record_id] == DeliveryStatus.DELIVERED
    # Not "not sent": CDP may have applied it.
    assert statuses[items[2].record_id] == DeliveryStatus.UNCONFIRMED
    delivered_at = dict(Guest.objects.values_list("pk", "delivered_at"))
    assert delivered_at[items[0].record_id] is None  # rejected: never delivered
    assert delivered_at[items[1].record_id] is not None


def test_error_without_log_fails_every_record(sending, enqueued, cdp):
    _run_next(enqueued)
    cdp.script["status"] = [_status("error")]
    _run_next(enqueued)
    batch_file = _file(sending)
    assert batch_file.message == polling.NO_LOG_MESSAGE
    assert set(BatchItem.objects.filter(file=batch_file).values_list("outcome", flat=True)) == {
        "failed"
    }
    sending.refresh_from_db()
    assert sending.status == Batch.Status.FAILED


def test_corrupted_file_goes_again_under_a_new_ref_then_gives_up(
    sending, enqueued, cdp, monkeypatch
):
    monkeypatch.setattr(failures, "MAX_REFS_PER_FILE", 2)
    first = _file(sending)
    _run_next(enqueued)
    cdp.script["status"] = [_status("corrupted")]
    _run_next(enqueued)
    second = _file(sending)
    assert second.previous == first
    assert (second.md5, second.approved_md5, second.file.name) == (
        first.md5,
        first.approved_md5,
        first.file.name,
    )
    first.refresh_from_db()
    assert first.status == BatchFile.Status.CORRUPTED
    assert set(BatchItem.objects.filter(file=first).values_list("outcome", flat=True)) == {"resent"}
    assert BatchItem.objects.filter(file=second, outcome="pending").count() == 4
    _run_next(enqueued)  # upload under the new ref
    cdp.script["status"] = [_status("corrupted")]
    _run_next(enqueued)
    second.refresh_from_db()
    assert second.status == BatchFile.Status.FAILED
    assert "already sent under 2 refs" in second.message


def test_dispatch_keeps_at_most_max_in_flight(stager, approver, enqueued, cdp, settings):
    settings.CDP_MAX_FILE_BYTES = 2_000
    make_ready_guests(60)
    batch = services.batch_create(schema="guest", user=stager)
    services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    assert batch.file_count >= 3
    services.batch_approve(batch=batch, user=approver)
    services.batch_send(batch=batch, user=approver)
    assert BatchFile.objects.filter(dispatched_at__isnull=False).count() == 1
    assert services.batchfiles_dispatch() == 0
    settings.CDP_MAX_IN_FLIGHT = 2
    assert services.batchfiles_dispatch() == 1
    assert BatchFile.objects.filter(dispatched_at__isnull=False).count() == 2


def test_reconciler_requeues_expired_leases_and_lost_jobs_then_gives_up(sending, enqueued, cdp):
    batch_file = _file(sending)
    # The upload job "ran" (claimed) and its worker died: the lease runs out.
    assert services.batchfile_claim(file_id=batch_file.pk, attempt=1, statuses=("pending",))
    BatchFile.objects.filter(pk=batch_file.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert services.batches_reconcile()["files"] == 1
    assert enqueued[-1][2] == f"batchfile-{batch_file.pk}-upload-a2"
    assert BatchEvent.objects.filter(actor_label="reconciler", message__contains="lease").exists()
    # The job for attempt 2 never reached Redis (flushed): no need to wait for the lease.
    BatchFile.objects.filter(pk=batch_file.pk).update(
        updated_at=timezone.now() - timedelta(minutes=1)
    )
    assert services.batches_reconcile()["files"] == 1
    assert enqueued[-1][2] == f"batchfile-{batch_file.pk}-upload-a3"
    BatchFile.objects.filter(pk=batch_file.pk).update(
        updated_at=timezone.now() - timedelta(minutes=1)
    )
    services.batches_reconcile()  # third failure: CDP_MAX_ATTEMPTS is 3
    batch_file.refresh_from_db()
    assert batch_file.status == BatchFile.Status.FAILED
    assert "Gave up after 3 attempts" in batch_file.message


def test_reconciler_rebuilds_a_build_whose_worker_died(stager, enqueued):
    make_ready_guests(3)
    batch = services.batch_create(schema="guest", user=stager)
    assert services.batch_claim(batch_id=batch.pk, attempt=1)
    Batch.objects.filter(pk=batch.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.batches_reconcile()["builds"] == 1
    func, args, job_id, _ = enqueued[-1]
    assert (func, job_id) == ("batches.jobs.batch_build", f"batch-{batch.pk}-build-a2")
    services.batch_build(batch_id=batch.pk, attempt=2)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT


def test_delivery_history_names_batch_file_line_and_outcome(sending, enqueued, cdp):
    _run_next(enqueued)
    cdp.script["status"] = [_status("success")]
    _run_next(enqueued)
    guest = Guest.objects.order_by("pk").first()
    (row,) = delivery_history(guest.ref)
    assert row.batch_id == sending.pk
    assert row.line == 1
    assert row.outcome == "delivered"
    assert row.approved_by == "approver"
    assert row.batch_ref == str(_file(sending).batch_ref)


def test_batch_sample_lines_mask_personal_data(sending, approver, user_factory):
    batch_file = _file(sending)
    masked = batch_sample_lines(batch_file, user=approver)
    assert len(masked) == 3
    assert "g0@example.com" not in masked[0]
    assert '"guestType":"customer"' in masked[0]
    viewer = user_factory("viewer", perms=("records.view_pii",))
    assert "g0@example.com" in batch_sample_lines(batch_file, user=viewer)[0]


def test_reconciler_leaves_waiting_jobs_alone_and_rescues_overdue_scheduled_ones(
    sending, enqueued, cdp
):
    import django_rq

    batch_file = _file(sending)
    queue = django_rq.get_queue("batches")
    job_id = f"batchfile-{batch_file.pk}-upload-a1"
    # A real job, scheduled far ahead (so no worker runs it): RQ still has it.
    queue.enqueue_in(
        timedelta(hours=1), "batches.jobs.batchfile_upload", batch_file.pk, 1, job_id=job_id
    )
    try:
        BatchFile.objects.filter(pk=batch_file.pk).update(
            updated_at=timezone.now() - timedelta(minutes=1)
        )
        assert services.batches_reconcile()["files"] == 0  # waiting, lease not run out
        BatchFile.objects.filter(pk=batch_file.pk).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        assert services.batches_reconcile()["files"] == 1  # overdue: no live scheduler?
        batch_file.refresh_from_db()
        assert batch_file.attempt == 2
        assert batch_file.failures == 0  # waiting is not failing
        assert enqueued[-1][2:] == (f"batchfile-{batch_file.pk}-upload-a2", 0)
    finally:
        queue.scheduled_job_registry.remove(job_id, delete_job=True)


def test_error_log_that_names_no_record_leaves_outcomes_unknown(sending, enqueued, cdp):
    _run_next(enqueued)
    cdp.script["status"] = [_status("error", log="https://s3.example.test/log?Signature=s")]
    cdp.script["log"] = [gzip.compress(b"")]
    _run_next(enqueued)
    batch_file = _file(sending)
    assert set(BatchItem.objects.filter(file=batch_file).values_list("outcome", flat=True)) == {
        "unknown"
    }
    assert "names no record" in batch_file.message
    # Unknown is neither delivered nor "not sent": no new batch takes the records again.
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {
        DeliveryStatus.UNCONFIRMED
    }
    with pytest.raises(ApplicationError, match="no ready guest records"):
        services.batch_create(schema="guest", user=sending.created_by)


def test_error_log_download_refused_is_retried_with_a_fresh_status(sending, enqueued, cdp):
    from batches.client import CdpPermanentError

    _run_next(enqueued)
    log_url = "https://s3.example.test/log?Signature=s"
    cdp.script["status"] = [_status("error", log=log_url), _status("error", log=log_url)]
    cdp.script["log"] = [
        CdpPermanentError("CDP refused the request (HTTP 403: AccessDenied)."),
        gzip.compress(b""),
    ]
    _run_next(enqueued)
    batch_file = _file(sending)
    assert batch_file.status == BatchFile.Status.UPLOADED  # not failed: tried again
    assert batch_file.failures == 1
    assert enqueued[-1][0] == "batches.jobs.batchfile_poll"
    _run_next(enqueued)
    assert _file(sending).status == BatchFile.Status.ERROR


def test_a_build_that_loses_its_lease_leaves_no_stored_files(stager, enqueued, monkeypatch):
    from batches.services import building

    make_ready_guests(3)
    batch = services.batch_create(schema="guest", user=stager)
    real_record = building._record_build

    def cancelled_meanwhile(batch, attempt, parts, folder):
        services.batch_cancel(batch=batch, user=stager)
        return real_record(batch, attempt, parts, folder)

    monkeypatch.setattr(building, "_record_build", cancelled_meanwhile)
    services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.CANCELLED
    assert not BatchFile.objects.exists()
    _, files = default_storage.listdir(f"batches/batch-{batch.pk:06d}/a1")
    assert files == []


def _poll_until_log_unavailable(batch: Batch, enqueued, cdp) -> BatchFile:
    """Upload, then poll while CDP says `error` and its log answers 404 every time."""
    from batches.client import CdpPermanentError

    _run_next(enqueued)  # upload
    log_url = "https://s3.example.test/log?Signature=s"
    for _ in range(3):  # CDP_MAX_ATTEMPTS of the cdp fixture
        cdp.script["status"] = [_status("error", log=log_url)]
        cdp.script["log"] = [CdpPermanentError("CDP refused the request (HTTP 404: NoSuchKey).")]
        _run_next(enqueued)
    return _file(batch)


def test_error_log_that_cannot_be_fetched_leaves_outcomes_unknown_not_undelivered(
    sending, enqueued, cdp
):
    batch_file = _poll_until_log_unavailable(sending, enqueued, cdp)

    assert batch_file.status == BatchFile.Status.LOG_UNAVAILABLE
    assert batch_file.stats == {"totalCount": 1}  # CDP's counts are kept
    assert "could not be fetched after 3 attempts" in batch_file.message
    assert "new link" not in batch_file.message
    assert "batch_fetch_log" in batch_file.message
    retries = BatchEvent.objects.filter(message__contains="Asking CDP for a fresh link")
    assert retries.count() == 2
    assert set(BatchItem.objects.filter(file=batch_file).values_list("outcome", flat=True)) == {
        "unknown"
    }
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {
        DeliveryStatus.UNCONFIRMED
    }
    sending.refresh_from_db()
    assert sending.is_finished
    assert (sending.records_failed, sending.records_unconfirmed) == (0, 4)
    assert "of unknown outcome" in sending.message
    # Not offered for re-send as "not delivered", nor taken by a new batch.
    with pytest.raises(ApplicationError, match="unknown outcome are not re-sent"):
        services.batch_resend(batch=sending, user=sending.created_by)
    with pytest.raises(ApplicationError, match="no ready guest records"):
        services.batch_create(schema="guest", user=sending.created_by)


def test_error_log_fetched_later_gives_the_unknown_records_their_outcomes(
    sending, enqueued, cdp, approver
):
    batch_file = _poll_until_log_unavailable(sending, enqueued, cdp)
    items = list(BatchItem.objects.filter(file=batch_file).order_by("line"))
    log = orjson.dumps({"ref": str(items[0].record_ref), "code": "400", "message": "Bad"}) + b"\n"
    cdp.script["status"] = [_status("error", log="https://s3.example.test/log?Signature=t")]
    cdp.script["log"] = [gzip.compress(log)]

    summary = services.batchfile_log_fetch(batch_file=batch_file, user=approver)

    assert "rejected 1 of 4" in summary
    batch_file.refresh_from_db()
    assert batch_file.status == BatchFile.Status.ERROR
    assert batch_file.error_log.name.endswith(".log.gz")
    outcomes = list(
        BatchItem.objects.filter(file=batch_file).order_by("line").values_list("outcome", flat=True)
    )
    assert outcomes == ["rejected", "delivered", "delivered", "delivered"]
    statuses = dict(Guest.objects.values_list("pk", "delivery_status"))
    assert statuses[items[0].record_id] == DeliveryStatus.REJECTED
    assert {statuses[i.record_id] for i in items[1:]} == {DeliveryStatus.DELIVERED}
    sending.refresh_from_db()
    counts = (
        sending.records_delivered,
        sending.records_rejected,
        sending.records_failed,
        sending.records_unconfirmed,
    )
    assert counts == (3, 1, 0, 0)
    assert BatchEvent.objects.filter(
        batch=sending, actor=approver, message__startswith="Outcomes recounted"
    ).exists()
    with pytest.raises(ApplicationError, match="only a file whose error log"):
        services.batchfile_log_fetch(batch_file=batch_file)


def test_error_log_fetch_that_fails_again_keeps_outcomes_unknown(sending, enqueued, cdp):
    from batches.client import CdpPermanentError

    batch_file = _poll_until_log_unavailable(sending, enqueued, cdp)
    cdp.script["status"] = [_status("error", log="https://s3.example.test/log?Signature=t")]
    cdp.script["log"] = [CdpPermanentError("CDP refused the request (HTTP 404: NoSuchKey).")]
    with pytest.raises(ApplicationError, match="still cannot be fetched"):
        services.batchfile_log_fetch(batch_file=batch_file)
    assert _file(sending).status == BatchFile.Status.LOG_UNAVAILABLE
    assert set(Guest.objects.values_list("delivery_status", flat=True)) == {
        DeliveryStatus.UNCONFIRMED
    }


def test_resend_of_unknown_outcomes_is_an_explicit_choice_for_guests(sending, enqueued, cdp):
    _poll_until_log_unavailable(sending, enqueued, cdp)
    sending.refresh_from_db()
    resend = services.batch_resend(batch=sending, user=sending.created_by, include_unconfirmed=True)
    services.batch_build(batch_id=resend.pk, attempt=1)
    resend.refresh_from_db()
    assert resend.resend_unconfirmed
    assert resend.records_total == 4


def test_resend_of_unknown_tracking_events_is_refused(stager, approver, enqueued, cdp):
    from tests.batches.conftest import make_ready_tracking

    make_ready_tracking(3)
    batch = services.batch_create(schema="tracking", user=stager)
    services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    services.batch_approve(batch=batch, user=approver)
    services.batch_send(batch=batch, user=approver)
    _poll_until_log_unavailable(batch, enqueued, cdp)
    batch.refresh_from_db()
    assert batch.records_unconfirmed == 3
    with pytest.raises(ApplicationError, match="could record them twice"):
        services.batch_resend(batch=batch, user=stager, include_unconfirmed=True)
