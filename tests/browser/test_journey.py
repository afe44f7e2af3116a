"""The whole journey in a real browser (DESIGN.md section 8): import → review → build → approve
(by someone else) → send → delivery history, each step done by its role through the admin.

Behind the live server run a real `imports` worker and a real `batches` worker talking to the
HTTPS CDP sandbox; what CDP received is read from the sandbox, not from what the app believes.
Only set-up (users in their groups) and the final checks touch the database directly.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from batches.models import BatchItem
from records.models import Guest, ReviewStatus

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "progress"]),
]

ROWS = 40
INVALID_ROWS = {7, 23}  # 0-based data rows whose country is not an ISO 3166-1 code
FILE_NAME = "journey-guests.csv"
# Bounded waits for the background work (the workers are fast here; CI machines are slower).
IMPORT_TIMEOUT_MS = 60_000
BUILD_TIMEOUT_MS = 60_000
SEND_TIMEOUT_MS = 90_000


def email_of(n: int) -> str:
    return f"journey.guest{n:02d}@example.com"


def write_guest_csv(path: Path) -> list[str]:
    """A guest file in the documented dotted convention (docs/import-formats.md section 1);
    two rows break a CDP rule (invalid country) and are staged as invalid. Returns the emails."""
    header = [
        "identifiers.0.provider",
        "identifiers.0.id",
        "email",
        "firstName",
        "lastName",
        "country",
        "subscriptions.0.name",
        "subscriptions.0.pointOfSale",
        "subscriptions.0.channel",
        "subscriptions.0.status",
        "ext.loyaltyTier",
    ]
    emails = []
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for n in range(ROWS):
            email = email_of(n)
            emails.append(email)
            country = "ZZ" if n in INVALID_ROWS else ("IE" if n % 2 else "DE")
            writer.writerow(
                [
                    "email",
                    email,
                    email,
                    f"Aoife{n}",
                    "Journeyperson",
                    country,
                    "newsletter" if n % 3 == 0 else "",
                    "shop.example.com" if n % 3 == 0 else "",
                    "EMAIL" if n % 3 == 0 else "",
                    "SUBSCRIBED" if n % 3 == 0 else "",
                    "gold" if n % 4 == 0 else "",
                ]
            )
    return emails


def log_out(page: Page, base: str) -> None:
    # The admin's logout is a POST (a form in the header).
    page.locator("#logout-form button, #logout-form input[type=submit]").first.click()
    page.wait_for_url(f"{base}/admin/logout/")


def open_model(page: Page, base: str, model: str) -> None:
    """From the admin index, follow the app list's link to a model's change list."""
    page.goto(f"{base}/admin/")
    page.locator(f"#content-main tr.model-{model} th a").click()


def expect_messages(page: Page, *texts: str) -> None:
    """The admin's messages after a redirect, exactly (waits for the new page)."""
    expect(page.locator("ul.messagelist li")).to_have_text(list(texts))


