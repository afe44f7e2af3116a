"""A CRM export mapped once in a real browser, saved, and the same layout imported again from
the admin and from `stage_import --mapping` with no further mapping (docs/mapping.md).

A real `imports` worker carries out the runs the page starts; the staged CDP values are read
from the database at the end and asserted field by field.
"""

from __future__ import annotations

import json
import re
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from playwright.sync_api import Page, expect

from records.models import Guest, ImportRun, Mapping
from tests.browser.test_journey import IMPORT_TIMEOUT_MS, open_model
from tests.processes import running_worker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True, databases=["default", "progress"]),
]

HEADER = (
    "Customer No; E-Mail ;First Name;Surname;Sex;Birth Date;Address 1;Address 2;City;Country;"
    "EMAIL opt-in;Loyalty Tier;Notes"
)
FIRST = [
    "C-1001;  Anna.Kelly@Example.com;Anna;Kelly;F;1999/11/11;12 Main St;Apt 4;Cork;Ireland;1;"
    "gold;call after 5",
    "C-1002;taro@example.jp;太郎;山田;M;1985/02/03;1-2-3 Shibuya;;東京;Japan;0;silver;",
]
# The same layout from the next month's export: other people, the columns in the same names
# but upper case, one of them moved.
SECOND_HEADER = (
    "CUSTOMER NO;E-MAIL;FIRST NAME;SURNAME;SEX;BIRTH DATE;ADDRESS 1;ADDRESS 2;CITY;COUNTRY;"
    "LOYALTY TIER;EMAIL OPT-IN;NOTES"
)
SECOND = ["C-2001;liam@example.ie;Liam;Byrne;M;1970/01/31;3 Quay St;;Galway;Ireland;bronze;1;"]


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def imports_worker(_forget_old_import_jobs, clean_queues, tmp_path):
    log = tmp_path / "worker-imports.log"
    with running_worker("imports", log, RQ_MAINTENANCE_INTERVAL="1"):
        yield
    sys.stdout.write(log.read_text(errors="replace")[-4000:])  # shown when the test fails


def upload(page: Page, base: str, path: Path) -> None:
    open_model(page, base, "importrun")
    page.locator(".object-tools").get_by_role("link", name="Import a file").click()
    page.set_input_files("#id_file", str(path))
    page.select_option("#id_schema", "guest")
    page.locator("#importrun_form input[type=submit]").click()


def field(page: Page, source: str, name: str):
    row = page.locator(f'tr.mapping-column[data-source="{source}"]')
    return row.locator(f'[name^="{name}_"]')


def wait_succeeded(page: Page, created: str) -> None:
    page.wait_for_url(re.compile(r"/admin/records/importrun/\d+/change/$"))
    expect(page.locator("#importrun-status")).to_have_text("Succeeded", timeout=IMPORT_TIMEOUT_MS)
    expect(page.locator("#importrun-summary")).to_contain_text(created)


def staged(email_or_key: str) -> dict:
    guest = Guest.objects.get(identity_key=email_or_key)
    assert guest.validation_errors == [], guest.validation_errors
    return json.loads(guest.cdp_value)


