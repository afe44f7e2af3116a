"""The journey when things go wrong, each step by its role in a real browser: a refused import,
CDP answering 503 while the approver watches, and a batch CDP partly rejects.

Real `imports` and `batches` workers talk to the HTTPS sandbox, whose fault injection makes
CDP answer 503 twice and reject three chosen records. Set-up (users, the faults, which guests
CDP rejects) touches the database and the sandbox directly; every check reads the pages.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from records.models import Guest
from tests.batches.conftest import worker_settings
from tests.browser.test_journey import (
    BUILD_TIMEOUT_MS,
    IMPORT_TIMEOUT_MS,
    SEND_TIMEOUT_MS,
    expect_messages,
    log_out,
    open_model,
)
from tests.processes import running_worker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "progress"]),
]

HEADER = ["identifiers.0.provider", "identifiers.0.id", "email", "lastName", "country"]
GOOD_ROWS = 8


def email_of(n: int) -> str:
    return f"fault.guest{n}@example.com"


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def upload(page: Page, base: str, path: Path) -> int:
    open_model(page, base, "importrun")
    page.locator(".object-tools").get_by_role("link", name="Import a file").click()
    page.set_input_files("#id_file", str(path))
    page.select_option("#id_schema", "guest")
    page.locator("#importrun_form input[type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/records/importrun/\d+/change/$"))
    return int(re.search(r"/importrun/(\d+)/change/", page.url).group(1))


@pytest.fixture
def fault_workers(journey_sandbox, _forget_old_import_jobs, clean_queues, tmp_path, request,
                  settings, monkeypatch):  # fmt: skip
    """As journey_workers, with retries 5 s apart: long enough to read the retry note."""
    request.getfixturevalue("_forget_old_jobs")
    journey_sandbox.control.reset()
    settings.CDP_BASE_URL = journey_sandbox.base_url
    settings.CDP_CLIENT_KEY = journey_sandbox.client_key
    settings.CDP_API_TOKEN = journey_sandbox.api_token
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", journey_sandbox.ca_bundle)
    logs = tmp_path / "worker-imports.log", tmp_path / "worker-batches.log"
    batches_env = worker_settings(journey_sandbox, CDP_RETRY_INTERVALS="5,5,5")
    with (
        running_worker("imports", logs[0], RQ_MAINTENANCE_INTERVAL="1"),
        running_worker("batches", logs[1], **batches_env),
    ):
        yield journey_sandbox
    for log in logs:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:])
        sys.stdout.write(f"--- {log.name} (last 60 lines) ---\n{tail}\n")


def test_journey_refused_import_cdp_503_and_a_partially_failed_batch(
    page: Page, admin_login, live_server, user_factory, role_groups, fault_workers, screens,
    tmp_path,
):  # fmt: skip
    sandbox = fault_workers
    base = live_server.url
    user_factory("stager", groups=("Stager",), is_staff=True, email="s@example.org")
    user_factory("reviewer", groups=("Reviewer",), is_staff=True)
    user_factory("approver", groups=("Approver",), is_staff=True, email="a@example.org")
    user_factory("auditor", groups=("Auditor",), is_staff=True)

    # ---- 1. The stager's import is refused: the page says so and names the blocking row. ---
    bad = write_csv(
        tmp_path / "refused.csv",
        [
            ["email", email_of(90), email_of(90), "Byrne", "ZZ"],  # row 2: staged as invalid
            ["email", email_of(91), email_of(91), "Byrne", "IE"],
            ["email", email_of(92), email_of(92), "Byrne", "IE", "stray"],  # row 4: refused
        ],
    )
    admin_login("stager", "pw-stager")
    upload(page, base, bad)
    box = page.locator("#importrun-progress")
    expect(page.locator("#importrun-status")).to_have_text("Failed", timeout=IMPORT_TIMEOUT_MS)
    expect(box).to_have_class(re.compile(r"\bimportrun-failed\b"))
    message = page.locator("#importrun-message")
    expect(message).to_contain_text("Nothing was imported: 1 of 3 rows could not be staged.")
    expect(message).to_contain_text("Blocked by row 4: The row has 6 cells")
    expect(page.locator("#importrun-summary")).to_have_text(
        "Nothing imported (3 rows read; 1 refused)."
    )
    assert int(page.locator("#importrun-bar").get_attribute("value").split(".")[0]) < 100
    expect(page.locator("#importrun-cancel")).to_be_hidden()
    expect(page.locator("#importrun-records")).to_have_count(0)
    expect(page.locator(".field-delimiter_display")).to_contain_text("Detect: found Comma")
    screens.take("stager-import-refused")

    # ---- 2. The corrected file imports. --------------------------------------------------
    good = write_csv(
        tmp_path / "corrected.csv",
        [["email", email_of(n), email_of(n), "Byrne", "IE"] for n in range(GOOD_ROWS)],
    )
    run_id = upload(page, base, good)
    expect(page.locator("#importrun-status")).to_have_text("Succeeded", timeout=IMPORT_TIMEOUT_MS)
    expect(page.locator("#importrun-summary")).to_have_text(
        f"{GOOD_ROWS} created, 0 updated, 0 unchanged, 0 staged as invalid."
    )
    expect(page.locator("#importrun-times")).to_contain_text(re.compile(r"took \d"))
    screens.take("stager-import-succeeded")
    log_out(page, base)

    # ---- 3. The reviewer marks the run's guests ready. -----------------------------------
    admin_login("reviewer", "pw-reviewer")
    page.goto(f"{base}/admin/records/guest/?import_run={run_id}")
    expect(page.locator("#result_list tbody tr")).to_have_count(GOOD_ROWS)
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "mark_ready")
    page.locator("button[name=index]").click()
    expect_messages(page, f"{GOOD_ROWS} guests marked ready.")
    log_out(page, base)

    # CDP will answer the first two allocations 503 and reject three of the guests.
    guests = list(Guest.objects.filter(import_run_id=run_id).order_by("source_row"))
    rejected = {guests[1].ref: "Validation error", guests[2].ref: "Validation error"}
    rejected[guests[3].ref] = "Not enough identifying information"
    sandbox.control.fault(
        faults=[{"target": "allocate", "kind": "503", "count": 2}],
        fail_records={str(ref): {"code": "400", "message": m} for ref, m in rejected.items()},
    )

    # ---- 4. The stager builds a batch. ---------------------------------------------------
    admin_login("stager", "pw-stager")
    page.goto(f"{base}/admin/batches/batch/add/")
    page.select_option("#id_schema", "guest")
    page.get_by_role("button", name="Create and build").click()
    page.wait_for_url(re.compile(r"/admin/batches/batch/\d+/change/$"))
    batch_url = page.url
    expect(page.locator("#batch-phase")).to_have_text(
        "Built, waiting for approval", timeout=BUILD_TIMEOUT_MS
    )
    log_out(page, base)

    # ---- 5. The approver sends it and watches CDP's 503s being retried, live. -------------
    admin_login("approver", "pw-approver")
    page.goto(batch_url)
    page.locator("#batch-actions input[name=approve]").click()
    page.get_by_role("button", name="Yes, approve this batch").click()
    page.wait_for_url(batch_url)
    page.locator("#batch-actions input[name=send]").click()
    page.get_by_role("button", name="Yes, send to cdp").click()
    page.wait_for_url(batch_url)
    # A marker that a full-page reload would wipe: the retry note arrives without one.
    page.evaluate("window.__sameDocument = true")
    note = page.locator("#batch-retries .retry-note").first
    expect(note).to_contain_text("File 1: CDP answered HTTP 503", timeout=SEND_TIMEOUT_MS)
    expect(note).to_contain_text("of 8; the next one starts by itself")
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded itself"
    expect(page.locator("#batch-phase")).to_have_text("Uploading")
    screens.take("approver-cdp-503-retried")

    # ---- 6. CDP rejects three records: the page lists them, grouped and masked. -----------
    expect(page.locator("#batch-phase")).to_have_text("Partially failed", timeout=SEND_TIMEOUT_MS)
    expect(page.locator("#batch-progress")).to_have_class(re.compile(r"\bbatch-failed\b"))
    expect(page.locator("#batch-retries .retry-note")).to_have_count(0)
    rejected_box = page.locator("#batch-rejected")
    expect(rejected_box.locator("h2")).to_have_text("Rejected records (3) · personal data masked")
    groups = rejected_box.locator("#batch-rejection-groups li")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_contain_text("A value CDP does not accept: 2 records")
    expect(groups.nth(1)).to_contain_text("CDP could not tell who the guest is: 1 record")
    rows = rejected_box.locator("#batch-rejected-table tbody tr")
    expect(rows).to_have_count(3)
    assert email_of(1) not in page.content(), "the approver sees a rejected guest's email"
    expect(rows.first.locator("td").nth(3)).to_have_text("400")
    screens.take("approver-batch-partially-failed")
    groups.nth(1).locator("a").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Not enough identifying information")
    with page.expect_download() as download:
        page.locator("#batch-rejected-csv").click()
    lines = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    assert str(guests[3].ref) in lines[1]
    log_out(page, base)

    # ---- 7. The auditor finds the rejected guests by CDP's answer. ------------------------
    admin_login("auditor", "pw-auditor")
    open_model(page, base, "guest")
    page.locator("#changelist-filter a", has_text="A value CDP does not accept").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    delivery = page.locator("#result_list td.field-delivery_display").first
    expect(delivery).to_contain_text("Rejected by CDP")
    expect(delivery.locator("small")).to_have_text("400 Validation error")
    screens.take("auditor-guests-rejected-by-cdp")
    log_out(page, base)

    # ---- 8. The stager may re-send; the confirm page says what it leaves out. -------------
    admin_login("stager", "pw-stager")
    page.goto(batch_url)
    page.locator("#batch-actions input[name=resend]").click()
    consequences = page.locator("#batch-confirm-consequences")
    expect(consequences).to_contain_text(
        "It leaves out 3 rejected records not changed since CDP rejected them"
    )
    screens.take("stager-resend-confirm")
