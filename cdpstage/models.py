"""Abstract model bases shared by the apps; no concrete models live here."""

from django.db import models


class TimeStampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class LeasedWork(models.Model):
    """A unit of background work whose database row, not the queue, is the source of truth.

    A job claims the row with a conditional UPDATE that sets a lease; the reconciler re-enqueues
    a row whose lease ran out (its worker died) under the next attempt's job id. Why: RQ alone
    takes 1.5-13.5 min to notice a dead worker and never re-runs a job once its retries are
    spent (docs/design/rq-crash-semantics.md section 8).
    """

    attempt = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True, db_index=True)
    job_id = models.CharField(max_length=100, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        abstract = True
