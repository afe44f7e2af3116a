"""Review services: conditional status changes with counts, edits that re-validate, deletes."""

import pytest

from cdpstage.errors import ApplicationError
from records.models import BatchMembership, DeliveryStatus, Guest, ReviewStatus, TrackingEvent
from records.services.review import (
    ReviewResult,
    guest_update,
    records_delete,
    records_hold,
    records_mark_new,
    records_mark_ready,
    review_sources,
    tracking_event_update,
)
from tests.records.factories import GuestFactory, TrackingEventFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(user_factory):
    return user_factory(
        "svc-reviewer",
        perms=(
            "records.change_guest",
            "records.change_trackingevent",
            "records.review_guest",
            "records.review_trackingevent",
        ),
    )


@pytest.fixture
def pii_editor(user_factory):
    return user_factory("svc-editor", perms=("records.change_guest", "records.view_pii"))


def _invalid_guest():
    guest = GuestFactory(email="not-an-email")
    assert guest.review_status == ReviewStatus.INVALID
    return guest


def test_review_sources_follow_transition_map():
    assert review_sources(ReviewStatus.READY) == {ReviewStatus.NEW, ReviewStatus.HELD}
    assert review_sources(ReviewStatus.HELD) == {ReviewStatus.NEW, ReviewStatus.READY}
    assert ReviewStatus.INVALID not in review_sources(ReviewStatus.NEW)


def test_records_mark_ready_counts_and_skips_invalid_and_locked(reviewer):
    new = GuestFactory.create_batch(3)
    invalid = _invalid_guest()
    locked = GuestFactory()
    BatchMembership.objects.create(batch_id=42, kind="guest", record_id=locked.pk)
    already = GuestFactory()
    Guest.objects.filter(pk=already.pk).update(review_status=ReviewStatus.READY)

    ids = [g.pk for g in new] + [invalid.pk, locked.pk, already.pk]
    result = records_mark_ready(model=Guest, ids=ids, user=reviewer)

    assert (result.selected, result.changed) == (6, 3)
    assert (result.skipped_invalid, result.skipped_locked, result.unchanged) == (1, 1, 1)
    assert "3 guests marked ready." in result.message(singular="guest", plural="guests")
    assert "1 skipped because they are invalid" in result.message(singular="guest", plural="guests")
    statuses = dict(Guest.objects.values_list("pk", "review_status"))
    assert all(statuses[g.pk] == ReviewStatus.READY for g in new)
    assert statuses[invalid.pk] == ReviewStatus.INVALID
    assert statuses[locked.pk] == ReviewStatus.NEW


def test_records_mark_ready_never_marks_invalid(reviewer):
    invalid = _invalid_guest()
    result = records_mark_ready(model=Guest, queryset=Guest.objects.all(), user=reviewer)
    assert result.changed == 0
    invalid.refresh_from_db()
    assert invalid.review_status == ReviewStatus.INVALID


def test_records_hold_then_mark_new_round_trip(reviewer):
    guests = GuestFactory.create_batch(2)
    held = records_hold(model=Guest, queryset=Guest.objects.all(), user=reviewer)
    assert held.changed == 2
    assert set(Guest.objects.values_list("review_status", flat=True)) == {ReviewStatus.HELD}
    back = records_mark_new(model=Guest, ids=[guests[0].pk], user=reviewer)
    assert back.changed == 1
    guests[0].refresh_from_db()
    assert guests[0].review_status == ReviewStatus.NEW


def test_records_mark_ready_accepts_tracking_events(reviewer):
    events = TrackingEventFactory.create_batch(2)
    assert all(e.review_status == ReviewStatus.NEW for e in events)
    result = records_mark_ready(
        model=TrackingEvent, queryset=TrackingEvent.objects.all(), user=reviewer
    )
    assert result.changed == 2


