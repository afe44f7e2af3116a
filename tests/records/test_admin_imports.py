"""The ImportRun admin: "Import a file", the self-refreshing progress page, the error report."""

import io
import os
import re
import stat
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from records.models import Guest, ImportRun
from records.services.imports import import_run_create, import_run_execute

pytestmark = pytest.mark.django_db

# Row 2: country not ISO, row 3: no identity (both staged invalid); row 4: a cell too many
# (refused).
BAD = (
    b"identifiers.0.provider,identifiers.0.id,country\nemail,a@example.com,XX\nemail,,IE\n"
    b"email,b@example.com,IE,surplus\n"
)


@pytest.fixture
def stager(client, user_factory):
    client.force_login(user_factory("stager", groups=("Stager",), is_staff=True))
    return client


@pytest.fixture
def finished_run():
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"),
        schema="guest",
        on_error="skip",
        enqueue=False,
    )
    return import_run_execute(import_run_id=run.pk, attempt=run.attempt)


def test_add_form_starts_a_background_run(stager):
    url = reverse("admin:records_importrun_add")
    page = stager.get(url)
    assert page.status_code == 200
    assert "If some rows are refused" in page.content.decode()
    upload = io.BytesIO(b"identifiers.0.provider;identifiers.0.id\nemail;a@example.com\n")
    upload.name = "guests.csv"
    response = stager.post(
        url,
        {
            "file": upload,
            "schema": "guest",
            "format": "",
            "encoding": "cp1252",
            "delimiter": "semicolon",
            "on_error": "skip",
            "ignore_unknown_columns": "on",
        },
    )
    run = ImportRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:records_importrun_change", args=[run.pk])
    assert (run.status, run.format, run.encoding, run.delimiter) == (
        "pending",
        "csv",
        "cp1252",
        ";",
    )
    assert (run.on_error, run.ignore_unknown_columns) == ("skip", True)
    assert run.job_id == f"importrun-{run.pk}-a1"
    assert run.created_by.username == "stager"


def test_add_form_requires_a_file(stager):
    response = stager.post(reverse("admin:records_importrun_add"), {"schema": "guest"})
    assert response.status_code == 200
    assert ImportRun.objects.count() == 0


