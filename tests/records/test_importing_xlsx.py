"""Workbooks as people send them: several sheets, notes above the header, merged cells, a
dimension claiming the whole sheet, Excel serial dates (issue: real source files in)."""

import orjson
import pytest
from django.core.files import File
from openpyxl import Workbook
from openpyxl.styles import Font

from records.models import Guest
from records.services.imports import import_run_create, import_run_execute

pytestmark = pytest.mark.django_db

HEADER = ["identifiers.0.provider", "identifiers.0.id", "email", "city"]


def run_workbook(tmp_path, workbook: Workbook, **options):
    path = tmp_path / "guests.xlsx"
    workbook.save(path)
    with path.open("rb") as handle:
        run = import_run_create(
            uploaded_file=File(handle, name="guests.xlsx"), schema="guest", enqueue=False,
            **options,
        )  # fmt: skip
    return import_run_execute(import_run_id=run.pk, attempt=run.attempt)


def cities() -> dict[str, str]:
    return {
        g.email: orjson.loads(g.cdp_value).get("city", "") for g in Guest.objects.order_by("id")
    }


def guests_sheet(workbook: Workbook, title: str, rows: list[list]) -> None:
    sheet = workbook.create_sheet(title)
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)


def two_sheet_workbook() -> Workbook:
    workbook = Workbook()
    workbook.remove(workbook.active)
    guests_sheet(workbook, "Customers", [["email", "a@example.com", "a@example.com", "Cork"]])
    guests_sheet(workbook, "Prospects", [["email", "b@example.com", "b@example.com", "Oslo"]])
    return workbook


def test_several_sheets_and_none_chosen_is_refused_naming_them(tmp_path):
    run = run_workbook(tmp_path, two_sheet_workbook())
    assert run.status == "failed"
    assert "2 sheets (Customers, Prospects); choose the one to import" in run.message
    assert not Guest.objects.exists()


def test_the_chosen_sheet_is_imported(tmp_path):
    run = run_workbook(tmp_path, two_sheet_workbook(), sheet="Prospects")
    assert run.status == "succeeded", run.message
    assert cities() == {"b@example.com": "Oslo"}


def test_a_sheet_that_does_not_exist_is_named(tmp_path):
    run = run_workbook(tmp_path, two_sheet_workbook(), sheet="Leads")
    assert "no sheet named 'Leads' (its sheets: Customers, Prospects)" in run.message


def test_hidden_sheets_do_not_count(tmp_path):
    workbook = two_sheet_workbook()
    workbook["Prospects"].sheet_state = "hidden"
    run = run_workbook(tmp_path, workbook)
    assert run.status == "succeeded", run.message
    assert cities() == {"a@example.com": "Cork"}


def test_notes_rows_above_the_header_are_skipped(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Customer export, 30 November 2026"])
    sheet.append([])
    sheet.append(["Confidential"])
    sheet.append(HEADER)
    sheet.append(["email", "a@example.com", "a@example.com", "Cork"])
    run = run_workbook(tmp_path, workbook)
    assert run.status == "succeeded", run.message
    assert Guest.objects.get().source_row == 5
    assert run.rows_total == 1


def test_header_row_given(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["a", "b", "c", "d", "e"])  # wider than the header: detection would pick it
    sheet.append(HEADER)
    sheet.append(["email", "a@example.com", "a@example.com", "Cork"])
    run = run_workbook(tmp_path, workbook, header_row=2)
    assert run.status == "succeeded", run.message
    assert cities() == {"a@example.com": "Cork"}


def test_merged_cells_fill_their_range(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(["email", "a@example.com", "a@example.com", "Cork"])
    sheet.append(["email", "b@example.com", "b@example.com", None])
    sheet.append(["email", "c@example.com", "c@example.com", None])
    sheet.append(["email", "d@example.com", "d@example.com", "Oslo"])
    sheet.merge_cells("D2:D4")  # one city for three guests, as a person lays it out
    sheet.merge_cells("A2:A5")
    run = run_workbook(tmp_path, workbook)
    assert run.status == "succeeded", run.message
    assert cities() == {
        "a@example.com": "Cork",
        "b@example.com": "Cork",
        "c@example.com": "Cork",
        "d@example.com": "Oslo",
    }


def test_a_dimension_claiming_the_whole_sheet_stops_at_the_data(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(["email", "a@example.com", "a@example.com", "Cork"])
    sheet.cell(row=1_048_576, column=16_384).font = Font(bold=True)  # a formatted corner
    run = run_workbook(tmp_path, workbook)
    assert run.status == "succeeded", run.message
    assert run.rows_read == 1
    assert run.rows_total == 0  # the dimension said nothing true about the rows


def test_excel_serial_dates_through_a_mapping(tmp_path):
    from records.mapping.documents import parse_document

    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Mail", "Born"])
    sheet.append(["a@example.com", 36475])  # a date typed as a number: 1999-11-11
    mapping = parse_document(
        {
            "schema": "guest",
            "columns": [
                {"source": "Mail", "target": ["email", "identifiers[0].id"]},
                {"source": "Born", "target": "dateOfBirth", "date_format": "excel"},
            ],
            "constants": {"identifiers[0].provider": "email"},
        }
    )
    run = run_workbook(tmp_path, workbook, mapping=mapping)
    assert run.status == "succeeded", run.message
    assert orjson.loads(Guest.objects.get().cdp_value)["dateOfBirth"] == "1999-11-11T00:00Z"


def test_a_workbook_without_header_never_puts_a_value_in_the_message(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["anna.private@example.com", "+353 87 123 4567", "Anna", "1999-11-11"])
    run = run_workbook(tmp_path, workbook)
    assert run.status == "failed"
    assert "anna.private" not in run.message
    assert "4567" not in run.message
