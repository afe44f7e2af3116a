"""The batches admin: create, inspect (files, samples masked, timeline), approve with four
eyes, nothing editable or deletable, downloads gated, delivery history on record pages."""

import pytest
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from batches import selectors, services
from batches.models import Batch, BatchEvent, BatchFile, BatchItem
from records.models import BatchMembership, Guest
from tests.batches.conftest import make_ready_guests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )


@pytest.fixture
def built(stager):
    make_ready_guests(6)
    batch = services.batch_create(schema="guest", user=stager)
    services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    return batch


def _login(client, user):
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    client.force_login(user)
    return client


def test_admin_create_batch_through_the_service(client, stager):
    make_ready_guests(2)
    _login(client, stager)
    response = client.post(reverse("admin:batches_batch_add"), {"schema": "guest", "note": "t"})
    batch = Batch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:batches_batch_change", args=[batch.pk])
    assert batch.created_by == stager
    assert not batch.include_unchanged  # a delta send unless asked
    assert b'name="include_unchanged"' in client.get(reverse("admin:batches_batch_add")).content
    # Nothing ready any more: a readable error, no batch.
    response = client.post(reverse("admin:batches_batch_add"), {"schema": "tracking"}, follow=True)
    assert b"no ready tracking records" in response.content
    assert Batch.objects.count() == 1


def test_admin_approver_sees_files_checksums_masked_samples_and_approves(client, built, approver):
    _login(client, approver)
    url = reverse("admin:batches_batch_change", args=[built.pk])
    page = client.get(url).content.decode()
    batch_file = BatchFile.objects.get(batch=built)
    assert batch_file.md5 in page
    assert str(batch_file.batch_ref) in page
    assert "Validation summary" in page
    assert "personal data masked" in page
    assert "g0@example.com" not in page  # the first guest's email, masked in the sample
    assert "Approve this batch" in page
    response = client.post(reverse("admin:batches_batch_approve", args=[built.pk]), follow=True)
    assert b"approved" in response.content
    built.refresh_from_db()
    assert built.status == Batch.Status.APPROVED
    assert built.approved_by == approver
    # With view_pii the same sample is shown as sent.
    from django.contrib.auth.models import Permission

    approver.user_permissions.add(Permission.objects.get(codename="view_pii"))
    assert "g0@example.com" in client.get(url).content.decode()


def test_admin_creator_cannot_approve_even_by_posting(client, built, stager, approver):
    from django.contrib.auth.models import Permission

    stager.user_permissions.add(Permission.objects.get(codename="approve_batch"))
    _login(client, stager)
    page = client.get(reverse("admin:batches_batch_change", args=[built.pk])).content.decode()
    assert "Approve this batch" not in page
    response = client.post(reverse("admin:batches_batch_approve", args=[built.pk]), follow=True)
    assert b"someone other than the person who created it" in response.content
    assert Batch.objects.get(pk=built.pk).status == Batch.Status.BUILT


def test_admin_nothing_can_be_changed_or_deleted_even_by_a_superuser(
    client, built, django_user_model
):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    batch_file = BatchFile.objects.get(batch=built)
    item = BatchItem.objects.first()
    event = BatchEvent.objects.first()
    for model, pk in (
        ("batch", built.pk),
        ("batchfile", batch_file.pk),
        ("batchitem", item.pk),
        ("batchevent", event.pk),
    ):
        assert client.get(reverse(f"admin:batches_{model}_delete", args=[pk])).status_code == 403
        response = client.post(reverse(f"admin:batches_{model}_change", args=[pk]), {})
        assert response.status_code == 403
    # The change list offers no bulk delete either.
    page = client.get(reverse("admin:batches_batch_changelist")).content.decode()
    assert "delete_selected" not in page
    assert Batch.objects.filter(pk=built.pk).exists()