def test_change_page_shows_progress_and_error_report_link(stager, finished_run):
    page = stager.get(reverse("admin:records_importrun_change", args=[finished_run.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert reverse("admin:records_importrun_progress", args=[finished_run.pk]) in body
    assert 'id="importrun-bar"' in body
    assert "Download the error report (CSV)" in body
    assert finished_run.message in body
    assert 'name="_save"' not in body  # read-only
    # The reviewer's next step: the guests this run staged.
    assert f"/admin/records/guest/?import_run={finished_run.pk}" in body


def test_progress_endpoint_reports_counts(stager, finished_run):
    payload = stager.get(reverse("admin:records_importrun_progress", args=[finished_run.pk])).json()
    assert payload["status"] == "partial"
    assert payload["finished"] is True
    assert payload["percent"] == 100
    assert (payload["rows_read"], payload["rows_created"], payload["rows_bad"]) == (3, 2, 1)
    assert payload["rows_invalid"] == 2


def test_progress_of_a_running_run(stager):
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"), schema="guest", enqueue=False
    )
    ImportRun.objects.filter(pk=run.pk).update(
        status="running", rows_total=200, rows_read=50, started_at=run.created_at
    )
    payload = stager.get(reverse("admin:records_importrun_progress", args=[run.pk])).json()
    assert payload["finished"] is False
    assert payload["percent"] == 25.0


def test_error_report_download(stager, finished_run):
    response = stager.get(reverse("admin:records_importrun_error_report", args=[finished_run.pk]))
    content = b"".join(response.streaming_content).decode()
    assert response["Content-Disposition"].startswith("attachment")
    lines = content.splitlines()
    assert lines[0] == "row,column,severity,code,reason,identity"
    # The Stager sees personal data (view_pii): the row's identity, never a cell's value.
    assert lines[1] == (
        "2,country,invalid,invalid_country,"
        "Country must be an ISO 3166-1 alpha-2 country code such as IE.,email:a@example.com"
    )
    assert "3,identifiers,invalid,missing_identifier," in content
    assert "4,,refused,extra_cells," in content


def test_error_report_hides_identities_without_view_pii(client, user_factory, finished_run):
    client.force_login(user_factory("reviewer", groups=("Reviewer",), is_staff=True))
    response = client.get(reverse("admin:records_importrun_error_report", args=[finished_run.pk]))
    content = b"".join(response.streaming_content).decode()
    assert content.splitlines()[1].endswith("such as IE.,")
    assert "a@example.com" not in content


def test_error_report_is_capped_with_counts_per_code(tmp_path, settings):
    settings.IMPORT_REPORT_MAX_LINES = 3
    rows = "".join(f"email,g{i}@example.com,XX\n" for i in range(5))
    run = import_run_create(
        uploaded_file=ContentFile(b"identifiers.0.provider,identifiers.0.id,country\n"
                                  + rows.encode() + b"email,x@example.com,IE,surplus\n",
                                  name="guests.csv"),
        schema="guest",
        on_error="skip",
        enqueue=False,
    )  # fmt: skip
    run = import_run_execute(import_run_id=run.pk, attempt=run.attempt)
    with run.error_report.open("rb") as handle:
        lines = handle.read().decode().splitlines()
    assert len(lines) == 1 + 3 + 2
    assert lines[-2:] == [
        ",,invalid,invalid_country,5 lines of this code in all (the report lists the first 3 "
        "lines).,",
        ",,refused,extra_cells,1 lines of this code in all (the report lists the first 3 lines).,",
    ]


def test_auditor_can_view_but_not_import_or_delete(client, user_factory, finished_run):
    client.force_login(user_factory("auditor", groups=("Auditor",), is_staff=True))
    assert (
        client.get(reverse("admin:records_importrun_change", args=[finished_run.pk])).status_code
        == 200
    )
    assert client.get(reverse("admin:records_importrun_add")).status_code == 403
    assert (
        client.get(reverse("admin:records_importrun_delete", args=[finished_run.pk])).status_code
        == 403
    )


def test_progress_needs_view_permission(client, user_factory, finished_run):
    client.force_login(user_factory("nobody", is_staff=True))
    url = reverse("admin:records_importrun_progress", args=[finished_run.pk])
    assert client.get(url).status_code == 403


def test_source_file_and_error_report_are_readable_by_their_owner_only(finished_run):
    for field in (finished_run.source_file, finished_run.error_report):
        assert stat.S_IMODE(os.stat(default_storage.path(field.name)).st_mode) == 0o600


def test_no_view_reads_a_file_named_by_the_client(stager):
    """django-import-export's confirm step once imported any file under /tmp by its name."""
    planted = Path(tempfile.gettempdir()) / f"planted-{uuid.uuid4().hex}.csv"
    planted.write_text("email\nvictim@example.com\n")
    try:
        for url in ("/admin/records/guest/process_import/", "/admin/records/guest/import/"):
            response = stager.post(
                url, {"import_file_name": f"../../{planted.relative_to('/')}", "format": "0"}
            )
            assert response.status_code in (302, 404)
        assert planted.exists()
        assert not Guest.objects.filter(email="victim@example.com").exists()
    finally:
        planted.unlink()


# A file whose first problem is a row staged as invalid (row 2, a bad country: staged, blocks
# nothing) and whose refused row comes later (row 4: more cells than the header names).
BLOCKED = (
    b"identifiers.0.provider,identifiers.0.id,country\n"
    b"email,a@example.com,XX\n"
    b"email,b@example.com,IE\n"
    b"email,c@example.com,IE,extra\n"
)


def run_file(content: bytes, **options) -> ImportRun:
    run = import_run_create(
        uploaded_file=ContentFile(content, name="guests.csv"), schema="guest", enqueue=False,
        **options,
    )  # fmt: skip
    return import_run_execute(import_run_id=run.pk, attempt=run.attempt)


def test_failed_run_names_the_blocking_row_and_reads_as_a_failure(stager):
    run = run_file(BLOCKED)
    assert run.status == "failed"
    assert "Blocked by row 4: The row has 4 cells" in run.message
    assert "row 2" not in run.message
    body = stager.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    assert 'class="module importrun-failed"' in body
    assert '<p id="importrun-message" class="failure">Nothing was imported' in body
    # The bar shows how far it got, not a full bar that reads like success.
    payload = stager.get(reverse("admin:records_importrun_progress", args=[run.pk])).json()
    assert payload["failed"] is True
    assert payload["percent"] < 100
    assert payload["counts_text"] == "Nothing imported (3 rows read; 1 refused)."
    assert "Review the guests" not in body


def test_status_and_counts_come_from_one_payload(stager):
    """The fields below the box no longer repeat status and rows (they were stale while the
    box was live): the page and the JSON show the same texts."""
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"), schema="guest", enqueue=False
    )
    ImportRun.objects.filter(pk=run.pk).update(
        status="running", rows_total=120_000, rows_read=66_000, bytes_read=5_000_000,
        bytes_total=9_000_000, started_at=timezone.now() - timedelta(seconds=20),
    )  # fmt: skip
    page = stager.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    payload = stager.get(reverse("admin:records_importrun_progress", args=[run.pk])).json()
    assert payload["status_display"] == "Running"
    assert payload["detail_text"].startswith("66,000 of about 120,000 rows read (55 %) · 4.8 MB")
    assert " rows/s · about " in payload["detail_text"]
    assert payload["times_text"].startswith("Started ")
    assert "running for 2" in payload["times_text"]
    assert f'<h2 id="importrun-status">{payload["status_display"]}</h2>' in page
    assert payload["detail_text"].split(" · ")[0] in page
    assert "Pending" not in page
    assert payload["can_cancel"] is True
    assert 'id="importrun-cancel"' in page
    assert f'formaction="{reverse("admin:records_importrun_cancel", args=[run.pk])}"' in page


def test_times_durations_sizes_and_detected_reading(stager):
    run = run_file(b"identifiers.0.provider;identifiers.0.id\nemail;a@example.com\n")
    assert (run.detected_encoding, run.detected_delimiter) == ("utf-8-sig", ";")
    body = stager.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    assert "Detect: found Semicolon" in body
    assert "Detect: found UTF-8" in body
    assert re.search(r"finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: took \d+\.\d s", body)
    assert f'title="{run.bytes_total} bytes">{run.bytes_total} bytes<' in body
    chosen = run_file(b"identifiers.0.provider,identifiers.0.id\nemail,a@example.com\n",
                      delimiter=";", encoding="cp1252")  # fmt: skip
    body = stager.get(reverse("admin:records_importrun_change", args=[chosen.pk])).content.decode()
    assert "Semicolon (chosen)" in body
    assert "Windows-1252 (Western European, Excel on Windows) (chosen)" in body


def test_unchanged_reimport_says_it_changed_nothing(stager):
    content = b"identifiers.0.provider,identifiers.0.id\nemail,a@example.com\n"
    run_file(content)
    again = run_file(content)
    assert again.rows_unchanged == 1
    body = stager.get(reverse("admin:records_importrun_change", args=[again.pk])).content.decode()
    assert "this run changed nothing" in body
    assert "?import_run=" not in body


def test_cancel_button_stops_a_pending_run(stager):
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"), schema="guest", enqueue=False
    )
    url = reverse("admin:records_importrun_cancel", args=[run.pk])
    assert stager.get(url).status_code == 405
    response = stager.post(url)
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message.startswith("Cancelled by stager")
    again = stager.post(url, follow=True).content.decode()
    assert "has already finished (failed); there is nothing to cancel." in again


