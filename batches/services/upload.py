"""Allocate a file at CDP and upload its bytes, after checking them against the approved MD5.

No HTTP call runs inside a database transaction; the step ends by scheduling the poll under
a new attempt, or by a terminal transition, both conditional on still owning the row.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from django.core.files.storage import default_storage
from django.utils import timezone

from batches.client import (
    CdpClient,
    CdpConflictError,
    CdpPermanentError,
    CdpTransientError,
    CdpUploadExpiredError,
)
from batches.models import BatchFile
from batches.services.failures import batchfile_fail, resend_under_new_ref, retry_later
from batches.services.scheduling import (
    LeaseLostError,
    batchfile_claim,
    poll_delay,
    require_lease,
    schedule_file_step,
)
from batches.services.transitions import batchfile_transition, cdp_call_recorder

logger = logging.getLogger(__name__)

__all__ = ["batchfile_upload_step"]


# An upload location with less than this left counts as expired. Kept small: the URL was
# just handed out, and one that runs out mid-upload is refused by S3 with "Request has
# expired", which sends the file under a new ref as well.
UPLOAD_URL_MARGIN = timedelta(seconds=1)


class ChecksumMismatchError(Exception):
    """The stored file no longer matches the checksum the approver approved."""


def _verify_stored(batch_file: BatchFile) -> None:
    """Stream the stored file and check it against the approved checksum and size."""
    if not batch_file.approved_md5:
        raise ChecksumMismatchError("This file was never approved; nothing was sent.")
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with default_storage.open(batch_file.file.name, "rb") as stored:
        for chunk in iter(lambda: stored.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    if digest.hexdigest() != batch_file.approved_md5 or batch_file.md5 != batch_file.approved_md5:
        raise ChecksumMismatchError(
            "The stored file no longer matches the checksum that was approved; nothing was sent."
        )
    if size != batch_file.size:
        raise ChecksumMismatchError(
            "The stored file no longer has the size that was approved; nothing was sent."
        )


def _upload(batch_file: BatchFile, attempt: int, client: CdpClient) -> None:
    ref = str(batch_file.batch_ref)
    if batch_file.status == BatchFile.Status.PENDING:
        allocated = client.allocate(ref, checksum=batch_file.md5, size=batch_file.size)
        require_lease(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.ALLOCATED,
                attempt=attempt,
                message="Upload location allocated.",
                fields={
                    "remote_status": allocated.status_code,
                    "upload_expires_at": allocated.location_expiry,
                    "status_json": allocated.raw,
                    "failures": 0,
                },
            ),
            batch_file,
            attempt,
        )
        remote, location, expiry = (
            allocated.status_code,
            allocated.location_url,
            allocated.location_expiry,
        )
    else:
        # A previous attempt allocated the ref and died: ask CDP where the file stands before
        # sending anything, so bytes that already arrived are not sent twice.
        status = client.status(ref)
        remote, location, expiry = status.code, status.location_url, status.location_expiry
        if remote == "uploading" and not location:
            # The status reply had no upload location: allocation is an idempotent PUT.
            allocated = client.allocate(ref, checksum=batch_file.md5, size=batch_file.size)
            remote, location, expiry = (
                allocated.status_code,
                allocated.location_url,
                allocated.location_expiry,
            )
    if remote != "uploading":
        # The bytes are already at CDP (or it gave up on them): follow the status from here.
        require_lease(
            batchfile_transition(
                file_id=batch_file.pk,
                target=BatchFile.Status.UPLOADED,
                attempt=attempt,
                message=f"CDP already holds the file (status {remote}); not uploading again.",
                fields={"remote_status": remote, "failures": 0},
            ),
            batch_file,
            attempt,
        )
        schedule_file_step(file_id=batch_file.pk, step="poll", expected_attempt=attempt)
        return
    if expiry is not None and expiry - timezone.now() < UPLOAD_URL_MARGIN:
        raise CdpUploadExpiredError(
            "The upload location had expired (or was about to); the file must be sent under a "
            "new batch ref."
        )
    _verify_stored(batch_file)
    with default_storage.open(batch_file.file.name, "rb") as body:
        client.upload(location, body, md5_hex=batch_file.approved_md5, size=batch_file.size)
    require_lease(
        batchfile_transition(
            file_id=batch_file.pk,
            target=BatchFile.Status.UPLOADED,
            attempt=attempt,
            message=f"Uploaded {batch_file.size} bytes.",
            fields={"uploaded_at": timezone.now(), "failures": 0, "last_error": ""},
        ),
        batch_file,
        attempt,
    )
    schedule_file_step(
        file_id=batch_file.pk, step="poll", delay=poll_delay(1), expected_attempt=attempt
    )


def batchfile_upload_step(*, file_id: int, attempt: int) -> None:
    """Allocate the file's ref (if not yet) and upload its bytes; then schedule the first poll."""
    batch_file = batchfile_claim(
        file_id=file_id,
        attempt=attempt,
        statuses=(BatchFile.Status.PENDING, BatchFile.Status.ALLOCATED),
    )
    if batch_file is None:
        logger.info("File %s upload attempt %s: nothing to do", file_id, attempt)
        return
    try:
        client = CdpClient.from_settings(on_call=cdp_call_recorder(batch_file.batch_id, file_id))
        _upload(batch_file, attempt, client)
    except LeaseLostError:
        logger.warning("File %s upload attempt %s lost its lease; stopping", file_id, attempt)
    except (CdpUploadExpiredError, CdpConflictError) as exc:
        resend_under_new_ref(batch_file, attempt, BatchFile.Status.SUPERSEDED, exc.message)
    except CdpTransientError as exc:
        retry_later(batch_file, attempt, "upload", exc.message, exc.retry_after)
    except CdpPermanentError as exc:
        batchfile_fail(batch_file=batch_file, attempt=attempt, message=exc.message)
    except ChecksumMismatchError as exc:
        batchfile_fail(batch_file=batch_file, attempt=attempt, message=str(exc))
