"""Import pipeline tests: unusual files import correctly, wrong files import nothing.

Each test writes a small file to tmp_path and carries it out through import_run_execute, the
service the background job and the stage_import command both use.
"""

import csv
import io
import json

import orjson
import pytest
from django.core.files import File
from openpyxl import Workbook

from records.models import BatchMembership, Extension, Guest, ImportRun, Subscription, TrackingEvent
from records.services.imports import import_run_create, import_run_execute
from tests.records.factories import GuestFactory

pytestmark = pytest.mark.django_db

HEADER = "identifiers.0.provider,identifiers.0.id,email,firstName,lastName,country,ext.note"


def run_file(tmp_path, data: bytes, *, name="guests.csv", schema="guest", **options):
    path = tmp_path / name
    path.write_bytes(data)
    with path.open("rb") as handle:
        run = import_run_create(
            uploaded_file=File(handle, name=name), schema=schema, enqueue=False, **options
        )
    finished = import_run_execute(import_run_id=run.pk, attempt=run.attempt)
    assert finished is not None
    return finished


def value_of(email: str) -> dict:
    return orjson.loads(Guest.objects.get(email=email).cdp_value)


def report_rows(run: ImportRun) -> list[dict]:
    with run.error_report.open("rb") as handle:
        return list(csv.DictReader(io.StringIO(handle.read().decode())))


def assert_nothing_written():
    assert Guest.objects.count() == 0
    assert Subscription.objects.count() == 0
    assert Extension.objects.count() == 0
    assert TrackingEvent.objects.count() == 0


# -- unusual files that import correctly ----------------------------------------------------


def test_import_csv_with_utf8_bom(tmp_path):
    data = (
        "\ufeff" + HEADER + "\nemail,zoe@example.com,zoe@example.com,zoë,müller,IE,x\n"
    ).encode()
    run = run_file(tmp_path, data)
    assert run.status == "succeeded"
    value = value_of("zoe@example.com")
    assert value["firstName"] == "zoë"  # kept as given: no title case
    assert value["lastName"] == "müller"


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_import_csv_detects_other_delimiters(tmp_path, delimiter):
    lines = [HEADER, "email,ann@example.com,ann@example.com,ann,smith,IE,a, b"]
    header = HEADER.replace(",", delimiter)
    row = lines[1].replace(",", delimiter, 6)  # the last comma stays inside the note
    run = run_file(tmp_path, f"{header}\n{row}\n".encode())
    assert run.status == "succeeded", run.message
    assert run.delimiter == ""
    value = value_of("ann@example.com")
    assert value["lastName"] == "smith"
    assert value["extensions"][0]["note"] == "a, b"


def test_import_csv_with_chosen_delimiter(tmp_path):
    data = (
        HEADER.replace(",", ";") + "\nemail;ann@example.com;ann@example.com;ann;x;IE;n\n"
    ).encode()
    run = run_file(tmp_path, data, delimiter=";")
    assert run.status == "succeeded"
    assert value_of("ann@example.com")["firstName"] == "ann"


def test_import_csv_with_windows_line_ends(tmp_path):
    data = (
        HEADER
        + "\r\nemail,ann@example.com,ann@example.com,ann,smith,IE,x\r\n"
        + "email,bob@example.com,bob@example.com,bob,jones,GB,y\r\n"
    ).encode()
    run = run_file(tmp_path, data)
    assert run.status == "succeeded"
    assert run.rows_created == 2
    assert value_of("bob@example.com")["country"] == "GB"
    assert value_of("ann@example.com")["extensions"][0]["note"] == "x"


def test_import_csv_with_quoted_multiline_cells(tmp_path):
    data = (
        HEADER
        + '\nemail,ann@example.com,ann@example.com,ann,smith,IE,"line one\nline ""two"", ok"\n'
        + "email,bob@example.com,bob@example.com,bob,jones,GB,y\n"
    ).encode()
    run = run_file(tmp_path, data)
    assert run.status == "succeeded"
    assert value_of("ann@example.com")["extensions"][0]["note"] == 'line one\nline "two", ok'
    assert Guest.objects.get(email="bob@example.com").source_row == 3


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_import_csv_in_chosen_encoding(tmp_path, encoding):
    text = HEADER + "\nemail,zoe@example.com,zoe@example.com,Zoë,Müller-SStraße,IE,café\n"
    run = run_file(tmp_path, text.encode(encoding), encoding=encoding)
    assert run.status == "succeeded", run.message
    value = value_of("zoe@example.com")
    assert value["firstName"] == "Zoë"
    assert value["lastName"] == "Müller-SStraße"
    assert value["extensions"][0]["note"] == "café"


def test_import_csv_cp1252_euro_sign(tmp_path):
    text = HEADER + "\nemail,zoe@example.com,zoe@example.com,Zoë,X,IE,costs 5 €\n"
    run = run_file(tmp_path, text.encode("cp1252"), encoding="cp1252")
    assert value_of("zoe@example.com")["extensions"][0]["note"] == "costs 5 €"
    assert run.rows_created == 1