def test_auditor_cannot_cancel(client, user_factory):
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"), schema="guest", enqueue=False
    )
    client.force_login(user_factory("auditor", groups=("Auditor",), is_staff=True))
    page = client.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    assert 'id="importrun-cancel" hidden' in page
    assert client.post(reverse("admin:records_importrun_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == "pending"


def _event_rows(page: str) -> list[list[str]]:
    """The cells of the event timeline's rows, tags stripped."""
    table = page.split('id="importrun-events"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in rows
    ]


def test_change_page_lists_the_runs_events_read_only(client, user_factory):
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"),
        schema="guest",
        on_error="skip",
        enqueue=False,
    )
    import_run_execute(import_run_id=run.pk, attempt=run.attempt)
    started, finished = run.events.order_by("id")
    auditor = user_factory("auditor", groups=("Auditor",), is_staff=True)
    client.force_login(auditor)
    page = client.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    rows = _event_rows(page)
    assert [row[1:4] for row in rows] == [
        ["worker", "1", "pending → running"],
        ["worker", "1", "running → partial"],
    ]
    assert rows[0][4] == started.message == "Attempt 1 started."
    assert rows[1][4] == finished.message
    # Read-only: the auditor's page has no form field or button for the events.
    events_html = page.split('id="importrun-events"', 1)[1].split("</div>", 1)[0]
    assert "<input" not in events_html
    assert "<button" not in events_html


def test_event_timeline_names_the_user_who_cancelled(stager):
    run = import_run_create(
        uploaded_file=ContentFile(BAD, name="guests.csv"), schema="guest", enqueue=False
    )
    before = _event_rows(
        stager.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    )
    assert before == [["No status change recorded yet."]]
    stager.post(reverse("admin:records_importrun_cancel", args=[run.pk]))
    rows = _event_rows(
        stager.get(reverse("admin:records_importrun_change", args=[run.pk])).content.decode()
    )
    assert [row[1:4] for row in rows] == [["stager", "1", "pending → failed"]]
    assert rows[0][4].startswith("Cancelled by stager")
