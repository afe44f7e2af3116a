"""The steward's pages at 1280 px in a real browser: dashboard, batch page, guest list and form.

Each test asserts what the page says (and that it fits the screen) and keeps full-page
screenshots in tmp_path/screenshots as artefacts. The data is the demo generator's (names,
countries, a few deliberately invalid rows), staged through the import services; batches are
built in-process (no worker needed to show a built batch).
"""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from playwright.sync_api import Page, expect

from batches import services as batch_services
from batches.models import Batch
from records.demo import demo_csv_text
from records.models import Guest, ImportRun, ReviewStatus
from records.services.imports import import_run_create, import_run_execute
from records.services.review import records_mark_ready

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "progress"]),
]

WIDTH = 1280
DEMO_ROWS = 300


@pytest.fixture
def wide_page(page: Page) -> Page:
    page.set_viewport_size({"width": WIDTH, "height": 900})
    return page


@pytest.fixture
def not_found(wide_page: Page) -> list[str]:
    """URLs the browser got a 404 for while the test ran (favicon included)."""
    missing: list[str] = []
    wide_page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    return missing


@pytest.fixture
def people(user_factory, role_groups):
    return {
        "admin": user_factory("admin", is_staff=True, is_superuser=True, email="ad@example.org"),
        "stager": user_factory("stager", groups=("Stager",), is_staff=True),
        "reviewer": user_factory("reviewer", groups=("Reviewer",), is_staff=True),
        "approver": user_factory("approver", groups=("Approver",), is_staff=True),
    }


@pytest.fixture
def demo_guests(people) -> ImportRun:
    """DEMO_ROWS demo guests staged by the import services (3 of them invalid on purpose)."""
    run = import_run_create(
        uploaded_file=ContentFile(demo_csv_text(DEMO_ROWS).encode(), name="guests-demo.csv"),
        schema="guest",
        on_error=ImportRun.OnError.SKIP,
        user=people["stager"],
        enqueue=False,
    )
    return import_run_execute(import_run_id=run.pk, attempt=run.attempt)


@pytest.fixture
def built_batch(people, demo_guests, monkeypatch) -> Batch:
    """A guest batch of the valid demo guests, built in this process."""
    monkeypatch.setattr(
        "batches.services.scheduling.enqueue_after_commit", lambda *args, **kw: None
    )
    records_mark_ready(
        model=Guest, queryset=Guest.objects.filter(import_run=demo_guests), user=people["reviewer"]
    )
    batch = batch_services.batch_create(schema="guest", user=people["stager"], note="Demo")
    batch_services.batch_build(batch_id=batch.pk, attempt=1)
    batch.refresh_from_db()
    assert batch.status == Batch.Status.BUILT
    return batch