def test_crm_export_mapped_once_then_reused(
    page: Page, admin_login, live_server, user_factory, role_groups, imports_worker, screens,
    tmp_path,
):  # fmt: skip
    base = live_server.url
    user_factory("steward", groups=("Stager",), is_staff=True)
    admin_login("steward", "pw-steward")

    # The export's customer numbers are a new source system: the steward names its provider.
    open_model(page, base, "identityprovider")
    page.locator(".object-tools a.addlink").click()
    page.fill("#id_name", "CUSTOMER_NO")
    page.fill("#id_priority", "30")
    page.locator("input[name=_save]").click()
    expect(page.locator("#result_list")).to_contain_text("CUSTOMER_NO")

    # ---- 1. The first file stops at the mapping step, with suggestions filled in. -----------
    upload(page, base, write(tmp_path / "crm-2026-11.csv", HEADER, FIRST))
    page.wait_for_url(re.compile(r"/admin/records/importrun/\d+/mapping/$"))
    expect(field(page, "E-Mail", "target")).to_have_value("email, identifiers.0.id")
    expect(field(page, "Customer No", "target")).to_have_value("identifiers.1.id")
    expect(field(page, "Birth Date", "date_format")).to_have_value("%Y/%m/%d")
    expect(field(page, "Country", "values")).to_have_value("Ireland = IE\nJapan = JP")
    expect(field(page, "Address 2", "target")).to_have_value("street[]")
    expect(field(page, "Notes", "target")).to_have_value("ignore")
    expect(
        page.locator('tr.mapping-column[data-source="E-Mail"] .mapping-samples')
    ).to_contain_text(
        "Anna.Kelly@Example.com"  # the steward has view_pii
    )
    screens.take("mapping-suggested")
    # Not suggested: the loyalty tier is an extension attribute of this tenant.
    expect(field(page, "Loyalty Tier", "target")).to_have_value("ignore")
    field(page, "Loyalty Tier", "target").fill("ext.loyaltyTier")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#mapping-preview")
    expect(preview.locator(".preview-row")).to_have_count(2)
    expect(preview.locator(".preview-row").first).to_contain_text('"loyaltyTier": "gold"')
    expect(preview.locator(".preview-ok")).to_have_count(2)
    screens.take("mapping-preview")
    page.fill("#id_mapping_name", "CRM export")
    page.get_by_role("button", name="Import", exact=True).click()
    wait_succeeded(page, "2 created")
    screens.take("mapped-import-succeeded")

    anna = staged("email:anna.kelly@example.com")
    assert anna["email"] == "anna.kelly@example.com"
    assert anna["identifiers"] == [
        {"provider": "email", "id": "anna.kelly@example.com"},
        {"provider": "CUSTOMER_NO", "id": "C-1001"},
    ]
    assert (anna["firstName"], anna["lastName"], anna["gender"]) == ("Anna", "Kelly", "female")
    assert anna["dateOfBirth"] == "1999-11-11T00:00Z"
    assert anna["street"] == ["12 Main St", "Apt 4"]
    assert (anna["city"], anna["country"]) == ("Cork", "IE")
    assert anna["subscriptions"] == [
        {"name": "newsletter", "pointOfSale": "web", "channel": "EMAIL", "status": "SUBSCRIBED"}
    ]
    assert anna["extensions"] == [{"name": "ext", "key": "default", "loyaltyTier": "gold"}]
    taro = staged("email:taro@example.jp")
    assert (taro["firstName"], taro["lastName"], taro["city"]) == ("太郎", "山田", "東京")
    assert (taro["country"], taro["subscriptions"][0]["status"]) == ("JP", "UNSUBSCRIBED")
    mapping = Mapping.objects.get()
    assert (mapping.name, mapping.version) == ("CRM export", 1)

    # ---- 2. Next month's file of the same layout: the saved mapping is chosen already. ------
    upload(page, base, write(tmp_path / "crm-2026-12.csv", SECOND_HEADER, SECOND))
    page.wait_for_url(re.compile(r"/admin/records/importrun/\d+/mapping/$"))
    expect(page.locator("#mapping-saved")).to_contain_text("Using the saved mapping CRM export")
    expect(page.locator("#mapping-problems")).to_have_count(0)
    screens.take("mapping-preselected")
    page.get_by_role("button", name="Import", exact=True).click()
    wait_succeeded(page, "1 created")
    liam = staged("email:liam@example.ie")
    assert liam["identifiers"][1] == {"provider": "CUSTOMER_NO", "id": "C-2001"}
    assert (liam["country"], liam["extensions"][0]["loyaltyTier"]) == ("IE", "bronze")
    assert liam["subscriptions"][0]["status"] == "SUBSCRIBED"
    run = ImportRun.objects.latest("pk")
    assert (run.mapping.name, run.mapping_version) == ("CRM export", 1)
    assert Mapping.objects.get().version == 1  # nothing was mapped again

    # ---- 3. And from automation, by the mapping's name. -------------------------------------
    third = write(tmp_path / "crm-2027-01.csv", HEADER, [FIRST[0].replace("Cork", "Dublin")])
    call_command("stage_import", str(third), "--schema", "guest", "--mapping", "CRM export",
                 stdout=StringIO())  # fmt: skip
    assert staged("email:anna.kelly@example.com")["city"] == "Dublin"
    assert Guest.objects.count() == 3
