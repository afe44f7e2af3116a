"""Erasure requests and the suppression list: what they stage, stop and purge."""

import hashlib
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from batches import services as batch_services
from batches.models import Batch
from cdpstage.errors import ApplicationError
from records.models import (
    BatchMembership,
    ErasureStatus,
    Guest,
    GuestDeletion,
    Identifier,
    ImportRun,
    ReviewStatus,
    SuppressedIdentity,
)
from records.services.erasure import (
    SUPPRESSED_CODE,
    deletions_apply_outcomes,
    guest_deletion_request,
    identity_hash,
    parse_identifier,
)
from records.services.review import records_mark_ready
from records.services.values import guests_refresh_values
from tests.records.factories import GuestFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db

ANNA = "anna@example.com"


@pytest.fixture
def stager(user_factory):
    # Permissions rather than the Stager group: groups do not survive a transactional test's
    # flush, and the build test below is one.
    return user_factory(
        "erasure-stager",
        perms=(
            "records.add_guestdeletion",
            "records.view_guestdeletion",
            "batches.add_batch",
            "batches.view_batch",
        ),
        is_staff=True,
    )


def _codes(record) -> set[str]:
    record.refresh_from_db()
    return {problem["code"] for problem in record.validation_errors}


def test_request_is_staged_ready_with_only_the_identifiers_and_suppresses_them(stager):
    deletion = guest_deletion_request(
        identifiers=[("email", " Anna@Example.com ")], gdpr=False, user=stager
    )
    assert deletion.mode == "delete"
    assert deletion.review_status == ReviewStatus.READY
    assert json.loads(deletion.cdp_value) == {"identifiers": [{"provider": "email", "id": ANNA}]}
    expected = hashlib.sha256(f"email:{ANNA}".encode()).hexdigest()
    assert deletion.identity_hashes == [expected] == [identity_hash("email", ANNA)]
    assert list(SuppressedIdentity.objects.values_list("identity_hash", flat=True)) == [expected]
    gdpr = guest_deletion_request(identifiers=[("CRM_ID", "C-9")], gdpr=True, user=stager)
    assert gdpr.mode == "gdpr_delete"


def test_sql_and_python_hash_agree_so_staged_guests_are_caught(stager):
    guest = GuestFactory(email=ANNA, identifiers=[("email", ANNA), ("CRM_ID", "C-1")])
    other = GuestFactory()
    Guest.objects.filter(pk=guest.pk).update(review_status=ReviewStatus.READY)
    guest_deletion_request(identifiers=[("CRM_ID", "C-1")], gdpr=False, user=stager)
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.INVALID
    assert SUPPRESSED_CODE in _codes(guest)
    assert "asked to be erased" in guest.validation_errors[-1]["message"]
    assert ANNA not in json.dumps(guest.validation_errors)
    assert SUPPRESSED_CODE not in _codes(other)


def test_each_identifier_stores_the_hash_the_suppression_list_uses():
    # Non-ASCII and a colon inside the id: the SQL function must hash the same UTF-8 bytes.
    guest = GuestFactory(identifiers=[("email", "zoë@example.com"), ("CRM_ID", "C:1/ß")])
    stored = dict(Identifier.objects.filter(guest=guest).values_list("provider", "identity_hash"))
    assert stored == {
        "email": identity_hash("email", "zoë@example.com"),
        "CRM_ID": identity_hash("CRM_ID", "C:1/ß"),
    }
    # Kept by the database on every write, an edit included.
    Identifier.objects.filter(guest=guest, provider="CRM_ID").update(identifier="C-2")
    assert Identifier.objects.get(guest=guest, provider="CRM_ID").identity_hash == identity_hash(
        "CRM_ID", "C-2"
    )


