"""The mapping step of an import in the admin, saved mappings and identity providers."""

import html
import io
import json
from pathlib import Path

import pytest
from django.urls import reverse

from records.models import Guest, IdentityProvider, ImportRun, Mapping
from records.services.imports import import_run_execute

pytestmark = pytest.mark.django_db

CRM_CSV = Path(__file__).resolve().parents[2] / "docs" / "samples" / "crm-export.csv"


@pytest.fixture
def stager(client, user_factory):
    """May import and map, but not see personal data (the masking is what is tested)."""
    perms = ("records.add_importrun", "records.view_importrun", "records.add_mapping")
    client.force_login(user_factory("stager", perms=perms, is_staff=True))
    return client


@pytest.fixture
def steward(client, user_factory):
    user = user_factory("steward", groups=("Stager",), perms=("records.view_pii",), is_staff=True)
    client.force_login(user)
    return client


def upload(client, content: bytes, name="crm-export.csv"):
    handle = io.BytesIO(content)
    handle.name = name
    return client.post(
        reverse("admin:records_importrun_add"),
        {
            "file": handle,
            "schema": "guest",
            "format": "",
            "encoding": "",
            "delimiter": "",
            "on_error": "abort",
        },  # fmt: skip
    )


def mapping_form(page) -> dict:
    """The fields of the mapping form as the page filled them in (what a browser would post)."""
    from html.parser import HTMLParser

    fields: dict = {}

    class Parser(HTMLParser):
        select = None
        textarea = None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "input" and a.get("name") and a.get("type") != "submit":
                if a.get("type") == "checkbox" and "checked" not in a:
                    return
                fields[a["name"]] = a.get("value", "")
            elif tag == "select" and a.get("name"):
                self.select = a["name"]
                fields.setdefault(a["name"], "")
            elif tag == "option" and self.select and "selected" in a:
                fields[self.select] = a.get("value", "")
            elif tag == "textarea":
                self.textarea = a["name"]
                fields[a["name"]] = ""

        def handle_endtag(self, tag):
            if tag == "select":
                self.select = None
            if tag == "textarea":
                self.textarea = None

        def handle_data(self, data):
            if self.textarea:
                fields[self.textarea] += data

    html = page.content.decode()
    Parser().feed(html[html.index('id="mapping_form"') :])
    fields.pop("mapping", None)
    return fields


def test_a_file_of_another_layout_goes_to_the_mapping_step(stager):
    response = upload(stager, CRM_CSV.read_bytes())
    run = ImportRun.objects.get()
    assert run.status == "mapping"
    assert run.job_id == ""
    assert response["Location"] == reverse("admin:records_importrun_mapping", args=[run.pk])


def test_a_cdp_shaped_file_starts_at_once(stager):
    response = upload(stager, b"identifiers.0.provider,identifiers.0.id\nemail,a@example.com\n")
    run = ImportRun.objects.get()
    assert run.status == "pending"
    assert response["Location"] == reverse("admin:records_importrun_change", args=[run.pk])


def test_mapping_step_shows_suggestions_masked_samples_and_a_preview(stager):
    upload(stager, CRM_CSV.read_bytes())
    run = ImportRun.objects.get()
    page = stager.get(reverse("admin:records_importrun_mapping", args=[run.pk]))
    body = page.content.decode()
    fields = mapping_form(page)
    assert fields["target_1"] == "email, identifiers.0.id"  # " E-Mail " by alias
    assert fields["target_5"] == "dateOfBirth"
    assert fields["date_format_5"] == "%Y/%m/%d"
    assert "Ireland = IE" in fields["values_9"]
    assert "anna.kelly" not in body.casefold()  # no view_pii: samples and preview masked
    assert "McDonald" not in body
    assert "A***" in body
    assert 'class="preview-row"' in body


def test_mapping_step_maps_saves_and_the_same_layout_is_preselected(steward):
    IdentityProvider.objects.create(name="CUSTOMER_NO", priority=30)
    upload(steward, CRM_CSV.read_bytes())
    run = ImportRun.objects.get()
    url = reverse("admin:records_importrun_mapping", args=[run.pk])
    fields = mapping_form(steward.get(url))
    fields.update(target_12="ignore", mapping_name="CRM export", action="import")
    response = steward.post(url, fields)
    assert response.status_code == 302, mapping_form(response)
    run.refresh_from_db()
    assert run.status == "pending"
    assert run.mapping.name == "CRM export"
    import_run_execute(import_run_id=run.pk, attempt=run.attempt)
    anna = json.loads(Guest.objects.get(source_row=2).cdp_value)
    assert anna["identifiers"][1] == {"provider": "CUSTOMER_NO", "id": "C-1001"}
    assert anna["dateOfBirth"] == "1999-11-11T00:00Z"
    # The same layout again (columns in another order and case): the saved mapping is used.
    lines = CRM_CSV.read_text().splitlines()
    upload(steward, (lines[0].upper() + "\n" + lines[2] + "\n").encode())
    second = ImportRun.objects.latest("pk")
    page = steward.get(reverse("admin:records_importrun_mapping", args=[second.pk]))
    assert "Using the saved mapping <strong>CRM export</strong>" in page.content.decode()
    response = steward.post(page.request["PATH_INFO"], {**mapping_form(page), "action": "import"})
    assert response.status_code == 302
    second.refresh_from_db()
    assert (second.mapping.name, second.mapping_version) == ("CRM export", 1)
    assert Mapping.objects.count() == 1


def test_mapping_step_shows_every_problem_at_once_and_keeps_the_edits(steward):
    upload(steward, CRM_CSV.read_bytes())
    run = ImportRun.objects.get()
    url = reverse("admin:records_importrun_mapping", args=[run.pk])
    fields = mapping_form(steward.get(url))
    fields.update(target_2="frstName", target_3="firstName, nosuch", action="import")
    page = steward.post(url, fields)
    body = html.unescape(page.content.decode())
    assert page.status_code == 200
    assert '"frstName" is not a guest field' in body
    assert '"nosuch" is not a guest field' in body
    assert 'value="frstName"' in body  # the steward's edit is still on the page
    run.refresh_from_db()
    assert run.status == "mapping"


def test_mapping_step_cancel_fails_the_run(stager):
    upload(stager, CRM_CSV.read_bytes())
    run = ImportRun.objects.get()
    stager.post(reverse("admin:records_importrun_mapping", args=[run.pk]), {"action": "cancel"})
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.message == "Cancelled at the mapping step."


def test_saved_mapping_edited_as_json_gets_a_new_version(client, admin_user):
    client.force_login(admin_user)
    document = json.loads((CRM_CSV.parent / "crm-export.mapping.json").read_text())
    add = reverse("admin:records_mapping_add")
    response = client.post(add, {"name": "CRM", "document_text": json.dumps(document)})
    assert response.status_code == 302
    mapping = Mapping.objects.get()
    document["columns"][-1]["target"] = "ext.notes"
    change = reverse("admin:records_mapping_change", args=[mapping.pk])
    response = client.post(change, {"document_text": json.dumps(document)})
    assert response.status_code == 302
    mapping.refresh_from_db()
    assert mapping.version == 2
    response = client.post(change, {"document_text": '{"schema": "guest", "columns": []}'})
    assert "must list the source columns" in response.content.decode()


def test_identity_providers_admin(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:records_identityprovider_add"), {"name": "LOYALTY", "priority": 5}
    )
    assert response.status_code == 302
    assert list(IdentityProvider.objects.values_list("name", flat=True)) == [
        "LOYALTY",
        "email",
        "CRM_ID",
    ]