def test_journey_import_review_build_approve_send_and_audit(
    page: Page,
    admin_login,
    live_server,
    user_factory,
    role_groups,
    delivery_history_hook,
    journey_workers,
    screens,
    tmp_path,
):
    sandbox = journey_workers
    base = live_server.url
    # A small team: the stager may approve batches too, so only the four-eyes rule (not a
    # missing permission) keeps them from approving their own.
    user_factory("stager", groups=("Stager", "Approver"), is_staff=True, email="s@example.org")
    user_factory("reviewer", groups=("Reviewer",), is_staff=True)
    user_factory("approver", groups=("Approver",), is_staff=True, email="a@example.org")
    user_factory("auditor", groups=("Auditor",), is_staff=True)
    source = tmp_path / FILE_NAME
    emails = write_guest_csv(source)

    # ---- 1. The stager imports the file in the background and watches it finish. ----------
    admin_login("stager", "pw-stager")
    open_model(page, base, "importrun")
    screens.take("import-runs")
    page.locator(".object-tools").get_by_role("link", name="Import a file").click()
    expect(page.locator("h1")).to_have_text("Import a file")
    page.set_input_files("#id_file", str(source))
    page.select_option("#id_schema", "guest")
    screens.take("import-form")
    page.locator("#importrun_form input[type=submit]").click()
    page.wait_for_url(re.compile(r"/admin/records/importrun/\d+/change/$"))
    run_id = int(re.search(r"/importrun/(\d+)/change/", page.url).group(1))
    # (Its "started" message is not asserted: a run this small can finish before the check,
    # and the page then reloads itself, which consumes the message.)
    # The page polls its progress and reloads itself once the run has finished.
    expect(page.locator("#importrun-status")).to_have_text("Succeeded", timeout=IMPORT_TIMEOUT_MS)
    expect(page.locator("#importrun-bar")).to_have_attribute("value", "100")
    expect(page.locator("#importrun-summary")).to_have_text(
        "40 created, 0 updated, 0 unchanged, 2 staged as invalid."
    )
    expect(page.locator("#importrun-detail")).to_have_text("40 of about 40 rows read (100 %)")
    screens.take("import-succeeded")
    log_out(page, base)

    # ---- 2. The reviewer filters the run's guests (masked) and marks them ready. -----------
    admin_login("reviewer", "pw-reviewer")
    open_model(page, base, "guest")
    page.locator("#changelist-filter a", has_text=f"#{run_id} {FILE_NAME}").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(ROWS)
    html = page.content()
    assert not [e for e in emails if e in html], "a reviewer without view_pii sees emails"
    assert "Journeyperson" not in html
    assert "Aoife1" not in html
    assert "***" in page.locator("#result_list").inner_text()
    screens.take("reviewer-guests-masked")
    page.locator("#action-toggle").check()
    page.select_option("select[name=action]", "mark_ready")
    page.locator("button[name=index]").click()
    expect_messages(
        page, "38 guests marked ready. 2 skipped because they are invalid (fix them first)."
    )
    screens.take("reviewer-marked-ready")
    # The list now says so, row by row: 38 ready and the 2 invalid ones untouched.
    statuses = Counter(
        text.strip()
        for text in page.locator("#result_list tbody td.field-review_status").all_inner_texts()
    )
    assert statuses == {"Ready": 38, "Invalid": 2}
    log_out(page, base)

    # ---- 3. The stager creates a guest batch; the build runs in the background. ------------
    admin_login("stager", "pw-stager")
    open_model(page, base, "batch")
    page.locator(".object-tools a.addlink").click()
    screens.take("batch-create-form")
    page.select_option("#id_schema", "guest")
    page.fill("#id_note", "Browser journey")
    page.get_by_role("button", name="Create and build").click()
    page.wait_for_url(re.compile(r"/admin/batches/batch/\d+/change/$"))
    batch_url = page.url
    batch_id = int(re.search(r"/batch/(\d+)/change/", batch_url).group(1))
    expect_messages(page, f"Batch {batch_id} created; it is being built.")
    progress = page.locator("#batch-progress h2")
    expect(progress).to_have_text("Built, waiting for approval", timeout=BUILD_TIMEOUT_MS)
    screens.take("stager-batch-built")
    # Waiting for a person: the page no longer reloads itself under the reader, and the
    # sections below the form start below it (not behind it).
    expect(page.locator("meta[http-equiv=refresh]")).to_have_count(0)
    form_bottom = page.locator("#batch_form").bounding_box()
    files_top = page.locator("#batch-files").bounding_box()
    assert files_top["y"] >= form_bottom["y"] + form_bottom["height"]
    # Four eyes: the creator, although an approver, gets no approve button but a sentence.
    actions = page.locator("#batch-actions")
    expect(actions.locator("input[name=approve]")).to_have_count(0)
    expect(actions).to_contain_text("Waiting for approval by someone other than stager")
    # And a hand-made approve request (the form the button would post) is refused, readably.
    page.evaluate(
        """(url) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = url;
            const token = document.querySelector("input[name=csrfmiddlewaretoken]");
            form.appendChild(token.cloneNode());
            document.body.appendChild(form);
            form.submit();
        }""",
        f"/admin/batches/batch/{batch_id}/approve/",
    )
    page.wait_for_url(batch_url)
    expect_messages(
        page, "A batch must be approved by someone other than the person who created it."
    )
    expect(progress).to_have_text("Built, waiting for approval")
    screens.take("stager-approve-refused")
    log_out(page, base)

    # ---- 4. The approver inspects the files and masked samples, approves and sends. --------
    admin_login("approver", "pw-approver")
    open_model(page, base, "batch")
    page.locator("#result_list tbody tr th a", has_text=str(batch_id)).first.click()
    page.wait_for_url(batch_url)
    expect(progress).to_have_text("Built, waiting for approval")
    file_rows = page.locator("#batch-files tbody tr")
    expect(file_rows).to_have_count(1)
    cells = file_rows.first.locator("td").all_inner_texts()
    assert cells[4].strip() == "38"  # records
    assert re.fullmatch(r"\d+(\.\d)? (bytes|KB)", cells[5].strip())  # a size people read
    assert re.fullmatch(r"[0-9a-f]{32}", cells[6].strip())  # MD5
    expect(page.locator("#batch-samples h2")).to_have_text("Sample lines (personal data masked)")
    samples = page.locator("#batch-samples pre").all_inner_texts()
    assert samples
    assert all('"schema":"guest"' in line for line in samples)
    assert all("***" in line for line in samples)
    assert not [e for e in emails if e in page.content()], "the approver sees emails"
    screens.take("approver-batch-built")
    # Approving asks first, saying what it does; only the second click approves.
    page.locator("#batch-actions input[name=approve]").click()
    page.wait_for_url(f"{batch_url.removesuffix('change/')}approve/?approve=*")
    expect(page.locator("#batch-confirm-consequences")).to_contain_text("You approve these 38")
    screens.take("approver-confirm-approve")
    page.get_by_role("button", name="Yes, approve this batch").click()
    page.wait_for_url(batch_url)
    expect_messages(page, f"Batch {batch_id} approved.")
    expect(progress).to_have_text("Approved, not sent yet")
    approved_md5 = page.locator("#batch-files tbody tr td").nth(7).inner_text().strip()
    assert approved_md5 == cells[6].strip()
    page.locator("#batch-actions input[name=send]").click()
    expect(page.locator("#batch-confirm-consequences")).to_contain_text("cannot be undone")
    page.get_by_role("button", name="Yes, send to cdp").click()
    page.wait_for_url(batch_url)
    expect_messages(page, f"Batch {batch_id} is being sent to CDP.")
    screens.take("approver-batch-sending")
    # The page refreshes itself while the batch is in flight and stops once it has ended.
    expect(progress).to_have_text("Succeeded", timeout=SEND_TIMEOUT_MS)
    expect(page.locator("#batch-progress")).to_contain_text("1 of 1 file finished at CDP")
    expect(file_rows.first.locator("td").nth(2)).to_have_text("Success")
    expect(file_rows.first.locator("td").nth(3)).to_have_text("success")
    timeline = page.locator("#batch-events").inner_text()
    for step in ("built → approved", "approved → uploading", "succeeded"):
        assert step in timeline, f"{step!r} missing from the event timeline"
    batch_ref = file_rows.first.locator("td").nth(1).locator("code").first.inner_text().strip()
    screens.take("approver-batch-succeeded")
    log_out(page, base)

    # ---- 5. The auditor finds one guest by email and reads its delivery history. -----------
    admin_login("auditor", "pw-auditor")
    open_model(page, base, "guest")
    page.fill("#searchbar", email_of(5))
    page.locator("#searchbar").press("Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.locator("#result_list tbody tr th a").click()
    history = page.locator(".field-delivery_history")
    expect(history.locator("tbody tr")).to_have_count(1)
    row = history.locator("tbody tr").first.locator("td").all_inner_texts()
    assert row[0].strip() == f"Batch {batch_id} (Succeeded)"
    assert row[1].strip() == "1 (Success)"
    assert row[2].strip() == batch_ref
    # The line of the file this guest was written on (the build does not sort by id).
    guest = Guest.objects.get(email=email_of(5))
    line = BatchItem.objects.get(file__batch_id=batch_id, record_id=guest.pk).line
    assert row[3].strip() == str(line)
    assert row[4].strip() == "Delivered"
    assert row[8].strip() == "approver"
    assert email_of(5) not in page.content(), "the auditor sees the email"
    screens.take("auditor-guest-history")

    # ---- 6. What CDP received: the 38 valid guests, each once. ------------------------------
    guests = Guest.objects.filter(import_run_id=run_id)
    valid_refs = {
        str(r)
        for r in guests.exclude(review_status=ReviewStatus.INVALID).values_list("ref", flat=True)
    }
    invalid_refs = {
        str(r)
        for r in guests.filter(review_status=ReviewStatus.INVALID).values_list("ref", flat=True)
    }
    assert len(valid_refs) == 38
    assert len(invalid_refs) == 2
    arrived: Counter = Counter()
    remote_batches = sandbox.control.batches()
    assert len(remote_batches) == 1
    assert [remote["ref"] for remote in remote_batches] == [batch_ref]
    seen = sandbox.control.batch(batch_ref)
    assert (seen["status"], seen["upload_count"], seen["records_truncated"]) == (
        "success",
        1,
        False,
    )
    arrived.update(record["ref"] for record in seen["records"])
    assert set(arrived) == valid_refs
    assert set(arrived.values()) == {1}, "a record arrived twice"
    assert not invalid_refs & set(arrived)
