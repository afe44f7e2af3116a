"""Four eyes: approval needs `approve_batch` and someone other than the creator, enforced by
the service; approval pins the checksums; sending needs an approved batch."""

import pytest
from django.db import IntegrityError, connection

from batches import services
from batches.models import Batch, BatchEvent, BatchFile
from cdpstage.errors import ApplicationError
from tests.batches.conftest import make_ready_guests

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )
    monkeypatch.setattr("batches.services.approval.transaction.on_commit", lambda func: None)


@pytest.fixture
def built(stager):
    make_ready_guests(5)
    batch = services.batch_create(schema="guest", user=stager)
    services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT
    return batch


def test_batch_approve_refuses_the_creator_even_with_the_permission(built, user_factory):
    creator = built.created_by
    creator.user_permissions.add(
        __import__("django.contrib.auth.models", fromlist=["Permission"]).Permission.objects.get(
            codename="approve_batch"
        )
    )
    creator = type(creator).objects.get(pk=creator.pk)  # drop the permission cache
    with pytest.raises(ApplicationError, match="someone other than"):
        services.batch_approve(batch=built, user=creator)
    built.refresh_from_db()
    assert built.status == Batch.Status.BUILT
    assert built.approved_by is None


def test_batch_approve_refuses_users_without_the_permission(built, user_factory):
    reviewer = user_factory("reviewer", perms=("batches.view_batch",))
    with pytest.raises(ApplicationError, match="permission to approve"):
        services.batch_approve(batch=built, user=reviewer)


def test_batch_approve_pins_checksums_and_records_who(built, approver):
    services.batch_approve(batch=built, user=approver)
    built.refresh_from_db()
    assert built.status == Batch.Status.APPROVED
    assert built.approved_by == approver
    assert built.approved_at is not None
    for batch_file in BatchFile.objects.filter(batch=built):
        assert batch_file.approved_md5 == batch_file.md5
    event = BatchEvent.objects.filter(batch=built, to_status="approved").get()
    assert event.actor == approver
    assert event.data["files"][0]["md5"] == BatchFile.objects.get(batch=built).md5


def test_batch_approve_twice_is_refused(built, approver):
    services.batch_approve(batch=built, user=approver)
    with pytest.raises(ApplicationError, match="not waiting for approval"):
        services.batch_approve(batch=built, user=approver)


def test_batch_approve_needs_a_built_batch(stager, approver):
    make_ready_guests(1)
    batch = services.batch_create(schema="guest", user=stager)
    with pytest.raises(ApplicationError, match="not waiting for approval"):
        services.batch_approve(batch=batch, user=approver)


def test_batch_send_needs_an_approved_batch_and_https(built, approver, settings):
    settings.CDP_BASE_URL = "https://cdp.example.test"
    settings.CDP_CLIENT_KEY, settings.CDP_API_TOKEN = "key", "token"
    with pytest.raises(ApplicationError, match="only an approved batch"):
        services.batch_send(batch=built, user=approver)
    services.batch_approve(batch=built, user=approver)
    settings.CDP_BASE_URL = "http://cdp.example.test"
    with pytest.raises(ApplicationError, match="https://"):
        services.batch_send(batch=built, user=approver)
    settings.CDP_BASE_URL = "https://cdp.example.test"
    settings.CDP_API_TOKEN = ""
    with pytest.raises(ApplicationError, match="CDP_API_TOKEN"):
        services.batch_send(batch=built, user=approver)
    settings.CDP_API_TOKEN = "token"
    services.batch_send(batch=built, user=approver)
    built.refresh_from_db()
    assert built.status == Batch.Status.UPLOADING
    assert built.sent_at is not None


def test_batch_send_refuses_users_without_permission(built, approver, stager, settings):
    settings.CDP_BASE_URL = "https://cdp.example.test"
    settings.CDP_CLIENT_KEY, settings.CDP_API_TOKEN = "key", "token"
    services.batch_approve(batch=built, user=approver)
    with pytest.raises(ApplicationError, match="permission to send"):
        services.batch_send(batch=built, user=stager)


def test_database_refuses_an_approval_by_the_creator_even_by_raw_sql(built):
    """Four eyes does not rest on the service alone: a direct UPDATE is refused too."""
    with (
        pytest.raises(IntegrityError, match="batch_approver_is_not_creator"),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE batches_batch SET approved_by_id = created_by_id, approved_at = now() "
            "WHERE id = %s",
            [built.pk],
        )
    assert Batch.objects.get(pk=built.pk).approved_by_id is None