def test_records_mark_ready_refuses_user_without_change_permission(user_factory):
    auditor = user_factory("svc-auditor", perms=("records.view_guest",))
    guest = GuestFactory()
    with pytest.raises(ApplicationError, match="permission"):
        records_mark_ready(model=Guest, ids=[guest.pk], user=auditor)
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.NEW


def test_records_mark_ready_needs_exactly_one_selection(reviewer):
    with pytest.raises(ValueError, match="exactly one"):
        records_mark_ready(model=Guest, user=reviewer)
    with pytest.raises(ValueError, match="exactly one"):
        records_mark_ready(model=Guest, ids=[1], queryset=Guest.objects.all(), user=reviewer)


def test_guest_update_revalidates_invalid_email(pii_editor):
    guest = GuestFactory(identifiers=[("CRM_ID", "C-1")])
    assert guest.review_status == ReviewStatus.NEW
    guest.email = "broken"
    updated = guest_update(guest=guest, fields={"email": "broken"}, user=pii_editor)
    assert updated.review_status == ReviewStatus.INVALID
    assert any(e["field"] == "email" for e in updated.validation_errors)
    old_hash = updated.value_hash

    fixed = guest_update(guest=updated, fields={"email": "fixed@example.com"}, user=pii_editor)
    assert fixed.review_status == ReviewStatus.NEW
    assert fixed.validation_errors == []
    assert fixed.value_hash != old_hash
    assert '"email":"fixed@example.com"' in fixed.cdp_value


def test_guest_update_ready_guest_goes_back_to_review(pii_editor):
    guest = GuestFactory()
    Guest.objects.filter(pk=guest.pk).update(review_status=ReviewStatus.READY)
    guest.refresh_from_db()
    updated = guest_update(guest=guest, fields={"city": "Galway"}, user=pii_editor)
    assert updated.review_status == ReviewStatus.NEW


def test_guest_update_refuses_locked_guest(pii_editor):
    guest = GuestFactory()
    BatchMembership.objects.create(batch_id=7, kind="guest", record_id=guest.pk)
    with pytest.raises(ApplicationError) as excinfo:
        guest_update(guest=guest, fields={"country": "FR"}, user=pii_editor)
    assert excinfo.value.message == (
        "This guest is in batch 7, which has not finished; edit it after the batch ends."
    )
    guest.refresh_from_db()
    assert guest.country == "IE"


def test_guest_update_refuses_personal_fields_without_view_pii(reviewer):
    guest = GuestFactory()
    with pytest.raises(ApplicationError, match="personal"):
        guest_update(guest=guest, fields={"email": "x@example.com"}, user=reviewer)
    updated = guest_update(guest=guest, fields={"language": "FR"}, user=reviewer)
    assert updated.language == "FR"
    assert '"language":"FR"' in updated.cdp_value


def test_guest_update_refuses_lifecycle_fields(pii_editor):
    guest = GuestFactory()
    with pytest.raises(ApplicationError, match="cannot be edited: review_status"):
        guest_update(guest=guest, fields={"review_status": "ready"}, user=pii_editor)


def test_guest_update_runs_children_save_before_revalidating(pii_editor):
    guest = GuestFactory(identifiers=[("CRM_ID", "C-9")])

    def save_children():
        guest.identifiers.update(identifier="C-10")

    updated = guest_update(guest=guest, fields={}, user=pii_editor, save_children=save_children)
    assert updated.identity_key == "CRM_ID:C-10"


def test_tracking_event_update_revalidates(user_factory):
    editor = user_factory(
        "svc-tracking", perms=("records.change_trackingevent", "records.view_pii")
    )
    event = TrackingEventFactory()
    updated = tracking_event_update(event=event, fields={"type": "OPENED"}, user=editor)
    assert '"type":"OPENED"' in updated.cdp_value