def test_admin_download_of_the_file_sent_needs_view_pii(client, built, approver):
    from django.contrib.auth.models import Permission

    _login(client, approver)
    batch_file = BatchFile.objects.get(batch=built)
    url = reverse("admin:batches_batchfile_download", args=[batch_file.pk])
    assert client.get(url).status_code == 403
    approver.user_permissions.add(Permission.objects.get(codename="view_pii"))
    response = client.get(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert __import__("hashlib").md5(body).hexdigest() == batch_file.md5


def test_admin_guest_page_shows_delivery_history(client, built, user_factory):
    auditor = user_factory("auditor", perms=("records.view_guest", "batches.view_batch"))
    _login(client, auditor)
    item = BatchItem.objects.order_by("line").first()
    page = client.get(reverse("admin:records_guest_change", args=[item.record_id])).content.decode()
    assert "Delivery history" in page
    assert f"Batch {built.pk}" in page
    assert str(item.file.batch_ref) in page


# ---- the batch page tells the truth at a glance (issue 12) ----------------------------------


def test_admin_approve_send_cancel_ask_for_confirmation_first(client, built, approver):
    _login(client, approver)
    url = reverse("admin:batches_batch_approve", args=[built.pk])
    page = client.get(url).content.decode()
    # The GET only asks: it says what approving does and changes nothing.
    assert "Yes, approve this batch" in page
    assert "You approve these 6 records in 1 file" in page
    assert BatchFile.objects.get(batch=built).md5 in page
    assert Batch.objects.get(pk=built.pk).status == Batch.Status.BUILT
    client.post(url)
    assert Batch.objects.get(pk=built.pk).status == Batch.Status.APPROVED
    page = client.get(reverse("admin:batches_batch_send", args=[built.pk])).content.decode()
    assert "Yes, send to cdp" in page
    assert "cannot be undone" in page
    page = client.get(reverse("admin:batches_batch_cancel", args=[built.pk])).content.decode()
    assert "Yes, cancel this batch" in page
    assert "Its 6 records are freed" in page
    assert Batch.objects.get(pk=built.pk).status == Batch.Status.APPROVED


def test_admin_confirm_page_refused_to_whoever_may_not_act(client, built, stager):
    _login(client, stager)  # the creator: four eyes
    response = client.get(reverse("admin:batches_batch_approve", args=[built.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:batches_batch_change", args=[built.pk])
    assert f"Batch {built.pk} cannot be approved by you now" in response.content.decode()


def test_admin_built_batch_has_no_full_bar_human_size_and_readable_summary(client, built, approver):
    Batch.objects.filter(pk=built.pk).update(
        validation_summary={
            **built.validation_summary,
            "top_problems": [{"code": "date_not_in_past", "count": 6}, {"code": "x_y", "count": 1}],
        }
    )
    _login(client, approver)
    page = client.get(reverse("admin:batches_batch_change", args=[built.pk])).content.decode()
    assert 'id="batch-bar"' not in page  # nothing is moving: no bar claiming 100 %
    assert "6 records in 1 file (" in page
    assert "waiting for approval" in page
    size = BatchFile.objects.get(batch=built).size
    assert f'title="{size} bytes"' in page
    assert " KB</td>" in page or " bytes</td>" in page
    assert "Date in the future: 6 records" in page
    assert "X y: 1 record<" in page
    assert "date_not_in_past" not in page
    assert "Ready: " in page
    assert "1 records" not in page
    assert "Build took" in page


def test_admin_building_batch_without_counts_says_so(client, stager):
    make_ready_guests(2)
    batch = services.batch_create(schema="guest", user=stager)
    _login(client, stager)
    page = client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert "0 of 0" not in page
    assert "Waiting for a worker to start the build." in page
    Batch.objects.filter(pk=batch.pk).update(status=Batch.Status.BUILDING)
    page = client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert "Selecting the ready records" in page
    assert "0 of 0" not in page


def test_admin_cancelled_batch_files_read_not_sent(client, built, stager):
    services.batch_cancel(batch=built, user=stager)
    _login(client, stager)
    page = client.get(reverse("admin:batches_batch_change", args=[built.pk])).content.decode()
    assert "Failed (we gave up)" not in page
    assert "Not sent (batch cancelled)" in page
    assert "before anything was sent to CDP" in page
    assert 'id="batch-bar"' not in page


def test_admin_retry_reason_shown_at_the_top_while_cdp_is_retried(client, built, approver):
    reason = "CDP answered HTTP 503: Service temporarily unavailable. It will be tried again."
    Batch.objects.filter(pk=built.pk).update(status=Batch.Status.UPLOADING)
    BatchFile.objects.filter(batch=built).update(
        status=BatchFile.Status.PENDING, failures=2, last_error=reason
    )
    _login(client, approver)
    page = client.get(reverse("admin:batches_batch_change", args=[built.pk])).content.decode()
    note = page.index('class="retry-note"')
    assert page.index('id="batch-progress"') < note < page.index('id="batch-files"')
    assert f"File 1: {reason}" in page
    assert "try 3 of 8" in page


def test_admin_cdp_messages_masked_and_error_log_only_with_view_pii(client, built, user_factory):
    """CDP's reasons quote the record ("Invalid email 'ada@…'"): not for eyes without view_pii."""
    from django.contrib.auth.models import Permission
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    item = BatchItem.objects.order_by("line").first()
    # Outcomes are written only for a batch that was sent (batches migration 0011).
    Batch.objects.filter(pk=built.pk).update(status=Batch.Status.PROCESSING, sent_at=timezone.now())
    BatchItem.objects.filter(pk=item.pk).update(
        outcome="rejected", code="400", message="Invalid email 'zed.quoted@example.org'"
    )
    log_name = default_storage.save("error-logs/x.gz", ContentFile(b"log"))
    BatchFile.objects.filter(pk=item.file_id).update(error_log=log_name)
    auditor = user_factory("auditor", groups=("Auditor",))
    _login(client, auditor)
    pages = [
        client.get(reverse("admin:batches_batchitem_changelist")).text,
        client.get(reverse("admin:batches_batchitem_change", args=[item.pk])).text,
        client.get(reverse("admin:records_guest_change", args=[item.record_id])).text,
        client.get(reverse("admin:batches_batch_change", args=[built.pk])).text,
    ]
    log_url = reverse("admin:batches_batchfile_log", args=[item.file_id])

    for page in pages[:3]:
        assert "Invalid email ***" in page
    for page in pages:
        assert "zed.quoted" not in page
    assert log_url not in pages[3]
    assert client.get(log_url).status_code == 403

    auditor.user_permissions.add(Permission.objects.get(codename="view_pii"))
    assert (
        "zed.quoted@example.org" in client.get(reverse("admin:batches_batchitem_changelist")).text
    )
    assert client.get(log_url).status_code == 200


def test_admin_progress_json_matches_the_page_and_carries_the_retries(client, built, approver):
    """The page polls this instead of reloading itself: the same texts as the page."""
    reason = "CDP answered HTTP 503: Service temporarily unavailable. It will be tried again."
    Batch.objects.filter(pk=built.pk).update(status=Batch.Status.UPLOADING)
    BatchFile.objects.filter(batch=built).update(
        status=BatchFile.Status.PENDING, failures=1, last_error=reason
    )
    _login(client, approver)
    page = client.get(reverse("admin:batches_batch_change", args=[built.pk])).content.decode()
    box = client.get(reverse("admin:batches_batch_progress", args=[built.pk])).json()
    assert box["phase"] == "Uploading"
    assert box["text"] == "0 of 1 file finished at CDP"
    assert box["retries"] == [f"File 1: {reason} (try 2 of 8; the next one starts by itself)."]
    assert box["live"] is True
    assert f'<p id="batch-progress-text">{box["text"]}</p>' in page
    assert 'http-equiv="refresh"' not in page
    assert 'data-live="1"' in page


def test_admin_progress_json_needs_view_permission(client, built, user_factory):
    client.force_login(user_factory("nobody", is_staff=True))
    assert client.get(reverse("admin:batches_batch_progress", args=[built.pk])).status_code == 403


@pytest.fixture
def partially_failed(built):
    """The built batch as CDP left it: two lines delivered, three rejected (an identity
    problem, a validation error, a CDP-side 500), one guest fixed since."""
    items = list(BatchItem.objects.filter(file__batch=built).order_by("line"))
    answers = [
        ("delivered", "", ""),
        ("delivered", "", ""),
        ("rejected", "400", "Not enough identifying information"),
        ("rejected", "400", "Validation error"),
        ("rejected", "400", "Validation error"),
        ("rejected", "500", "Internal error"),
    ]
    # Outcomes are written only for a batch that was sent (batches migration 0011).
    Batch.objects.filter(pk=built.pk).update(status=Batch.Status.PROCESSING, sent_at=timezone.now())
    for item, (outcome, code, message) in zip(items, answers, strict=True):
        BatchItem.objects.filter(pk=item.pk).update(outcome=outcome, code=code, message=message)
    Batch.objects.filter(pk=built.pk).update(
        status=Batch.Status.PARTIALLY_FAILED, records_delivered=2, records_rejected=4
    )
    BatchFile.objects.filter(batch=built).update(status=BatchFile.Status.ERROR)
    # Guests leave the batch when it ends: rejected ones are free, one was fixed since.
    BatchMembership.objects.update(live=False)
    for item, (outcome, _, _) in zip(items, answers, strict=True):
        Guest.objects.filter(pk=item.record_id).update(delivery_status=outcome)
    Guest.objects.filter(pk=items[3].record_id).update(value_hash="0" * 32)
    built.refresh_from_db()
    return built, items


def _rejected_table(page: str) -> str:
    start = page.index('id="batch-rejected-table"')
    return page[start : page.index("</table>", start)]


def test_admin_rejected_records_table_grouped_masked_filterable(client, partially_failed, approver):
    batch, items = partially_failed
    _login(client, approver)
    url = reverse("admin:batches_batch_change", args=[batch.pk])
    page = client.get(url).content.decode()
    assert "Rejected records (4) · personal data masked" in page
    groups = page[
        page.index('id="batch-rejection-groups"') : page.index('id="batch-rejected-table"')
    ]
    # Largest group first, each with its plain-language meaning and CDP's own words.
    assert groups.index("A value CDP does not accept") < groups.index("CDP could not tell who")
    assert "2 records" in groups
    assert "400 “Validation error”" in groups
    assert "CDP failed on its side" in groups
    assert "Re-sending takes the record as it is" in groups
    table = _rejected_table(page)
    guest = Guest.objects.get(pk=items[2].record_id)
    assert guest.email not in page
    assert reverse("admin:records_guest_change", args=[guest.pk]) in table
    assert "Not enough identifying information" in table
    only = client.get(url, {"rejected": "cdp_side"}).content.decode()
    table = _rejected_table(only)
    assert table.count("<tr>") == 2  # header + the one 500
    assert "Internal error" in table
    assert "Validation error" not in table


def test_admin_rejected_records_csv(client, partially_failed, approver):
    batch, items = partially_failed
    _login(client, approver)
    response = client.get(reverse("admin:batches_batch_rejected_csv", args=[batch.pk]))
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert (
        response["Content-Disposition"] == f'attachment; filename="batch-{batch.pk}-rejected.csv"'
    )
    assert lines[0] == "file,batch_ref,line,record_ref,record_id,record,code,meaning,message"
    assert len(lines) == 5
    assert f",{items[2].record_ref},{items[2].record_id}," in lines[1]
    assert "@example.com" not in "\n".join(lines[1:]).replace("***", "")
    only = client.get(
        reverse("admin:batches_batch_rejected_csv", args=[batch.pk]), {"rejected": "validation"}
    )
    assert len(b"".join(only.streaming_content).decode().splitlines()) == 3


def test_admin_resend_is_for_whoever_may_create_batches_and_says_what_it_takes(
    client, partially_failed, user_factory
):
    batch, _ = partially_failed
    colleague = user_factory(
        "colleague", perms=("batches.add_batch", "batches.view_batch"), is_staff=True
    )
    client.force_login(colleague)
    page = client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert "Re-send undelivered records…" in page
    confirm = client.get(reverse("admin:batches_batch_resend", args=[batch.pk])).content.decode()
    # Takes the 500 as it is and the fixed one; leaves out the two rejected unchanged.
    assert "A new batch is created and built with 2 records of batch" in confirm
    assert (
        "1 record CDP failed on its side (5xx) as they are, and 1 rejected record fixed" in confirm
    )
    assert "It leaves out 2 rejected records not changed since CDP rejected them" in confirm
    assert Batch.objects.count() == 1
    response = client.post(reverse("admin:batches_batch_resend", args=[batch.pk]))
    assert response.status_code == 302
    resend = Batch.objects.get(resend_of=batch)
    assert resend.created_by == colleague
    viewer = user_factory("viewer", perms=("batches.view_batch",), is_staff=True)
    client.force_login(viewer)
    page = client.get(reverse("admin:batches_batch_change", args=[batch.pk])).content.decode()
    assert "Re-send undelivered records" not in page


def test_admin_guest_list_filters_and_shows_the_cdp_outcome(client, partially_failed, approver):
    batch, items = partially_failed
    from django.contrib.auth.models import Permission

    approver.user_permissions.add(Permission.objects.get(codename="view_guest"))
    _login(client, approver)
    url = reverse("admin:records_guest_changelist")
    page = client.get(url).content.decode()
    assert "CDP rejected it for" in page
    assert "Rejected by CDP<br><small>400 Validation error</small>" in page
    assert "Rejected by CDP<br><small>500 Internal error</small>" in page
    assert '?cdp_rejected=identity"' in page
    only = client.get(url, {"cdp_rejected": "validation"}).content.decode()
    assert only.count("400 Validation error") == 2
    assert "500 Internal error" not in only
    assert "Not enough identifying information" not in only


def test_admin_create_page_says_how_many_records_each_kind_would_take(client, stager):
    ready = make_ready_guests(3)
    Guest.objects.filter(pk=ready[0].pk).update(delivered_hash=F("value_hash"))  # CDP has it
    _login(client, stager)
    page = client.get(reverse("admin:batches_batch_add")).content.decode()
    row = page.split('data-schema="guest"')[1].split("</tr>")[0]
    assert '<td class="changed">2</td>' in row  # delta: the delivered unchanged one is left out
    assert '<td class="everything">3</td>' in row
    tracking = page.split('data-schema="tracking"')[1].split("</tr>")[0]
    assert '<td class="changed">0</td>' in tracking


def test_admin_create_page_caps_its_counts(client, stager, monkeypatch):
    make_ready_guests(3)
    monkeypatch.setattr(selectors, "CANDIDATES_COUNT_CAP", 2)
    _login(client, stager)
    page = client.get(reverse("admin:batches_batch_add")).content.decode()
    row = page.split('data-schema="guest"')[1].split("</tr>")[0]
    assert '<td class="everything">more than 2</td>' in row
