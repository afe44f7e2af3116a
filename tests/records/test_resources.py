"""django-import-export preview/confirm through records.resources (same pipeline as runs)."""

import io
import json

import orjson
import pytest
import tablib
from django.urls import reverse
from openpyxl import Workbook

from records.models import Guest, ImportRun, Subscription
from records.resources import (
    ExtensionResource,
    GuestResource,
    SubscriptionResource,
    TrackingEventResource,
)
from tests.records.factories import GuestFactory

pytestmark = pytest.mark.django_db

CSV_TEXT = (
    "identifiers.0.provider,identifiers.0.id,email,firstName,country\n"
    "email,ann@example.com,ann@example.com,ann,IE\n"
    "email,bob@example.com,bob@example.com,bob,XX\n"
    "CRM_ID,,cat@example.com,cat,IE\n"
)


def dataset(text: str) -> tablib.Dataset:
    return tablib.Dataset().load(text, format="csv")


def test_preview_lists_bad_rows_with_row_numbers_and_writes_nothing():
    result = GuestResource().import_data(dataset(CSV_TEXT), dry_run=True)
    assert result.has_errors()
    ((line, errors),) = result.row_errors()
    assert line == 4
    assert "identifiers: The row has no identifier from an identity provider" in str(
        errors[0].error
    )
    outcomes = {row.number: (row.import_type, row.diff) for row in result.rows if row.diff}
    assert outcomes[2] == ("new", ["2", "New", "—"])
    assert outcomes[3][0] == "new"
    assert "country: Country must be an ISO 3166-1 alpha-2" in outcomes[3][1][2]
    assert Guest.objects.count() == 0
    assert ImportRun.objects.count() == 0


def test_preview_shows_updates_and_unchanged_rows():
    GuestFactory(email="ann@example.com", first_name="Ann", last_name="", country="IE")
    text = (
        "identifiers.0.provider,identifiers.0.id,email,firstName,lastName,country\n"
        "email,ann@example.com,ann@example.com,Ann,Smith,IE\n"
    )
    result = GuestResource().import_data(dataset(text), dry_run=True)
    assert not result.has_errors()
    assert [row.import_type for row in result.rows] == ["update"]
    assert Guest.objects.get().last_name == ""


def test_preview_file_problem_is_a_base_error():
    result = GuestResource().import_data(dataset("email,firstName\na@x.io,Ann\n"), dry_run=True)
    assert result.has_errors()
    assert "Missing required columns" in str(result.base_errors[0].error)


def test_confirm_writes_through_an_import_run(user_factory):
    user = user_factory("stager")
    text = CSV_TEXT.rsplit("CRM_ID", 1)[0]
    result = GuestResource().import_data(
        dataset(text), dry_run=False, file_name="extract.csv", user=user
    )
    assert not result.base_errors
    assert result.totals["new"] == 2
    run = ImportRun.objects.get()
    assert (run.status, run.original_name, run.created_by) == ("succeeded", "extract.csv", user)
    bob = Guest.objects.get(email="bob@example.com")
    assert (bob.import_run_id, bob.source_row, bob.review_status) == (run.pk, 3, "invalid")


def test_json_dataset_imports_nested_objects():
    value = {
        "email": "ann@example.com",
        "identifiers": [{"provider": "email", "id": "ann@example.com"}],
        "extensions": [{"name": "ext", "key": "default", "points": 3}],
    }
    data = tablib.Dataset().load(json.dumps([value]), format="json")
    preview = GuestResource().import_data(data, dry_run=True)
    assert [row.import_type for row in preview.rows] == ["new"]
    GuestResource().import_data(data, dry_run=False, file_name="g.json")
    assert orjson.loads(Guest.objects.get().cdp_value) == {"guestType": "customer", **value}


def test_subscription_resource_links_by_email():
    guest = GuestFactory(email="ann@example.com")
    text = (
        "email,name,pointOfSale,channel,status\n"
        "ann@example.com,news,shop,EMAIL,SUBSCRIBED\n"
        "zed@example.com,news,shop,EMAIL,SUBSCRIBED\n"
    )
    preview = SubscriptionResource().import_data(dataset(text), dry_run=True)
    assert [line for line, _ in preview.row_errors()] == [3]
    assert "No staged guest has this email address" in str(preview.row_errors()[0][1][0].error)
    SubscriptionResource().import_data(dataset(text.rsplit("zed", 1)[0]), dry_run=False)
    assert Subscription.objects.get().guest_id == guest.pk


def test_extension_and_tracking_resources_know_their_columns():
    assert "ext.<attribute>" in [
        f.column_name for f in ExtensionResource().get_user_visible_fields()
    ]
    assert "utms.<key>" in [
        f.column_name for f in TrackingEventResource().get_user_visible_fields()
    ]


# -- through the admin screens ----------------------------------------------------------------


@pytest.fixture
def stager_client(client, user_factory):
    user = user_factory("stager", groups=("Stager",), is_staff=True)
    client.force_login(user)
    return client


def test_admin_subscription_import_preview_then_confirm(stager_client):
    guest = GuestFactory(email="ann@example.com")
    url = reverse("admin:records_subscription_import")
    upload = io.BytesIO(
        b"email,name,pointOfSale,channel,status\nann@example.com,news,shop,EMAIL,SUBSCRIBED\n"
    )
    upload.name = "subs.csv"
    response = stager_client.post(url, {"format": "0", "import_file": upload, "resource": "0"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Confirm import" in body
    confirm = response.context["confirm_form"]
    response = stager_client.post(
        reverse("admin:records_subscription_process_import"),
        {**confirm.initial, "resource": "0"},
    )
    assert response.status_code == 302
    assert Subscription.objects.get().guest_id == guest.pk
    assert ImportRun.objects.get().schema == "subscription"


def test_admin_subscription_import_preview_shows_row_errors(stager_client):
    url = reverse("admin:records_subscription_import")
    upload = io.BytesIO(
        b"email,name,pointOfSale,channel,status\nzed@example.com,n,s,EMAIL,SUBSCRIBED\n"
    )
    upload.name = "subs.csv"
    response = stager_client.post(url, {"format": "0", "import_file": upload, "resource": "0"})
    body = response.content.decode()
    assert "Line number: 2" in body
    assert "No staged guest has this email address" in body
    assert "Confirm import" not in body


def test_admin_xlsx_import_preview(stager_client):
    GuestFactory(email="ann@example.com")
    workbook = Workbook()
    workbook.active.append(["email", "name", "pointOfSale", "channel", "status"])
    workbook.active.append(["ann@example.com", "news", "shop", "EMAIL", "SUBSCRIBED"])
    upload = io.BytesIO()
    workbook.save(upload)
    upload.seek(0)
    upload.name = "subs.xlsx"
    response = stager_client.post(
        reverse("admin:records_subscription_import"),
        {"format": "1", "import_file": upload, "resource": "0"},
    )
    assert "Confirm import" in response.content.decode()


def test_admin_import_needs_add_permission(client, user_factory):
    user = user_factory("auditor", groups=("Auditor",), is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:records_subscription_import")).status_code == 403