def test_records_delete_skips_locked_and_delivered(user_factory):
    admin_user = user_factory("svc-deleter", perms=("records.delete_guest",))
    plain, locked, delivered = GuestFactory.create_batch(3)
    BatchMembership.objects.create(batch_id=3, kind="guest", record_id=locked.pk)
    Guest.objects.filter(pk=delivered.pk).update(
        delivery_status=DeliveryStatus.DELIVERED, delivered_hash=delivered.value_hash
    )
    result = records_delete(model=Guest, queryset=Guest.objects.all(), user=admin_user)
    assert (result.deleted, result.skipped) == (1, 2)
    assert set(Guest.objects.values_list("pk", flat=True)) == {locked.pk, delivered.pk}


def test_records_delete_needs_delete_permission(reviewer):
    guest = GuestFactory()
    with pytest.raises(ApplicationError, match="permission to delete"):
        records_delete(model=Guest, ids=[guest.pk], user=reviewer)
    assert Guest.objects.filter(pk=guest.pk).exists()


def test_review_result_message_and_sum():
    first = ReviewResult(ReviewStatus.READY, 3, 1, 1, 0, 1)
    second = ReviewResult(ReviewStatus.READY, 2, 1, 0, 1, 0)
    total = first + second
    assert (total.selected, total.changed, total.skipped) == (5, 2, 3)
    assert first.message(singular="guest", plural="guests") == (
        "1 guest marked ready. 1 skipped because they are invalid (fix them first). "
        "1 were already ready."
    )
    with pytest.raises(ValueError, match="same action"):
        first + ReviewResult(ReviewStatus.HELD, 0, 0, 0, 0, 0)


@pytest.mark.django_db
def test_refresh_makes_a_guest_holding_another_guests_identifier_invalid():
    # The admin edit path applies the import's rule (identifier_in_use).
    from records.services.values import guests_refresh_values

    anna = GuestFactory(email="anna@example.com", identifiers=[("email", "anna@example.com")])
    bert = GuestFactory(
        email="bert@example.com",
        identifiers=[("email", "bert@example.com"), ("email", "anna@example.com")],
    )
    guests_refresh_values(guest_ids=[bert.pk])
    bert.refresh_from_db()
    assert bert.review_status == "invalid"
    problem = next(e for e in bert.validation_errors if e["code"] == "identifier_in_use")
    assert problem["field"] == "identifiers.1.id"
    assert str(anna.ref) in problem["message"]


@pytest.mark.parametrize("service", [records_mark_ready, records_hold, records_mark_new])
def test_review_needs_the_reviewers_permission_not_change(user_factory, service):
    """A Stager edits and re-imports records; passing them on is the Reviewer's call."""
    guest = GuestFactory()
    stager = user_factory("svc-stager", groups=("Stager",))
    assert stager.has_perm("records.change_guest")

    with pytest.raises(ApplicationError, match="permission to review guests"):
        service(model=Guest, ids=[guest.pk], user=stager)

    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.NEW


def test_review_actions_and_button_only_for_reviewers(client, user_factory):
    guest = GuestFactory()
    change_url = f"/admin/records/guest/{guest.pk}/change/"
    stager = user_factory("adm-stager", is_staff=True, groups=("Stager",))
    reviewer = user_factory("adm-reviewer", is_staff=True, groups=("Reviewer",))
    reviewer.user_permissions.add(*stager.groups.get().permissions.filter(codename="view_pii"))

    client.force_login(stager)
    page = client.get(change_url).text
    listing = client.get("/admin/records/guest/").text
    refused = client.post(
        "/admin/records/guest/", {"action": "mark_ready", "_selected_action": [guest.pk]}
    )
    assert "save-mark-ready" not in page
    assert 'value="mark_ready"' not in listing
    assert refused.status_code == 302  # "No action selected": the action is not theirs
    guest.refresh_from_db()
    assert guest.review_status == ReviewStatus.NEW

    client.force_login(reviewer)
    assert "save-mark-ready" in client.get(change_url).text
    assert 'value="mark_ready"' in client.get("/admin/records/guest/").text
