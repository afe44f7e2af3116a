"""Tell the creator and the approver that a batch ended."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse

from batches.models import Batch

logger = logging.getLogger(__name__)

__all__ = ["batch_notify"]


def batch_notify(*, batch_id: int) -> int:
    """Email the creator and the approver that a batch ended (counts only, no personal data)."""
    batch = Batch.objects.select_related("created_by", "approved_by").get(pk=batch_id)
    recipients = sorted(
        {
            user.email
            for user in (batch.created_by, batch.approved_by)
            if user is not None and user.email
        }
    )
    if not recipients:
        return 0
    body = (
        f"Batch {batch.pk} ({batch.schema}) ended: {batch.get_status_display()}.\n\n"
        f"{batch.message}\n\n"
        f"Delivered: {batch.records_delivered}\n"
        f"Rejected by CDP: {batch.records_rejected}\n"
        f"Not delivered: {batch.records_failed}\n"
        f"Outcome unknown: {batch.records_unconfirmed}\n\n"
        f"Details: {settings.SITE_URL}{reverse('admin:batches_batch_change', args=[batch.pk])}\n"
    )
    try:
        return send_mail(
            f"CDP Stage: batch {batch.pk} {batch.get_status_display().lower()}",
            body,
            None,
            recipients,
        )
    except Exception:
        # The batch has ended either way; a mail server problem must not undo that.
        logger.exception("Could not send the end-of-batch email for batch %s", batch_id)
        return 0
