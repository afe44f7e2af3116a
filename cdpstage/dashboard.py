"""What the admin index shows: records by status, work in flight, failures, throughput."""

from datetime import timedelta

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from batches.models import BATCH_FINAL_STATUSES, Batch, BatchFile
from cdpstage.charts import bar_chart
from records.models import Guest, ImportRun, TrackingEvent

THROUGHPUT_DAYS = 14


def dashboard_context(user) -> dict:
    """Everything the index template needs; only what the user may view."""
    context: dict = {}
    if user.has_perm("records.view_guest") or user.has_perm("records.view_trackingevent"):
        context["records"] = [
            _status_counts("Guests", Guest),
            _status_counts("Tracking events", TrackingEvent),
        ]
    if user.has_perm("records.view_importrun"):
        context["imports_running"] = ImportRun.objects.filter(
            status__in=[ImportRun.Status.PENDING, ImportRun.Status.RUNNING]
        ).order_by("-id")[:10]
        context["imports_failed"] = ImportRun.objects.filter(
            status=ImportRun.Status.FAILED, finished_at__gte=timezone.now() - timedelta(days=7)
        ).order_by("-id")[:10]
        context["import_chart"] = bar_chart(_per_day(ImportRun.objects, "rows_read"))
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
            _per_day(Batch.objects.filter(status__in=BATCH_FINAL_STATUSES), "records_delivered")
        )
    return context


def _status_counts(label: str, model) -> dict:
    # One GROUP BY over an indexed column; the reviewers' change lists avoid full counts, but
    # one grouped count per dashboard view is cheap enough (measured in the admin tests).
    review = dict(model.objects.values_list("review_status").annotate(n=Count("id")).order_by())
    delivery = dict(model.objects.values_list("delivery_status").annotate(n=Count("id")).order_by())
    return {"label": label, "review": review, "delivery": delivery}


def _per_day(queryset, count_field: str) -> list[tuple[str, int]]:
    """Sum `count_field` by the day `finished_at` falls on, over the last THROUGHPUT_DAYS."""
    since = timezone.now() - timedelta(days=THROUGHPUT_DAYS - 1)
    per_day = dict(
        queryset.filter(finished_at__gte=since)
        .annotate(day=TruncDate("finished_at"))
        .values_list("day")
        .annotate(total=Sum(count_field))
        .order_by()
    )
    today = timezone.now().date()
    days = [today - timedelta(days=offset) for offset in range(THROUGHPUT_DAYS - 1, -1, -1)]
    return [(day.strftime("%d %b"), per_day.get(day, 0) or 0) for day in days]
