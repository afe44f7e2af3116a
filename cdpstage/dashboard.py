"""What the admin index shows: records by status, work in flight, failures, throughput."""

from datetime import timedelta

from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from batches.models import BATCH_FINAL_STATUSES, Batch, BatchFile
from cdpstage.charts import bar_chart
from records.models import (
    DeliveryStatus,
    Guest,
    GuestMigration,
    ImportRun,
    Order,
    ReviewStatus,
    TrackingEvent,
)
from records.selectors import live_batch_count

THROUGHPUT_DAYS = 14


def dashboard_context(user) -> dict:
    """Everything the index template needs; only what the user may view."""
    context: dict = {}
    if any(user.has_perm(f"records.view_{name}") for name in ("guest", "trackingevent", "order")):
        context["records"] = [
            _status_counts("Guests", Guest),
            _status_counts("Orders", Order),
            _status_counts("Tracking events", TrackingEvent),
            _status_counts("Guest migrations", GuestMigration),
        ]
        # Two tables, one per status kind: a record has one review and one delivery status.
        context["review_columns"] = ReviewStatus.labels
        # "In a batch" is not a delivery status (a held record keeps its own) but a live batch
        # membership; it sits after "Not sent" as before.
        labels = list(DeliveryStatus.labels)
        context["delivery_columns"] = [labels[0], "In a batch", *labels[1:]]
    if user.has_perm("records.view_importrun"):
        context["imports_running"] = ImportRun.objects.filter(
            status__in=[ImportRun.Status.PENDING, ImportRun.Status.RUNNING]
        ).order_by("-id")[:10]
        context["imports_failed"] = ImportRun.objects.filter(
            status=ImportRun.Status.FAILED, finished_at__gte=timezone.now() - timedelta(days=7)
        ).order_by("-id")[:10]
        # Rows that changed what is staged: an unchanged re-import adds nothing to review.
        context["import_chart"] = bar_chart(
            _per_day(ImportRun.objects, F("rows_created") + F("rows_updated"))
        )
    if user.has_perm("batches.view_batch"):
        recent = timezone.now() - timedelta(days=7)
        context["batches_in_flight"] = (
            Batch.objects.exclude(status__in=BATCH_FINAL_STATUSES)
            .select_related("created_by")
            .order_by("-id")[:10]
        )
        context["batches_failed"] = Batch.objects.filter(
            status__in=[Batch.Status.FAILED, Batch.Status.PARTIALLY_FAILED],
            finished_at__gte=recent,
        ).order_by("-id")[:10]
        context["files_failed"] = (
            BatchFile.objects.filter(
                status__in=[BatchFile.Status.FAILED, BatchFile.Status.CORRUPTED],
                finished_at__gte=recent,
            )
            .select_related("batch")
            .order_by("-id")[:10]
        )
        # Records CDP accepted, by the day their batch finished.
        context["delivery_chart"] = bar_chart(
            _per_day(Batch.objects.filter(status__in=BATCH_FINAL_STATUSES), F("records_delivered"))
        )
    return context


def _status_counts(label: str, model) -> dict:
    # One GROUP BY over an indexed column; the reviewers' change lists avoid full counts, but
    # one grouped count per dashboard view is cheap enough (measured in the admin tests).
    review = dict(model.objects.values_list("review_status").annotate(n=Count("id")).order_by())
    delivery = dict(model.objects.values_list("delivery_status").annotate(n=Count("id")).order_by())
    return {
        "label": label,
        "review": review,
        "delivery": delivery,
        "review_cells": [review.get(status, 0) for status in ReviewStatus.values],
        "delivery_cells": _delivery_cells(delivery, live_batch_count(model=model)),
        "total": sum(review.values()),
    }


def _delivery_cells(delivery: dict[str, int], held: int) -> list[int]:
    cells = [delivery.get(status, 0) for status in DeliveryStatus.values]
    return [cells[0], held, *cells[1:]]


def _per_day(queryset, amount: F) -> list[tuple[str, int]]:
    """Sum `amount` by the day `finished_at` falls on, over the last THROUGHPUT_DAYS."""
    since = timezone.now() - timedelta(days=THROUGHPUT_DAYS - 1)
    per_day = dict(
        queryset.filter(finished_at__gte=since)
        .annotate(day=TruncDate("finished_at"))
        .values_list("day")
        .annotate(total=Sum(amount))
        .order_by()
    )
    today = timezone.now().date()
    days = [today - timedelta(days=offset) for offset in range(THROUGHPUT_DAYS - 1, -1, -1)]
    return [(day.strftime("%d %b"), per_day.get(day, 0) or 0) for day in days]
