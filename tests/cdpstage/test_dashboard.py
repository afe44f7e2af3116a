"""The admin index dashboard: counts by status, failures, throughput charts, per permission."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cdpstage.charts import bar_chart
from records.models import Guest, ImportRun, ReviewStatus
from tests.records.factories import GuestFactory

pytestmark = pytest.mark.django_db


def test_bar_chart_scales_bars_to_the_largest_value():
    chart = bar_chart([("a", 0), ("b", 5), ("c", 10)], width=300, height=120)

    heights = [bar.height for bar in chart.bars]
    assert heights[0] == 0
    assert heights[2] == 100  # the plot area is the height minus 20 px for labels
    assert heights[1] == pytest.approx(50)
    assert chart.max_value == 10


def test_bar_chart_of_all_zeroes_draws_flat_bars():
    chart = bar_chart([("a", 0), ("b", 0)])

    assert [bar.height for bar in chart.bars] == [0, 0]


def test_dashboard_counts_records_by_review_status(client, user_factory):
    ready = GuestFactory.create_batch(3)
    invalid = GuestFactory.create_batch(2)
    Guest.objects.filter(pk__in=[g.pk for g in ready]).update(review_status=ReviewStatus.READY)
    Guest.objects.filter(pk__in=[g.pk for g in invalid]).update(review_status=ReviewStatus.INVALID)
    boss = user_factory("boss", is_staff=True, is_superuser=True)
    client.force_login(boss)

    response = client.get("/admin/")

    assert response.status_code == 200
    rows = response.context["dashboard"]["records"]
    guests = next(row for row in rows if row["label"] == "Guests")
    assert guests["review"] == {"ready": 3, "invalid": 2}
    assert 'id="dashboard"' in response.content.decode()


def test_dashboard_lists_failed_imports_and_charts_rows(client, user_factory):
    ImportRun.objects.create(
        schema="guest",
        format="csv",
        original_name="broken.csv",
        status=ImportRun.Status.FAILED,
        message="The file is empty.",
        finished_at=timezone.now(),
    )
    ImportRun.objects.create(
        schema="guest",
        format="csv",
        original_name="good.csv",
        status=ImportRun.Status.SUCCEEDED,
        rows_read=1234,
        rows_created=1200,
        rows_updated=34,
        finished_at=timezone.now() - timedelta(days=1),
    )
    client.force_login(user_factory("boss", is_staff=True, is_superuser=True))

    response = client.get("/admin/")

    body = response.content.decode()
    assert "The file is empty." in body
    chart = response.context["dashboard"]["import_chart"]
    assert chart.max_value == 1234
    assert "<svg" in body


def test_dashboard_hides_what_the_user_may_not_view(client, user_factory):
    GuestFactory.create_batch(2)
    client.force_login(user_factory("nobody", is_staff=True))

    response = client.get("/admin/")

    assert response.status_code == 200
    assert response.context["dashboard"] == {}
    assert 'id="dashboard"' not in response.content.decode()


def test_dashboard_review_and_delivery_statuses_in_two_tables(client, user_factory):
    GuestFactory.create_batch(2)
    client.force_login(user_factory("boss", is_staff=True, is_superuser=True))

    body = client.get("/admin/").content.decode()

    review = body[body.index('id="dashboard-review"') : body.index('id="dashboard-delivery"')]
    delivery = body[body.index('id="dashboard-delivery"') :]
    assert "<caption>Review status</caption>" in review
    assert ">Ready</th>" in review
    assert "Delivered" not in review
    assert "<caption>Delivery to CDP</caption>" in delivery
    assert ">Rejected by CDP</th>" in delivery


def test_dashboard_import_chart_counts_created_and_updated_rows_only(client, user_factory):
    ImportRun.objects.create(
        schema="guest",
        format="csv",
        original_name="again.csv",
        status=ImportRun.Status.SUCCEEDED,
        rows_read=3000,
        rows_created=10,
        rows_updated=5,
        rows_unchanged=2985,
        finished_at=timezone.now(),
    )
    client.force_login(user_factory("boss", is_staff=True, is_superuser=True))

    chart = client.get("/admin/").context["dashboard"]["import_chart"]

    assert chart.max_value == 15