def test_import_utf16_with_bom_tab_delimited(tmp_path):
    text = HEADER.replace(",", "\t") + "\nemail\tzoe@example.com\tzoe@example.com\tZoë\tX\tIE\tn\n"
    run = run_file(tmp_path, text.encode("utf-16"))
    assert run.status == "succeeded", run.message
    assert value_of("zoe@example.com")["firstName"] == "Zoë"


def test_import_xlsx_values(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["identifiers.0.provider", "identifiers.0.id", "email", "dateOfBirth", "postCode"])
    sheet.append(["email", "ann@example.com", "ann@example.com", "1985-12-24", 12345])
    buffer = io.BytesIO()
    workbook.save(buffer)
    run = run_file(tmp_path, buffer.getvalue(), name="guests.xlsx")
    assert run.format == "xlsx"
    assert run.status == "succeeded", run.message
    value = value_of("ann@example.com")
    assert value["dateOfBirth"] == "1985-12-24T00:00Z"
    assert value["postCode"] == "12345"
    assert run.rows_total == 1


# -- wrong files: a clear message and nothing written ---------------------------------------


def assert_refused(run: ImportRun, *fragments: str) -> None:
    assert run.status == "failed"
    for fragment in fragments:
        assert fragment in run.message, run.message
    assert_nothing_written()


def test_import_refuses_undecodable_bytes(tmp_path):
    good = (HEADER + "\nemail,a@example.com,a@example.com,a,b,IE,x\n").encode()
    bad = "email,zoe@example.com,zoe@example.com,Zoë,X,IE,y\n".encode("cp1252")
    run = run_file(tmp_path, good + bad)
    assert_refused(run, "not valid UTF-8", "Windows-1252")


def test_import_refuses_bytes_undefined_in_cp1252(tmp_path):
    data = (HEADER + "\nemail,a@example.com,a@example.com,a,b,IE,x").encode() + b"\x81\n"
    run = run_file(tmp_path, data, encoding="cp1252")
    assert_refused(run, "not valid cp1252")


def test_import_refuses_binary_junk(tmp_path):
    junk = bytes(range(256)) * 40
    run = run_file(tmp_path, junk, name="guests.csv")
    assert_refused(run, "binary data")


