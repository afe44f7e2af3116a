"""Four-eyes approval of a built batch, and the order to send it."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from batches.client import CdpClient, CdpConfigurationError
from batches.models import Batch, BatchFile
from batches.services.dispatch import batchfiles_dispatch
from batches.services.transitions import batch_transition
from cdpstage.errors import ApplicationError

__all__ = ["batch_approve", "batch_send", "can_approve", "can_send"]


def can_approve(user: AbstractBaseUser, batch: Batch) -> bool:
    """Whether `user` may approve `batch` now (the same rules the service enforces)."""
    return (
        batch.status == Batch.Status.BUILT
        and user.has_perm("batches.approve_batch")
        and user.pk != batch.created_by_id
    )


def can_send(user: AbstractBaseUser | None, batch: Batch) -> bool:
    """Whether `user` may send `batch` now."""
    allowed = (
        user is None
        or user.has_perm("batches.send_batch")
        or user.has_perm("batches.approve_batch")
    )
    return allowed and batch.status == Batch.Status.APPROVED


@transaction.atomic
def batch_approve(*, batch: Batch, user: AbstractBaseUser, actor_label: str = "") -> None:
    """Approve a built batch: someone other than its creator, with `approve_batch`.

    The approval pins each file's checksum (`approved_md5`); the upload re-verifies the stored
    bytes against it before anything is sent.
    """
    if not user.has_perm("batches.approve_batch"):
        raise ApplicationError("You do not have permission to approve batches.")
    if user.pk == batch.created_by_id:
        raise ApplicationError(
            "A batch must be approved by someone other than the person who created it."
        )
    files = list(
        BatchFile.objects.filter(batch_id=batch.pk).values(
            "sequence", "batch_ref", "md5", "size", "record_count"
        )
    )
    won = batch_transition(
        batch_id=batch.pk,
        target=Batch.Status.APPROVED,
        sources=(Batch.Status.BUILT,),
        actor=user,
        actor_label=actor_label,
        message=f"Approved {len(files)} file(s).",
        data={
            "files": [
                {
                    "sequence": row["sequence"],
                    "batch_ref": str(row["batch_ref"]),
                    "md5": row["md5"],
                    "size": row["size"],
                    "records": row["record_count"],
                }
                for row in files
            ]
        },
        fields={"approved_by": user, "approved_at": timezone.now()},
    )
    if not won:
        batch.refresh_from_db(fields=["status"])
        raise ApplicationError(
            f"Batch {batch.pk} is not waiting for approval (it is "
            f"{batch.get_status_display().lower()})."
        )
    BatchFile.objects.filter(batch_id=batch.pk, approved_md5="").update(approved_md5=F("md5"))
    batch.refresh_from_db()


@transaction.atomic
def batch_send(
    *, batch: Batch, user: AbstractBaseUser | None = None, actor_label: str = ""
) -> None:
    """Start sending an approved batch: its files go to CDP one after another.

    `user` is None for automation (the command line); a user needs `send_batch` or
    `approve_batch`.
    """
    if user is not None and not (
        user.has_perm("batches.send_batch") or user.has_perm("batches.approve_batch")
    ):
        raise ApplicationError("You do not have permission to send batches.")
    try:
        # Fail here, readably, rather than in every file's upload.
        CdpClient.from_settings()
    except CdpConfigurationError as exc:
        raise ApplicationError(exc.message) from exc
    won = batch_transition(
        batch_id=batch.pk,
        target=Batch.Status.UPLOADING,
        sources=(Batch.Status.APPROVED,),
        actor=user,
        actor_label=actor_label,
        message="Sending started.",
        fields={"sent_at": timezone.now()},
    )
    if not won:
        batch.refresh_from_db(fields=["status"])
        raise ApplicationError(
            f"Batch {batch.pk} cannot be sent: it is {batch.get_status_display().lower()}; "
            "only an approved batch can be sent."
        )
    transaction.on_commit(batchfiles_dispatch)
    batch.refresh_from_db()