def test_a_suppressed_guest_can_never_be_marked_ready(stager, user_factory):
    guest = GuestFactory(email=ANNA)
    guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    reviewer = user_factory(
        "erasure-reviewer", perms=("records.change_guest", "records.review_guest")
    )
    result = records_mark_ready(model=Guest, ids=[guest.pk], user=reviewer)
    assert (result.changed, result.skipped_invalid) == (0, 1)
    # An edit re-validates from the rules, which know nothing of erasure: still suppressed.
    Guest.objects.filter(pk=guest.pk).update(first_name="Changed")
    guests_refresh_values(guest_ids=[guest.pk])
    assert SUPPRESSED_CODE in _codes(guest)
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.INVALID


def test_a_suppressed_identity_re_imported_from_a_file_is_staged_invalid(stager, tmp_path):
    guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    path = tmp_path / "again.csv"
    path.write_text(
        "identifiers.0.provider,identifiers.0.id,email\n"
        f"email,{ANNA.upper()},{ANNA}\nemail,bert@example.com,bert@example.com\n"
    )
    out = StringIO()
    call_command(
        "stage_import", str(path), "--schema", "guest", "--user", stager.username, stdout=out
    )
    anna = Guest.objects.get(email=ANNA)
    bert = Guest.objects.get(email="bert@example.com")
    assert anna.review_status == ReviewStatus.INVALID
    assert SUPPRESSED_CODE in _codes(anna)
    assert bert.review_status == ReviewStatus.NEW
    run = ImportRun.objects.get()
    assert run.rows_invalid == 1
    assert "1 of them carry the identity of a person who asked to be erased" in run.message
    assert ANNA not in run.message


def test_tracking_events_of_a_suppressed_person_are_invalid(stager):
    event = TrackingEventFactory(identifiers=[{"provider": "email", "id": ANNA}])
    other = TrackingEventFactory()
    guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    assert SUPPRESSED_CODE in _codes(event)
    assert SUPPRESSED_CODE not in _codes(other)


@pytest.mark.django_db(transaction=True)
def test_the_build_leaves_out_a_ready_record_with_a_suppressed_identity(stager):
    anna = GuestFactory(email=ANNA)
    bert = GuestFactory(email="bert@example.com")
    guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    # As if it had been marked ready in a race with the request: the build checks again.
    Guest.objects.filter(pk__in=[anna.pk, bert.pk]).update(
        review_status=ReviewStatus.READY, validation_errors=[]
    )
    batch = batch_services.batch_create(schema="guest", user=stager)
    batch_services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT, batch.message
    assert batch.records_total == 1
    locked = set(
        BatchMembership.objects.filter(batch_id=batch.pk, live=True).values_list(
            "record_id", flat=True
        )
    )
    assert locked == {bert.pk}


def test_requests_are_refused_with_reasons(stager, user_factory):
    with pytest.raises(ApplicationError, match="not a known identity provider"):
        parse_identifier("LOYALTY:123")
    with pytest.raises(ApplicationError, match="provider:id"):
        parse_identifier("anna@example.com")
    guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    with pytest.raises(ApplicationError, match="still open"):
        guest_deletion_request(identifiers=[("email", ANNA)], gdpr=True, user=stager)
    locked = GuestFactory(email="carl@example.com")
    BatchMembership.objects.create(batch_id=77, kind="guest", record_id=locked.pk)
    with pytest.raises(ApplicationError, match="is in batch 77"):
        guest_deletion_request(identifiers=[("email", "carl@example.com")], gdpr=False, user=stager)
    nobody = user_factory("erasure-nobody")
    with pytest.raises(ApplicationError, match="permission"):
        guest_deletion_request(identifiers=[("email", "d@example.com")], gdpr=False, user=nobody)


