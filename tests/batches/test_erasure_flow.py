"""Erasure over the real wire: guests delivered, then deleted at the HTTPS sandbox, with a real
worker; what CDP received and holds is read from the sandbox's inspection endpoints."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from batches import services
from batches.models import Batch, BatchFile
from batches.selectors import batch_sample_lines
from records.models import ErasureStatus, Guest, GuestDeletion, ReviewStatus
from records.services.erasure import guest_deletion_request
from tests.batches.conftest import wait_for
from tests.records.factories import GuestFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FINAL = {"succeeded", "partially_failed", "failed"}


def _run(schema: str, stager, approver) -> Batch:
    batch = services.batch_create(schema=schema, user=stager)
    wait_for(
        lambda: Batch.objects.get(pk=batch.pk).status in ("built", "failed"),
        timeout=60,
        what="the build",
    )
    batch.refresh_from_db()
    assert batch.status == "built", batch.message
    services.batch_approve(batch=batch, user=approver)
    services.batch_send(batch=batch, user=approver)
    wait_for(lambda: Batch.objects.get(pk=batch.pk).status in FINAL, timeout=90, what="the batch")
    batch.refresh_from_db()
    return batch


def _lines(sandbox, batch: Batch) -> list[dict]:
    lines = []
    for batch_file in BatchFile.objects.filter(batch=batch):
        lines += sandbox.control.batch(str(batch_file.batch_ref))["records"]
    return lines


def _emails_at_cdp(sandbox) -> set[str]:
    return {
        identifier["id"]
        for profile in sandbox.control.profiles()
        for identifier in profile["identifiers"]
        if identifier["provider"] == "email"
    }


def test_erasure_repeats_until_cdp_has_no_match_then_purges_and_suppresses(
    sandbox, batches_worker, stager, approver, user_factory
):
    anna = GuestFactory(email="anna@example.com", identifiers=[("email", "anna@example.com")])
    # A second CDP profile of the same person, known there by her customer number only.
    anna_crm = GuestFactory(email="", identifiers=[("CRM_ID", "C-1")])
    bert = GuestFactory(email="bert@example.com")
    Guest.objects.update(review_status=ReviewStatus.READY)
    batches_worker()
    upsert = _run("guest", stager, approver)
    assert upsert.status == Batch.Status.SUCCEEDED, upsert.message
    assert len(sandbox.control.profiles()) == 3

    stager.user_permissions.add(Permission.objects.get(codename="add_guestdeletion"))
    stager = type(stager).objects.get(pk=stager.pk)  # permissions are cached per instance
    deletion = guest_deletion_request(
        identifiers=[("email", "anna@example.com"), ("CRM_ID", "C-1")], gdpr=True, user=stager
    )
    # From the request on, Anna's staged records cannot go out again.
    for guest in (anna, anna_crm):
        guest.refresh_from_db()
        assert guest.review_status == ReviewStatus.INVALID

    first = _run("guest_deletion", stager, approver)
    lines = _lines(sandbox, first)
    assert [(line["schema"], line["mode"], line["ref"]) for line in lines] == [
        ("guest", "gdpr_delete", str(deletion.ref))
    ]
    assert lines[0]["value"] == {
        "identifiers": [
            {"provider": "email", "id": "anna@example.com"},
            {"provider": "CRM_ID", "id": "C-1"},
        ]
    }
    # The approver's sample of the file as sent, masked for whoever may not see personal data
    # (a deletion batch's lines are guest lines).
    # (A user without view_pii; role groups do not survive the flush of transactional tests.)
    viewer = user_factory("erasure-viewer", perms=("batches.view_batch",))
    sample = batch_sample_lines(BatchFile.objects.get(batch=first), user=viewer)
    assert '"mode":"gdpr_delete"' in sample[0]
    assert "anna@example.com" not in sample[0]
    assert "C-1" not in sample[0]
    deletion.refresh_from_db()
    # Two profiles matched; CDP deleted the first only: send again.
    assert deletion.erasure_status == ErasureStatus.AGAIN
    assert len(sandbox.control.profiles()) == 2

    rounds = 1
    while deletion.erasure_status != ErasureStatus.DONE:
        assert rounds < 4, f"still {deletion.erasure_status} after {rounds} rounds"
        _run("guest_deletion", stager, approver)
        deletion.refresh_from_db()
        rounds += 1

    assert _emails_at_cdp(sandbox) == {"bert@example.com"}
    assert len(sandbox.control.profiles()) == 1
    assert deletion.rounds == rounds
    assert deletion.identifiers == []
    for guest in (anna, anna_crm):
        guest.refresh_from_db()
        assert guest.purged_at is not None
        assert guest.email == ""
    bert.refresh_from_db()
    assert bert.purged_at is None
    # A done request is never sent again.
    assert GuestDeletion.objects.get(pk=deletion.pk).cdp_value == ""
    # The last round: CDP found no guest left (or said it deleted the only match).
    assert deletion.erasure_message in ("Guest not found", "Guest and associated entities deleted")
