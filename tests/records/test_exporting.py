"""Export of staged records in the layout the import reads back: fix in a spreadsheet, re-import."""

import csv
import io
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from openpyxl import load_workbook

from records.exporting import write_xlsx
from records.models import Guest

pytestmark = pytest.mark.django_db

SOURCE = (
    "identifiers.0.provider,identifiers.0.id,identifiers.1.provider,identifiers.1.id,email,"
    "firstName,country,phoneNumbers.0,phoneNumbers.1,subscriptions.0.name,"
    "subscriptions.0.pointOfSale,subscriptions.0.channel,subscriptions.0.status,ext.tier,ext.points\n"
    "email,anna@example.com,CRM_ID,C-1,anna@example.com,Anna,XX,+353 1 234 5678,"
    "+353 87 765 4321,news,web,EMAIL,SUBSCRIBED,gold,0120\n"
    "email,bo@example.com,,,bo@example.com,Bo,IE,,,,,,,,\n"
)


@pytest.fixture
def staged(tmp_path):
    path = tmp_path / "guests.csv"
    path.write_text(SOURCE)
    call_command("stage_import", str(path), "--schema", "guest", stdout=StringIO())
    return Guest.objects.get(email="anna@example.com")


def export(client, action: str, guests) -> bytes:
    response = client.post(
        reverse("admin:records_guest_changelist"),
        {"action": action, "_selected_action": [g.pk for g in guests]},
    )
    assert response.status_code == 200, response.content[:500]
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content)
    return b"".join(response)


def reimport(tmp_path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    call_command("stage_import", str(path), "--schema", "guest", stdout=StringIO())


def test_csv_export_fix_and_reimport_round_trip(client, admin_user, staged, tmp_path):
    assert staged.review_status == "invalid"
    before = json.loads(staged.cdp_value)
    client.force_login(admin_user)
    text = export(client, "export_csv", [staged]).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 1
    assert rows[0]["ref"] == str(staged.ref)
    assert rows[0]["ext.points"] == "0120"
    assert rows[0]["phoneNumbers.1"] == "+353 87 765 4321"
    rows[0]["country"] = "IE"  # the steward's fix
    fixed = io.StringIO()
    writer = csv.DictWriter(fixed, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    reimport(tmp_path, "fixed.csv", fixed.getvalue().encode())
    staged.refresh_from_db()
    assert staged.validation_errors == []
    assert staged.review_status == "new"
    after = json.loads(staged.cdp_value)
    assert after == {**before, "country": "IE"}
    assert Guest.objects.count() == 2


def test_xlsx_export_keeps_text_and_reimports_unchanged(client, admin_user, staged, tmp_path):
    client.force_login(admin_user)
    guests = list(Guest.objects.order_by("id"))
    content = export(client, "export_xlsx", guests)
    sheet = load_workbook(io.BytesIO(content)).active
    header = [c.value for c in sheet[1]]
    assert header[0] == "ref"
    assert header.index("identifiers.0.provider") < header.index("identifiers.0.id")
    points = sheet.cell(row=2, column=header.index("ext.points") + 1)
    assert (points.value, points.data_type) == ("0120", "s")
    reimport(tmp_path, "again.xlsx", content)
    assert Guest.objects.count() == 2
    assert {g.pk: g.value_hash for g in Guest.objects.all()} == {g.pk: g.value_hash for g in guests}


def test_export_needs_view_pii(client, user_factory, staged):
    client.force_login(user_factory("reviewer", groups=("Reviewer",), is_staff=True))
    page = client.get(reverse("admin:records_guest_changelist"))
    assert b"export_csv" not in page.content
    response = client.post(
        reverse("admin:records_guest_changelist"),
        {"action": "export_csv", "_selected_action": [staged.pk]},
    )
    assert response.status_code == 302  # not an action this user has: back to the list
    assert b"anna@example.com" not in response.content


def test_write_xlsx_never_writes_a_formula():
    target = io.BytesIO()
    write_xlsx([["name"], ['=HYPERLINK("http://x")']], target)
    target.seek(0)
    cell = load_workbook(target).active.cell(row=2, column=1)
    assert cell.data_type == "s"
    assert cell.value == '=HYPERLINK("http://x")'