def fits_the_screen(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= WIDTH


def test_dashboard_two_tables_headers_on_one_line_and_a_favicon(
    wide_page: Page, admin_login, live_server, people, demo_guests, screens, not_found
):
    page = wide_page
    admin_login("admin", "pw-admin")
    page.goto(f"{live_server.url}/admin/")
    review, delivery = page.locator("#dashboard-review"), page.locator("#dashboard-delivery")
    expect(review.locator("caption")).to_have_text("Review status")
    expect(delivery.locator("caption")).to_have_text("Delivery to CDP")
    expect(review.locator("thead th")).to_have_text(
        ["Records", "New", "Ready", "Held", "Invalid", "Total"]
    )
    expect(delivery.locator("thead th")).to_have_text(
        ["Records", "Not sent", "In a batch", "Delivered", "Rejected by CDP", "Outcome unknown"]
    )
    guests = review.locator("tbody tr").first.locator("td").all_inner_texts()
    assert guests == ["297", "0", "0", "3", "300"]
    # One line per header: none is taller than its row's body text.
    line = review.locator("tbody td").first.bounding_box()["height"]
    for header in (*review.locator("thead th").all(), *delivery.locator("thead th").all()):
        assert header.bounding_box()["height"] <= line + 4, header.inner_text()
    expect(page.locator("#dashboard")).to_contain_text("created or updated")
    assert fits_the_screen(page)
    screens.take("dashboard")
    # The icon: declared by every admin page, and /favicon.ico answers too.
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(f"{live_server.url}{icon}").ok
    favicon = page.request.get(f"{live_server.url}/favicon.ico")
    assert favicon.ok
    assert favicon.headers["content-type"].startswith("image/svg")
    assert not_found == []


def test_batch_page_built_confirm_approve_and_cancel(
    wide_page: Page, admin_login, live_server, built_batch, screens
):
    page = wide_page
    batch_url = f"{live_server.url}/admin/batches/batch/{built_batch.pk}/change/"
    admin_login("approver", "pw-approver")
    page.goto(batch_url)
    progress = page.locator("#batch-progress")
    expect(progress.locator("h2")).to_have_text("Built, waiting for approval")
    # Nothing moves until someone approves: a sentence, no bar claiming 100 %.
    expect(page.locator("#batch-bar")).to_have_count(0)
    expect(page.locator("#batch-progress-text")).to_have_text(
        re.compile(
            r"297 records in 1 file \(\d+\.\d KB\), built in [\d.]+ s; waiting for approval\."
        )
    )
    size = page.locator("#batch-files tbody tr td").nth(5)
    expect(size).to_have_text(re.compile(r"\d+\.\d KB"))
    assert int(size.get_attribute("title").split()[0]) == built_batch.bytes_total
    problems = page.locator("#batch-problems li").all_inner_texts()
    assert problems, "the demo's invalid rows should be summarised"
    assert all(re.fullmatch(r"[A-Z][^_]+: \d+ records?", p) for p in problems), problems
    expect(page.locator("#batch-validation")).to_contain_text("297 records selected")
    expect(page.locator("#batch-validation")).to_contain_text("Invalid: 3")
    expect(page.locator("#batch-files")).not_to_contain_text("file sent")  # nothing sent yet
    assert fits_the_screen(page)
    screens.take("batch-built")

    # Approve asks first; "No, go back" leaves the batch as it was.
    page.locator("#batch-actions input[name=approve]").click()
    expect(page.locator("h1")).to_have_text("Approve this batch?")
    expect(page.locator("#batch-confirm-consequences")).to_contain_text(
        "You approve these 297 records in 1 file"
    )
    screens.take("batch-confirm-approve")
    page.locator("#batch-confirm-back").click()
    page.wait_for_url(batch_url)
    expect(progress.locator("h2")).to_have_text("Built, waiting for approval")
    page.locator("#batch-actions input[name=approve]").click()
    page.get_by_role("button", name="Yes, approve this batch").click()
    page.wait_for_url(batch_url)
    expect(page.locator("ul.messagelist li")).to_have_text([f"Batch {built_batch.pk} approved."])
    expect(page.locator("#batch-progress-text")).to_contain_text("approved by approver; not sent")
    expect(page.locator("#batch-bar")).to_have_count(0)
    screens.take("batch-approved")

    # Cancel asks too, and a cancelled batch's file does not read as a failure of ours.
    page.locator("#batch-actions input[name=cancel]").click()
    expect(page.locator("#batch-confirm-consequences")).to_contain_text("Nothing is sent to CDP.")
    screens.take("batch-confirm-cancel")
    page.get_by_role("button", name="Yes, cancel this batch").click()
    page.wait_for_url(batch_url)
    expect(progress.locator("h2")).to_have_text("Cancelled")
    expect(page.locator("#batch-progress-text")).to_contain_text("before anything was sent to CDP")
    expect(page.locator("#batch-bar")).to_have_count(0)
    expect(page.locator("#batch-files tbody tr td").nth(2)).to_have_text(
        "Not sent (batch cancelled)"
    )
    screens.take("batch-cancelled")


def test_guest_list_fits_1280_and_searches_by_prefix(
    wide_page: Page, admin_login, live_server, demo_guests, screens
):
    page = wide_page
    admin_login("admin", "pw-admin")
    page.goto(f"{live_server.url}/admin/records/guest/")
    screens.take("guest-list")
    headers = [h.strip() for h in page.locator("#result_list thead th").all_inner_texts()]
    assert "IDENTITY KEY" not in [h.upper() for h in headers]
    for wanted in ("EMAIL / IDENTITY", "NAME", "COUNTRY", "REVIEW STATUS", "IMPORT RUN"):
        assert wanted in [h.upper() for h in headers], headers
    assert fits_the_screen(page), "the guest list needs a horizontal scroll at 1280 px"
    # Every column is on screen (none cut off at the right edge).
    right = max(
        box["x"] + box["width"]
        for box in (h.bounding_box() for h in page.locator("#result_list thead th").all())
    )
    assert right <= WIDTH
    expect(page.locator("#searchbar_helptext, .help").first).to_contain_text("Starts with")
    # A last-name prefix in any case, then first and last name prefixes.
    kellys = Guest.objects.filter(last_name="Kelly").count()
    assert kellys
    page.fill("#searchbar", "kel")
    page.locator("#searchbar").press("Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(kellys)
    screens.take("guest-search-kel")
    first = Guest.objects.filter(last_name="Kelly").order_by("id").first().first_name
    both = Guest.objects.filter(last_name="Kelly", first_name__startswith=first[:3]).count()
    page.fill("#searchbar", f"{first[:3].lower()} kel")
    page.locator("#searchbar").press("Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(both)


def test_guest_form_selects_save_and_mark_ready_and_read_only_for_reviewer(
    wide_page: Page, admin_login, live_server, demo_guests, delivery_history_hook, screens
):
    page = wide_page
    guest = Guest.objects.filter(review_status=ReviewStatus.NEW).order_by("id").first()
    url = f"{live_server.url}/admin/records/guest/{guest.pk}/change/"
    # A reviewer without view_pii reads the record but cannot save it.
    admin_login("reviewer", "pw-reviewer")
    page.goto(url)
    expect(page.locator("input[name=_save]")).to_have_count(0)
    expect(page.locator("#save-mark-ready")).to_have_count(0)
    expect(page.locator("select#id_country")).to_have_count(0)
    assert guest.email not in page.content()
    screens.take("guest-form-reviewer-read-only")
    page.locator("#logout-form button, #logout-form input[type=submit]").first.click()

    admin_login("admin", "pw-admin")
    page.goto(url)
    for name in ("gender", "country", "language"):
        expect(page.locator(f"select#id_{name}")).to_have_count(1)
    expect(page.locator("select#id_country")).to_have_value(guest.country)
    # Delivery history comes before the person's fields, the long CDP value is folded away.
    headings = [h.strip() for h in page.locator("fieldset h2").all_inner_texts()]
    assert headings.index("Delivery history") < headings.index("Person"), headings
    screens.take("guest-form-editor")
    assert fits_the_screen(page), page.evaluate("document.documentElement.scrollWidth")
    page.select_option("select#id_language", "FR")
    page.locator("#save-mark-ready").click()
    expect(page.locator("ul.messagelist li").first).to_contain_text("1 guest marked ready.")
    guest.refresh_from_db()
    assert (guest.language, guest.review_status) == ("FR", ReviewStatus.READY)
    screens.take("guest-saved-and-ready")