def test_outcomes_repeat_until_cdp_finds_no_more_then_purge(stager):
    guest = GuestFactory(email=ANNA, identifiers=[("email", ANNA), ("CRM_ID", "C-1")])
    deletion = guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    GuestDeletion.objects.filter(pk=deletion.pk).update(delivered_hash=deletion.value_hash)

    result = deletions_apply_outcomes(
        outcomes=[
            (deletion.pk, "delivered", "200", "2 matches found for this guest, 1st match deleted")
        ]
    )
    deletion.refresh_from_db()
    assert result.again == 1
    assert deletion.erasure_status == ErasureStatus.AGAIN
    assert deletion.delivered_hash == ""  # eligible for the next deletion batch
    assert deletion.rounds == 1
    guest.refresh_from_db()
    assert guest.purged_at is None

    result = deletions_apply_outcomes(
        outcomes=[(deletion.pk, "delivered", "200", "Guest and associated entities deleted")]
    )
    deletion.refresh_from_db()
    assert (result.done, result.guests_purged) == (1, 1)
    assert deletion.erasure_status == ErasureStatus.DONE
    assert deletion.identifiers == []
    assert deletion.cdp_value == ""
    assert deletion.identity_hashes == [identity_hash("email", ANNA)]
    assert deletion.rounds == 2
    guest.refresh_from_db()
    assert guest.purged_at is not None
    assert guest.email == ""
    assert not Identifier.objects.filter(guest=guest).exists()
    # The suppression stays after the request is done.
    assert SuppressedIdentity.objects.filter(deletion=deletion).count() == 1


def test_an_accepted_delete_without_a_message_is_sent_again(stager):
    # A file CDP processed without error has no log: how many guests matched is unknown.
    deletion = guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    assert deletions_apply_outcomes(outcomes=[(deletion.pk, "delivered", "", "")]).again == 1
    deletion.refresh_from_db()
    assert deletion.erasure_status == ErasureStatus.AGAIN


def test_not_found_completes_and_other_rejections_stay_open(stager):
    found_none = guest_deletion_request(identifiers=[("email", ANNA)], gdpr=False, user=stager)
    refused = guest_deletion_request(identifiers=[("CRM_ID", "C-2")], gdpr=False, user=stager)
    result = deletions_apply_outcomes(
        outcomes=[
            (found_none.pk, "rejected", "404", "Guest not found"),
            (refused.pk, "rejected", "403", "Action not allowed"),
        ]
    )
    assert (result.done, result.open) == (1, 1)
    found_none.refresh_from_db()
    refused.refresh_from_db()
    assert found_none.erasure_status == ErasureStatus.DONE
    assert refused.erasure_status == ErasureStatus.OPEN
    assert refused.erasure_message == "Action not allowed"


def test_guest_delete_command(stager):
    out = StringIO()
    call_command(
        "guest_delete",
        "--identifier",
        f"email:{ANNA}",
        "--gdpr",
        "--user",
        stager.username,
        stdout=out,
    )
    deletion = GuestDeletion.objects.get(pk=int(out.getvalue()))
    assert deletion.mode == "gdpr_delete"
    with pytest.raises(CommandError, match="not a known identity provider"):
        call_command("guest_delete", "--identifier", "FOO:1", "--user", stager.username)


def test_admin_takes_a_request_and_masks_it_without_view_pii(client, stager, user_factory):
    client.force_login(stager)
    add = reverse("admin:records_guestdeletion_add")
    assert client.get(add).status_code == 200
    page = client.post(add, {"provider": "email", "identifier": ANNA}, follow=True)
    assert "Deletion request" in page.content.decode()
    deletion = GuestDeletion.objects.get()
    assert deletion.requested_by == stager
    auditor = user_factory("erasure-auditor", groups=("Auditor",), is_staff=True)
    client.force_login(auditor)
    listing = client.get(reverse("admin:records_guestdeletion_changelist")).content.decode()
    assert ANNA not in listing
    assert "email:" in listing
    assert client.get(add).status_code in (302, 403)
    assert client.post(add, {"provider": "email", "identifier": "x@example.com"}).status_code in (
        302,
        403,
    )
    assert GuestDeletion.objects.count() == 1