def test_import_refuses_an_image_named_csv(tmp_path):
    run = run_file(tmp_path, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert_refused(run, "PNG image")


def test_import_refuses_empty_file(tmp_path):
    run = run_file(tmp_path, b"")
    assert_refused(run, "The file is empty.")


def test_import_refuses_blank_file(tmp_path):
    run = run_file(tmp_path, b"\xef\xbb\xbf\r\n\r\n")
    assert_refused(run, "The file is empty.")


def test_import_refuses_header_only(tmp_path):
    run = run_file(tmp_path, (HEADER + "\r\n").encode())
    assert_refused(run, "header row but no data rows")


def test_import_refuses_missing_required_columns(tmp_path):
    run = run_file(tmp_path, b"email,firstName\na@example.com,Ann\n")
    assert_refused(run, "Missing required columns", "identifiers.0.provider", "identifiers.0.id")


def test_import_refuses_unknown_columns_naming_the_closest(tmp_path):
    data = (
        b"identifiers.0.provider,identifiers.0.id,emial,lastname,favourite\n"
        b"email,a@example.com,x,y,z\n"
    )
    run = run_file(tmp_path, data)
    assert_refused(run, '"emial" (did you mean "email"?)', '"favourite"')
    assert "lastname" not in run.message  # case-insensitive match of lastName


def test_import_ignores_unknown_columns_when_asked(tmp_path):
    data = b"identifiers.0.provider,identifiers.0.id,emial,firstName\nemail,a@example.com,x,ann\n"
    run = run_file(tmp_path, data, ignore_unknown_columns=True)
    assert run.status == "succeeded"
    value = orjson.loads(Guest.objects.get().cdp_value)
    assert value["firstName"] == "ann"
    assert "email" not in value


def test_import_refuses_malformed_ndjson_with_line_number(tmp_path):
    lines = [
        json.dumps({"identifiers": [{"provider": "email", "id": "a@example.com"}]}),
        "",
        '{"identifiers": [{"provider": "email", "id": "b@example.com"}],}',
    ]
    run = run_file(tmp_path, "\n".join(lines).encode(), name="guests.ndjson")
    assert_refused(run, "Line 3 is not valid JSON")


def test_import_refuses_malformed_json_array_with_line_number(tmp_path):
    text = (
        "[\n"
        '  {"identifiers": [{"provider": "email", "id": "a@example.com"}]},\n'
        '  {"identifiers": [{"provider": "email", "id": "b@example.com"}]}\n'
        '  {"identifiers": []}\n'
        "]\n"
    )
    run = run_file(tmp_path, text.encode(), name="guests.json")
    assert_refused(run, "malformed on line 4")


def test_import_refuses_unclosed_json_array(tmp_path):
    text = '[{"identifiers": [{"provider": "email", "id": "a@example.com"}]},\n'
    run = run_file(tmp_path, text.encode(), name="guests.json")
    assert_refused(run, "line 2", "not closed")


def test_import_refuses_xlsx_formula(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["identifiers.0.provider", "identifiers.0.id", "email"])
    sheet.append(["email", "ann@example.com", "ann@example.com"])
    sheet.append(["email", '="bob"&"@example.com"', "bob@example.com"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    run = run_file(tmp_path, buffer.getvalue(), name="guests.xlsx")
    assert_refused(run, "Cell B3 holds a formula", "values")


def test_import_refuses_xlsx_that_is_not_a_workbook(tmp_path):
    run = run_file(tmp_path, b"PK\x03\x04 not really a zip", name="guests.xlsx")
    assert_refused(run, "cannot be read as an XLSX workbook")


def test_file_problem_lands_in_the_error_report(tmp_path):
    run = run_file(tmp_path, b"")
    assert report_rows(run) == [
        {
            "row": "",
            "column": "",
            "severity": "refused",
            "code": "empty_file",
            "reason": "The file is empty.",
            "identity": "",
        }
    ]


# -- rows a steward can fix are staged as invalid; only unrepresentable rows are refused --------

MIXED = (
    "identifiers.0.provider,identifiers.0.id,email,dateOfBirth,country\n"
    "email,ann@example.com,ann@example.com,1979-12-24,IE\n"
    "email,bob@example.com,bob@example.com,24/12/1979,IE\n"  # not an ISO date: invalid
    "CRM_ID,,cat@example.com,,Ireland\n"  # no identity, a country name: invalid
    "email,dan@example.com,dan@example.com,,XX\n"  # country not ISO: invalid
    "email,ann@example.com,ann@example.com,,IE\n"  # same identity as row 2: updates it
    "email,eve@example.com,eve@example.com,,IE,surplus\n"  # a cell too many: refused
)
MIXED_REPORT = [
    ("3", "dateOfBirth", "invalid", "invalid_date"),
    ("4", "country", "invalid", "invalid_country"),
    ("4", "identifiers.0.id", "invalid", "required"),
    ("4", "identifiers", "invalid", "missing_identifier"),
    ("5", "country", "invalid", "invalid_country"),
    ("6", "identifiers", "warning", "repeated_guest"),
    ("7", "", "refused", "extra_cells"),
]


def test_import_all_or_nothing_refuses_for_a_refused_row_and_reports_every_problem(tmp_path):
    run = run_file(tmp_path, MIXED.encode())
    assert_refused(run, "Nothing was imported: 1 of 6 rows could not be staged", "row 7")
    assert run.rows_bad == 1
    rows = report_rows(run)
    assert [(r["row"], r["column"], r["severity"], r["code"]) for r in rows] == MIXED_REPORT
    assert "row 2" in rows[5]["reason"]
    country = rows[1]["reason"]
    assert country == "Country must be an ISO 3166-1 alpha-2 country code such as IE."
    for row in rows:
        assert "@example.com" not in row["reason"]
        assert "1979" not in row["reason"]
        assert "Ireland" not in row["reason"]
    assert rows[0]["identity"] == "email:bob@example.com"
    assert rows[2]["identity"] == ""  # no identity


def test_import_without_refused_rows_stages_every_row_invalid_ones_included(tmp_path):
    data = MIXED.rsplit("email,eve", 1)[0]
    run = run_file(tmp_path, data.encode())
    assert run.status == "succeeded", run.message
    assert (run.rows_read, run.rows_created, run.rows_updated, run.rows_invalid) == (5, 4, 1, 3)
    assert run.rows_bad == 0
    statuses = dict(Guest.objects.values_list("email", "review_status"))
    assert statuses == {
        "ann@example.com": "new",
        "bob@example.com": "invalid",
        "cat@example.com": "invalid",
        "dan@example.com": "invalid",
    }
    ann = Guest.objects.get(email="ann@example.com")
    assert ann.source_row == 6  # the later row won
    assert "dateOfBirth" not in orjson.loads(ann.cdp_value)
    bob = Guest.objects.get(email="bob@example.com")
    assert orjson.loads(bob.cdp_value)["dateOfBirth"] == "24/12/1979"  # kept for the steward
    assert bob.date_of_birth is None
    assert [e["code"] for e in bob.validation_errors] == ["invalid_date"]
    cat = Guest.objects.get(email="cat@example.com")
    assert cat.identity_key is None
    assert cat.country == "Ireland"
    assert {e["code"] for e in cat.validation_errors} == {
        "required",
        "invalid_country",
        "missing_identifier",
    }


def test_import_skip_bad_rows_stages_the_rest(tmp_path):
    run = run_file(tmp_path, MIXED.encode(), on_error="skip")
    assert run.status == "partial"
    assert (run.rows_read, run.rows_created, run.rows_bad, run.rows_invalid) == (6, 4, 1, 3)
    assert not Guest.objects.filter(email="eve@example.com").exists()
    dan = Guest.objects.get(email="dan@example.com")
    assert dan.validation_errors[0]["code"] == "invalid_country"
    assert dan.source_row == 5
    assert dan.import_run_id == run.pk


def test_import_guest_repeated_across_batches_is_updated_by_the_later_row(tmp_path, settings):
    settings.IMPORT_BATCH_ROWS = 2
    rows = [f"email,g{i}@example.com,g{i}@example.com,First{i}" for i in range(5)]
    rows.append("email,G1@EXAMPLE.com,g1@example.com,Later")
    data = "identifiers.0.provider,identifiers.0.id,email,firstName\n" + "\n".join(rows) + "\n"
    run = run_file(tmp_path, data.encode())
    assert run.status == "succeeded"
    assert (run.rows_created, run.rows_updated) == (5, 1)
    later = Guest.objects.get(identity_key="email:g1@example.com")
    assert (later.first_name, later.source_row) == ("Later", 7)
    (line,) = report_rows(run)
    assert (line["row"], line["severity"], line["code"]) == ("7", "warning", "repeated_guest")
    assert "row 3 of this file" in line["reason"]


def test_import_guest_repeated_in_one_batch_keeps_the_later_row(tmp_path):
    data = (
        "identifiers.0.provider,identifiers.0.id,firstName,lastName\n"
        "email,a@example.com,Early,McDonald\n"
        "email,b@example.com,Other,van Beethoven\n"
        "email,A@example.com,Late,\n"
        "email,a@example.com,Last,NYC\n"
    )
    run = run_file(tmp_path, data.encode())
    assert run.status == "succeeded"
    assert (run.rows_read, run.rows_created, run.rows_updated) == (4, 2, 2)
    a = orjson.loads(Guest.objects.get(identity_key="email:a@example.com").cdp_value)
    assert (a["firstName"], a["lastName"]) == ("Last", "NYC")
    b = orjson.loads(Guest.objects.get(identity_key="email:b@example.com").cdp_value)
    assert b["lastName"] == "van Beethoven"
    assert [(r["row"], r["code"]) for r in report_rows(run)] == [
        ("4", "repeated_guest"),
        ("5", "repeated_guest"),
    ]


def test_import_cell_longer_than_limit_is_a_bad_row(tmp_path, settings):
    settings.IMPORT_MAX_CELL_CHARS = 50
    data = HEADER + "\nemail,a@example.com,a@example.com,a,b,IE," + "x" * 51 + "\n"
    run = run_file(tmp_path, data.encode())
    assert_refused(run, "longer than 50 characters")
    assert report_rows(run)[0]["column"] == "ext.note"


def test_import_text_longer_than_its_column_is_staged_invalid(tmp_path):
    data = (
        "identifiers.0.provider,identifiers.0.id,postCode,city,ext.note,extensions.1.name,"
        "ext9.x\n"
        f"email,a@example.com,{'Z' * 30},{'Y' * 300},{'x' * 1001},loyalty,1\n"
    )
    run = run_file(tmp_path, data.encode(), ignore_unknown_columns=True)
    assert run.status == "succeeded", run.message
    guest = Guest.objects.get()
    assert guest.review_status == "invalid"
    assert (guest.post_code, guest.city) == ("Z" * 30, "Y" * 300)
    reasons = {r["column"]: (r["severity"], r["reason"]) for r in report_rows(run)}
    assert reasons["postCode"] == ("invalid", "Post code is longer than 20 characters.")
    assert reasons["city"] == ("invalid", "City is longer than 255 characters.")
    assert reasons["ext.note"] == ("invalid", "Extension attribute is longer than 1000 characters.")
    for _, reason in reasons.values():
        assert "can hold" not in reason


def test_import_row_with_extra_cells_is_bad(tmp_path):
    data = "identifiers.0.provider,identifiers.0.id\nemail,a@example.com,surplus\n"
    run = run_file(tmp_path, data.encode(), on_error="skip")
    assert run.status == "partial"
    assert report_rows(run)[0]["code"] == "extra_cells"


def test_import_locked_guest_is_a_bad_row(tmp_path):
    guest = GuestFactory(email="ann@example.com")
    BatchMembership.objects.create(batch_id=7, kind="guest", record_id=guest.pk)
    data = "identifiers.0.provider,identifiers.0.id,firstName\nemail,ann@example.com,Changed\n"
    run = run_file(tmp_path, data.encode())
    assert run.status == "failed"
    assert "This guest is in batch 7, which has not finished" in report_rows(run)[0]["reason"]
    guest.refresh_from_db()
    assert guest.first_name != "Changed"


# -- re-import ------------------------------------------------------------------------------


def test_reimport_updates_matched_guests_without_duplicates(tmp_path):
    first = (
        "identifiers.0.provider,identifiers.0.id,email,firstName,subscriptions.0.name,"
        "subscriptions.0.pointOfSale,subscriptions.0.channel,subscriptions.0.status\n"
        "email,ann@example.com,ann@example.com,Ann,news,shop,EMAIL,SUBSCRIBED\n"
        "email,bob@example.com,bob@example.com,Bob,news,shop,EMAIL,SUBSCRIBED\n"
    )
    run1 = run_file(tmp_path, first.encode())
    ann = Guest.objects.get(email="ann@example.com")
    Guest.objects.filter(pk=ann.pk).update(review_status="ready")
    bob_before = Guest.objects.get(email="bob@example.com")
    Guest.objects.filter(pk=bob_before.pk).update(review_status="ready")
    second = first.replace("Ann,news,shop,EMAIL,SUBSCRIBED", "Anne,news,shop,EMAIL,UNSUBSCRIBED")
    run2 = run_file(tmp_path, second.encode(), name="guests2.csv")
    assert (run1.rows_created, run2.rows_created) == (2, 0)
    assert (run2.rows_updated, run2.rows_unchanged) == (1, 1)
    assert Guest.objects.count() == 2
    ann = Guest.objects.get(email="ann@example.com")
    assert ann.first_name == "Anne"
    assert ann.review_status == "new"  # changed: back to review
    assert list(ann.subscriptions.values_list("status", flat=True)) == ["UNSUBSCRIBED"]
    assert ann.ref == Guest.objects.get(pk=ann.pk).ref
    bob = Guest.objects.get(email="bob@example.com")
    assert bob.review_status == "ready"  # unchanged keeps the reviewer's decision
    assert bob.import_run_id == run1.pk
    assert Subscription.objects.count() == 2


def test_reimport_without_subscription_columns_keeps_subscriptions(tmp_path):
    guest = GuestFactory(
        email="ann@example.com",
        subscriptions=[{"name": "news"}],
        extensions={"ext": {"tier": "gold"}, "ext1": {"store": "Cork"}},
    )
    data = (
        "identifiers.0.provider,identifiers.0.id,firstName,ext1.store\n"
        "email,ann@example.com,Anne,Galway\n"
    )
    run = run_file(tmp_path, data.encode())
    assert run.rows_updated == 1
    guest.refresh_from_db()
    value = orjson.loads(guest.cdp_value)
    assert value["firstName"] == "Anne"
    assert value["subscriptions"] == [
        {"name": "news", "pointOfSale": "example.com", "channel": "EMAIL", "status": "SUBSCRIBED"}
    ]
    assert value["extensions"] == [
        {"name": "ext", "key": "default", "tier": "gold"},
        {"name": "ext1", "key": "default", "store": "Galway"},
    ]
    assert guest.subscriptions.count() == 1
    assert dict(guest.extensions.values_list("name", "attributes")) == {
        "ext": {"tier": "gold"},
        "ext1": {"store": "Galway"},
    }


def test_reimport_with_empty_subscription_cells_removes_subscriptions(tmp_path):
    guest = GuestFactory(email="ann@example.com", subscriptions=[{"name": "news"}])
    data = (
        "identifiers.0.provider,identifiers.0.id,email,subscriptions.0.name\n"
        "email,ann@example.com,ann@example.com,\n"
    )
    run = run_file(tmp_path, data.encode())
    assert run.rows_updated == 1
    assert guest.subscriptions.count() == 0
    assert "subscriptions" not in orjson.loads(Guest.objects.get(pk=guest.pk).cdp_value)


def test_stored_value_matches_the_rebuilt_value_after_import(tmp_path):
    from records.services.imports import guests_refresh_values

    data = (
        "identifiers.0.provider,identifiers.0.id,identifiers.1.provider,identifiers.1.id,email,"
        "dateOfBirth,phoneNumbers,street.0,street.1,subscriptions.0.name,"
        "subscriptions.0.pointOfSale,subscriptions.0.channel,subscriptions.0.status,"
        "subscriptions.0.effectiveDate,ext.tier,ext.points,ext2.store\n"
        "email,ann@example.com,CRM_ID,C-1,ann@example.com,1985-12-24,+353 1 234 5678|+353 87 1,"
        "12 main st,apt 4,news,shop,email,subscribed,2024-01-02 10:00,gold,12,cork\n"
    )
    run_file(tmp_path, data.encode())
    before = Guest.objects.get()
    assert guests_refresh_values(guest_ids=[before.pk]) == 0  # nothing to change
    assert Guest.objects.get().value_hash == before.value_hash


# -- JSON shapes ----------------------------------------------------------------------------

GUEST_VALUE = {
    "guestType": "customer",
    "firstName": "Ann",
    "email": "ann@example.com",
    "identifiers": [{"provider": "email", "id": "ann@example.com"}],
    "subscriptions": [
        {"name": "news", "pointOfSale": "shop", "channel": "EMAIL", "status": "SUBSCRIBED"}
    ],
    "extensions": [{"name": "ext", "key": "default", "points": 120, "vip": True}],
}


def test_import_json_array_of_guest_objects_losslessly(tmp_path):
    data = json.dumps([GUEST_VALUE], indent=2).encode()
    run = run_file(tmp_path, data, name="guests.json")
    assert run.format == "json"
    assert run.status == "succeeded", run.message
    assert orjson.loads(Guest.objects.get().cdp_value) == GUEST_VALUE
    assert Guest.objects.get().cdp_value == orjson.dumps(GUEST_VALUE).decode()


def test_import_ndjson_guest_objects(tmp_path):
    other = {**GUEST_VALUE, "email": "bob@example.com"}
    other["identifiers"] = [{"provider": "email", "id": "bob@example.com"}]
    data = (json.dumps(GUEST_VALUE) + "\r\n" + json.dumps(other) + "\r\n").encode()
    run = run_file(tmp_path, data, name="guests.ndjson")
    assert run.format == "ndjson"
    assert run.rows_created == 2
    assert Guest.objects.get(email="bob@example.com").source_row == 2


def test_import_batch_lines_keep_ref(tmp_path):
    ref = "0b7c7e0e-1d3b-4f0a-9d1e-2f5d9a8c6b4e"
    line = {"ref": ref, "schema": "guest", "mode": "upsert", "value": GUEST_VALUE}
    run = run_file(tmp_path, (json.dumps(line) + "\n").encode(), name="batch.ndjson")
    assert run.status == "succeeded", run.message
    guest = Guest.objects.get()
    assert str(guest.ref) == ref
    assert orjson.loads(guest.cdp_value) == GUEST_VALUE


def test_import_batch_line_ref_replaces_ref_of_a_never_sent_guest_only(tmp_path):
    fresh = GuestFactory(email="ann@example.com", identifiers=[("email", "ann@example.com")])
    sent = GuestFactory(email="bob@example.com", identifiers=[("email", "bob@example.com")])
    Guest.objects.filter(pk=sent.pk).update(delivery_status="delivered", delivered_hash="x" * 32)
    refs = ["11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-aaaaaaaaaaaa"]
    lines = []
    for ref, guest in zip(refs, (fresh, sent), strict=True):
        value = orjson.loads(guest.cdp_value)  # same value: only the ref differs
        lines.append(json.dumps({"ref": ref, "schema": "guest", "mode": "upsert", "value": value}))
    run = run_file(tmp_path, ("\n".join(lines) + "\n").encode(), name="batch.ndjson")
    assert (run.rows_updated, run.rows_unchanged) == (1, 1)
    assert str(Guest.objects.get(pk=fresh.pk).ref) == refs[0]
    assert Guest.objects.get(pk=sent.pk).ref == sent.ref


def test_import_batch_line_ref_of_another_guest_is_bad(tmp_path):
    other = GuestFactory(email="zed@example.com")
    line = {"ref": str(other.ref), "schema": "guest", "mode": "upsert", "value": GUEST_VALUE}
    run = run_file(tmp_path, (json.dumps(line) + "\n").encode(), name="batch.ndjson")
    assert run.status == "failed"
    assert report_rows(run)[0]["code"] == "ref_in_use"
    assert Guest.objects.count() == 1


def test_import_tracking_batch_lines_keep_ref(tmp_path):
    ref = "7e1d404e-9fd5-4df5-a8b4-2c1d0e9f8a7b"
    value = {
        "serviceIdentifier": "TEST_PROVIDER",
        "occurredAt": "2015-03-07T14:15:00.000Z",
        "channel": "EMAIL",
        "type": "SENT",
        "uotr": "c56a4180-65aa-42ec-a945-5fd21dec0538|0",
        "utms": {"utm_medium": "EMAIL", "utm_source": "BOXEVER"},
        "feedback": {"reasonCode": "PRICE_TOO_HIGH", "notes": "Too dear"},
    }
    line = {"ref": ref, "schema": "tracking", "mode": "insert", "value": value}
    run = run_file(tmp_path, (json.dumps(line) + "\n").encode(), name="t.ndjson", schema="tracking")
    assert run.status == "succeeded", run.message
    event = TrackingEvent.objects.get()
    assert str(event.ref) == ref
    assert orjson.loads(event.cdp_value) == value
    assert event.occurred_at.year == 2015


def test_import_tracking_csv(tmp_path):
    data = (
        "serviceIdentifier,occurredAt,channel,type,utms.utm_source,identifiers.0.provider,"
        "identifiers.0.id\nSVC,2025-01-02T03:04:05Z,email,sent,news,email,Ann@Example.com\n"
        "SVC,not a date,EMAIL,SENT,,,\n"
    )
    run = run_file(tmp_path, data.encode(), name="t.csv", schema="tracking")
    assert run.status == "succeeded"
    event = TrackingEvent.objects.get(source_row=2)
    assert event.guest_identity_key == "email:ann@example.com"
    assert event.channel == "EMAIL"
    assert event.utms == {"utm_source": "news"}
    undated = TrackingEvent.objects.get(source_row=3)  # staged for a steward to fix
    assert (undated.review_status, undated.occurred_at) == ("invalid", None)
    line = report_rows(run)[0]
    assert (line["row"], line["column"], line["severity"]) == ("3", "occurredAt", "invalid")


def test_import_json_unknown_field_is_refused(tmp_path):
    data = json.dumps([{"identifiers": [{"provider": "email", "id": "a@x.io"}], "emial": "x"}])
    run = run_file(tmp_path, data.encode(), name="g.json")
    assert_refused(run, "Row 1", '"emial" (did you mean "email"?)')


# -- child files ----------------------------------------------------------------------------


def test_subscription_file_links_by_identifier_and_by_email(tmp_path):
    ann = GuestFactory(
        email="ann@example.com", identifiers=[("email", "ann@example.com"), ("CRM_ID", "C-1")]
    )
    bob = GuestFactory(
        email="bob@example.com", subscriptions=[{"name": "news", "pointOfSale": "shop"}]
    )
    ann_status = ann.review_status
    data = (
        "identifiers.0.provider,identifiers.0.id,email,name,pointOfSale,channel,status\n"
        "CRM_ID,C-1,,news,shop,EMAIL,SUBSCRIBED\n"
        ",,BOB@example.com,news,shop,EMAIL,UNSUBSCRIBED\n"
        ",,nobody@example.com,news,shop,EMAIL,SUBSCRIBED\n"
        "CRM_ID,C-1,,offers,shop,EMAIL,WHATEVER\n"
    )
    run = run_file(tmp_path, data.encode(), name="subs.csv", schema="subscription", on_error="skip")
    assert run.status == "partial"
    assert (run.rows_created, run.rows_updated, run.rows_bad, run.rows_invalid) == (2, 1, 1, 1)
    rows = report_rows(run)
    assert (rows[0]["row"], rows[0]["column"], rows[0]["code"]) == (
        "4",
        "email",
        "guest_not_staged",
    )
    assert (rows[1]["row"], rows[1]["column"], rows[1]["code"]) == ("5", "status", "invalid_choice")
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert [s["name"] for s in orjson.loads(ann.cdp_value)["subscriptions"]] == ["news", "offers"]
    assert ann.review_status == "invalid" != ann_status
    assert orjson.loads(bob.cdp_value)["subscriptions"][0]["status"] == "UNSUBSCRIBED"
    assert bob.subscriptions.count() == 1


def test_subscription_file_all_or_nothing(tmp_path):
    GuestFactory(email="ann@example.com")
    data = (
        "email,name,pointOfSale,channel,status\n"
        "ann@example.com,news,shop,EMAIL,SUBSCRIBED\n"
        "nobody@example.com,news,shop,EMAIL,SUBSCRIBED\n"
    )
    run = run_file(tmp_path, data.encode(), name="subs.csv", schema="subscription")
    assert run.status == "failed"
    assert Subscription.objects.count() == 0


def test_extension_file_replaces_named_groups(tmp_path):
    ann = GuestFactory(
        email="ann@example.com", extensions={"ext": {"tier": "gold"}, "ext1": {"a": "1"}}
    )
    data = "email,ext.tier,ext.points\nann@example.com,platinum,10\n"
    run = run_file(tmp_path, data.encode(), name="ext.csv", schema="extension")
    assert run.status == "succeeded", run.message
    assert run.rows_updated == 1
    ann.refresh_from_db()
    assert orjson.loads(ann.cdp_value)["extensions"] == [
        {"name": "ext", "key": "default", "points": "10", "tier": "platinum"},
        {"name": "ext1", "key": "default", "a": "1"},
    ]


def test_extension_ndjson_links_by_identifier(tmp_path):
    ann = GuestFactory(email="ann@example.com", identifiers=[("CRM_ID", "C-9")])
    line = {"identifiers": [{"provider": "CRM_ID", "id": "C-9"}], "name": "ext2", "vip": True}
    run = run_file(
        tmp_path, (json.dumps(line) + "\n").encode(), name="e.ndjson", schema="extension"
    )
    assert run.rows_created == 1
    ann.refresh_from_db()
    assert orjson.loads(ann.cdp_value)["extensions"] == [
        {"name": "ext2", "key": "default", "vip": True}
    ]


def test_child_row_for_locked_guest_is_bad(tmp_path):
    guest = GuestFactory(email="ann@example.com")
    BatchMembership.objects.create(batch_id=3, kind="guest", record_id=guest.pk)
    data = "email,ext.tier\nann@example.com,gold\n"
    run = run_file(tmp_path, data.encode(), name="ext.csv", schema="extension")
    assert run.status == "failed"
    assert report_rows(run)[0]["code"] == "locked"
    assert Extension.objects.count() == 0


def test_tracking_rerun_of_the_same_run_adds_nothing_twice(tmp_path):
    from records.importing import ErrorReport, StageOptions, open_source, stage_source

    data = b"serviceIdentifier,occurredAt,type\nSVC,2025-01-01,SENT\nSVC,2025-01-02,SENT\n"
    run = run_file(tmp_path, data, name="t.csv", schema="tracking")
    assert TrackingEvent.objects.count() == 2
    with run.source_file.open("rb") as raw:
        source = open_source(raw, format="csv")
        counts = stage_source(
            source,
            options=StageOptions(schema="tracking", on_error="abort"),
            import_run_id=run.pk,
            report=ErrorReport(),
        )
    assert (counts.created, counts.unchanged) == (0, 2)
    assert TrackingEvent.objects.count() == 2


# -- the documented samples -------------------------------------------------------------------


def test_docs_samples_import_cleanly(tmp_path):
    from pathlib import Path

    samples = Path(__file__).resolve().parents[2] / "docs" / "samples"
    steps = [
        ("guests.csv", "guest", (3, 0)),
        ("guests.ndjson", "guest", (0, 2)),
        ("subscriptions.csv", "subscription", (1, 1)),
        ("extensions.csv", "extension", (0, 2)),
        ("tracking.csv", "tracking", (3, 0)),
    ]
    for name, schema, (created, updated) in steps:
        run = run_file(tmp_path, (samples / name).read_bytes(), name=name, schema=schema)
        assert run.status == "succeeded", (name, run.message)
        assert (run.rows_created, run.rows_updated, run.rows_invalid) == (created, updated, 0), name
    aoife = Guest.objects.get(email="aoife.byrne@example.com")
    value = orjson.loads(aoife.cdp_value)
    assert [s["name"] for s in value["subscriptions"]] == ["newsletter", "offers"]
    assert [e["name"] for e in value["extensions"]] == ["ext", "ext2"]
    assert value["extensions"][0]["loyaltyTier"] == "platinum"
    assert aoife.review_status == "new"
    assert str(Guest.objects.get(email="tom.walsh@example.com").ref).startswith("3f1c2d4e")
    assert Guest.objects.count() == 3


def test_guest_inserted_meanwhile_by_another_import_is_updated_not_duplicated(
    tmp_path, monkeypatch
):
    """The fast path COPYs guests it did not find; if another import inserted one since the
    lookup, the unique identity refuses the COPY and the batch is upserted instead."""
    from records.importing.staging import GuestStager

    guest = GuestFactory(email="ann@example.com", first_name="Old")
    monkeypatch.setattr(GuestStager, "_existing", lambda self, keys: {})
    data = (
        "identifiers.0.provider,identifiers.0.id,firstName\n"
        "email,ann@example.com,New\nemail,bob@example.com,Bob\n"
    )
    run = run_file(tmp_path, data.encode())
    assert run.status == "succeeded", run.message
    assert (run.rows_created, run.rows_updated) == (1, 1)
    assert Guest.objects.count() == 2
    guest.refresh_from_db()
    assert guest.first_name == "New"
    assert guest.identifiers.count() == 1


def test_import_batch_line_of_unknown_provider_and_extension_name_is_staged_invalid(tmp_path):
    # An older CDP batch line: its provider is not in this deployment's list and its extension
    # is named after a loyalty programme. A steward can fix both: staged, not refused.
    line = {
        "ref": "6f1c1d3e-8f4e-4a8e-9d3e-2b1c0a9f8e7d",
        "schema": "guest",
        "mode": "upsert",
        "value": {
            "firstName": "Ann",
            "identifiers": [{"provider": "LOYALTY_NO", "id": "L-77"}],
            "extensions": [{"name": "loyalty", "key": "default", "tier": "gold"}],
        },
    }
    run = run_file(tmp_path, orjson.dumps(line) + b"\n", name="batch.ndjson")
    assert run.status == "succeeded", run.message
    guest = Guest.objects.get()
    assert (guest.review_status, guest.identity_key) == ("invalid", None)
    assert str(guest.ref) == line["ref"]
    assert list(guest.extensions.values_list("name", "attributes")) == [
        ("loyalty", {"tier": "gold"})
    ]
    lines = {(r["column"], r["code"]): r for r in report_rows(run)}
    assert set(lines) == {
        ("identifiers.0.provider", "unknown_provider"),
        ("identifiers", "missing_identifier"),
        ("extensions.0.name", "invalid_choice"),
    }
    assert lines["extensions.0.name", "invalid_choice"]["reason"].startswith(
        "Extension name must be one of: ext, ext1"
    )
    assert {r["severity"] for r in lines.values()} == {"invalid"}


def test_import_idn_email_spellings_are_one_guest(tmp_path):
    data = (
        "identifiers.0.provider,identifiers.0.id,email\n"
        "email,Anna@XN--BCHER-KVA.de,Anna@XN--BCHER-KVA.de\n"
        "email,anna@bücher.de,anna@bücher.de\n"
    )
    run = run_file(tmp_path, data.encode())
    assert (run.rows_created, run.rows_updated) == (1, 1)
    guest = Guest.objects.get()
    assert (guest.identity_key, guest.email) == ("email:anna@bücher.de", "anna@bücher.de")
    assert [r["code"] for r in report_rows(run)] == ["repeated_guest"]
