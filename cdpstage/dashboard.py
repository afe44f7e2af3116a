"""What the admin index shows: records by status, work in flight, failures, throughput."""

from datetime import timedelta

from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

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
        context["import_chart"] = bar_chart(_rows_imported_per_day())
    return context


def _status_counts(label: str, model) -> dict:
    # One GROUP BY over an indexed column; the reviewers' change lists avoid full counts, but
    # one grouped count per dashboard view is cheap enough (measured in the admin tests).
    review = dict(model.objects.values_list("review_status").annotate(n=Count("id")).order_by())
    delivery = dict(model.objects.values_list("delivery_status").annotate(n=Count("id")).order_by())
    return {"label": label, "review": review, "delivery": delivery}


def _rows_imported_per_day() -> list[tuple[str, int]]:
    since = timezone.now() - timedelta(days=THROUGHPUT_DAYS - 1)
    per_day = dict(
        ImportRun.objects.filter(finished_at__gte=since)
        .annotate(day=TruncDate("finished_at"))
        .values_list("day")
        .annotate(rows=Sum("rows_read"))
        .order_by()
    )
    today = timezone.now().date()
    days = [today - timedelta(days=offset) for offset in range(THROUGHPUT_DAYS - 1, -1, -1)]
    return [(day.strftime("%d %b"), per_day.get(day, 0) or 0) for day in days]
