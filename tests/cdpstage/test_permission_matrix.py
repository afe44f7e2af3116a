"""Every role tries every action for real; the outcome must match docs/security.md's matrix."""

from collections.abc import Callable
from pathlib import Path

import pytest
from django.db import transaction
from django.urls import reverse

from batches import services as batch_services
from batches.models import Batch, BatchFile
from cdpstage.errors import ApplicationError
from cdpstage.roles import ROLES
from records.masking import can_view_pii
from records.models import Guest
from records.selectors import in_live_batch
from records.services.review import records_mark_ready
from tests.batches.conftest import make_ready_guests

# The build streams with its own connection (COPY): it must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
BEGIN, END = "<!-- permission-matrix:begin -->", "<!-- permission-matrix:end -->"
WHO = [*ROLES, "staff, no role", "superuser"]


def _page(path: str) -> Callable:
    def attempt(client, user, world) -> bool:
        status = client.get(path(world) if callable(path) else path).status_code
        assert status in (200, 302, 403), status
        return status == 200

    return attempt


def _service(call: Callable) -> Callable:
    def attempt(client, user, world) -> bool:
        refusal = ""
        # Every role tries on the same objects: each attempt is rolled back.
        with transaction.atomic():
            try:
                call(user, world)
            except ApplicationError as exc:
                refusal = exc.message
            finally:
                transaction.set_rollback(True)
        # Refused for who they are, not because the test's objects were wrong.
        assert not refusal or "permission" in refusal, refusal
        return not refusal

    return attempt


ACTIONS: dict[str, Callable] = {
    "Import a file": _page(reverse("admin:records_importrun_add")),
    "See personal data": lambda client, user, world: can_view_pii(user),
    "Mark records ready / hold": _service(
        lambda user, world: records_mark_ready(model=Guest, ids=[world["guest"]], user=user)
    ),
    "Create a batch": _service(
        lambda user, world: batch_services.batch_create(schema="guest", user=user)
    ),
    "Approve a batch (not their own)": _service(
        lambda user, world: batch_services.batch_approve(batch=world["batch"], user=user)
    ),
    "Download a sent file": _page(
        lambda world: reverse("admin:batches_batchfile_download", args=[world["file"]])
    ),
    "Read the audit trail": _page(reverse("admin:batches_batchevent_changelist")),
    "Job dashboard (Redis)": _page(reverse("admin:django_rq_home")),
}


def render_matrix(results: dict[str, dict[str, bool]]) -> str:
    lines = ["| action | " + " | ".join(WHO) + " |", "|---|" + "---|" * len(WHO)]
    for action, by_who in results.items():
        cells = ["yes" if by_who[who] else "—" for who in WHO]
        lines.append(f"| {action} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_permission_matrix_in_docs_is_what_each_role_can_really_do(
    client, user_factory, monkeypatch
):
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )
    builder = user_factory("builder", is_staff=True, groups=("Stager",))
    make_ready_guests(3)
    batch = batch_services.batch_create(schema="guest", user=builder)
    batch.refresh_from_db()
    batch_services.batch_build(batch_id=batch.pk, attempt=batch.attempt)
    assert Batch.objects.get(pk=batch.pk).status == Batch.Status.BUILT
    make_ready_guests(2, prefix="more")  # for "Create a batch"
    world = {
        "guest": in_live_batch(Guest.objects.all(), present=False).first().pk,
        "batch": Batch.objects.get(pk=batch.pk),
        "file": BatchFile.objects.get(batch=batch).pk,
    }
    users = {
        role: user_factory(f"u-{role.lower()}", is_staff=True, groups=(role,)) for role in ROLES
    }
    users["staff, no role"] = user_factory("u-staff", is_staff=True)
    users["superuser"] = user_factory("u-super", is_staff=True, is_superuser=True)

    results: dict[str, dict[str, bool]] = {action: {} for action in ACTIONS}
    for who, user in users.items():
        client.force_login(user)
        for action, attempt in ACTIONS.items():
            results[action][who] = attempt(client, user, world)

    documented = DOC.read_text(encoding="utf-8").split(BEGIN)[1].split(END)[0].strip()
    assert documented == render_matrix(results), "\n" + render_matrix(results)
