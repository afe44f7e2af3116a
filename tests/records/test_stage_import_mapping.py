"""Tests for mapped imports: a CRM export staged through a mapping document or a saved
mapping, `--suggest-mapping`, `mapping_load` / `mapping_export`, identity providers."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from records.models import Guest, IdentityProvider, ImportRun, Mapping
from records.selectors import identity_provider_names

SAMPLES = Path(__file__).resolve().parents[2] / "docs" / "samples"
CRM_CSV = SAMPLES / "crm-export.csv"
CRM_MAPPING = SAMPLES / "crm-export.mapping.json"


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def customer_numbers(db):
    run("identity_providers", "add", "CUSTOMER_NO")


def staged(row):
    return json.loads(Guest.objects.get(source_row=row).cdp_value)


@pytest.mark.django_db
def test_crm_export_staged_through_a_mapping_document(customer_numbers):
    run("stage_import", str(CRM_CSV), "--schema", "guest", "--mapping", str(CRM_MAPPING))
    anna = staged(2)
    assert anna["email"] == "anna.kelly@example.com"  # leading spaces trimmed, lower case
    assert anna["identifiers"] == [
        {"provider": "email", "id": "anna.kelly@example.com"},
        {"provider": "CUSTOMER_NO", "id": "C-1001"},
    ]
    assert anna["firstName"] == "Anna"
    assert anna["lastName"] == "McDonald"  # values kept as given: no title case
    assert anna["city"] == "NYC"
    assert anna["gender"] == "female"
    assert anna["dateOfBirth"] == "1999-11-11T00:00Z"
    assert anna["street"] == ["12 Main St", "Apt 4"]
    assert anna["country"] == "IE"
    assert anna["subscriptions"] == [
        {"name": "newsletter", "pointOfSale": "web", "channel": "EMAIL", "status": "SUBSCRIBED"}
    ]
    assert anna["extensions"] == [{"name": "ext", "key": "default", "loyaltyTier": "gold"}]
    assert "Notes" not in json.dumps(anna)
    taro = staged(3)
    assert (taro["firstName"], taro["lastName"], taro["city"]) == ("太郎", "山田", "東京")
    assert taro["subscriptions"][0]["status"] == "UNSUBSCRIBED"
    liam = staged(4)  # no e-mail: identified by the customer number alone, no empty identifier
    assert liam["identifiers"] == [{"provider": "CUSTOMER_NO", "id": "C-1003"}]
    assert liam["lastName"] == "van Beethoven"
    assert "subscriptions" not in liam
    assert Guest.objects.filter(review_status="new").count() == 3
    run_row = ImportRun.objects.get()
    assert run_row.mapping_document["columns"][0]["source"] == "Customer No"


@pytest.mark.django_db
def test_saved_mapping_is_applied_by_name_and_kept_with_its_version(customer_numbers):
    out = run("mapping_load", str(CRM_MAPPING))
    assert "Saved mapping 'CRM export' version 1." in out
    run("stage_import", str(CRM_CSV), "--schema", "guest", "--mapping", "CRM export")
    import_run = ImportRun.objects.get()
    assert import_run.mapping.name == "CRM export"
    assert import_run.mapping_version == 1
    assert Guest.objects.count() == 3
    exported = json.loads(run("mapping_export", "CRM export"))
    assert exported["name"] == "CRM export"
    assert exported["columns"][1] == {
        "source": "E-Mail",
        "target": ["email", "identifiers.0.id"],
        "case": "lower",
    }


@pytest.mark.django_db
def test_mapping_load_of_a_changed_document_is_a_new_version(tmp_path):
    run("mapping_load", str(CRM_MAPPING))
    data = json.loads(CRM_MAPPING.read_text())
    data["columns"][-1] = {"source": "Notes", "target": "ext.notes"}
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    assert "version 2" in run("mapping_load", str(changed))
    assert "version 2" in run("mapping_load", str(changed))  # the same again: no new version
    assert Mapping.objects.get().document["columns"][-1]["target"] == "ext.notes"


@pytest.mark.django_db
def test_mapping_load_names_every_problem(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "guest", "columns": [{"source": "A", "target": "x"},
                                                             {"target": "email"}]}))  # fmt: skip
    with pytest.raises(CommandError) as info:
        run("mapping_load", str(bad), "--name", "bad")
    assert '"x" is not a guest field' in str(info.value)
    assert "source column's name is missing" in str(info.value)
    assert not Mapping.objects.exists()


@pytest.mark.django_db
def test_a_file_of_another_layout_is_refused_with_every_header_problem(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("Customer No;E-Mail;Shoe size\nC-1;a@x.com;42\n")
    with pytest.raises(CommandError) as info:
        run("stage_import", str(path), "--schema", "guest", "--mapping", str(CRM_MAPPING))
    assert info.value.returncode == 2  # nothing imported
    message = ImportRun.objects.get().message
    assert '"First Name"' in message
    assert '"Notes"' in message
    assert '"Shoe size"' in message  # not covered
    assert not Guest.objects.exists()


@pytest.mark.django_db
def test_suggest_mapping_prints_json_and_stages_nothing(customer_numbers):
    document = json.loads(run("stage_import", str(CRM_CSV), "--schema", "guest",
                              "--suggest-mapping"))  # fmt: skip
    by_source = {c["source"]: c for c in document["columns"]}
    assert by_source["E-Mail"]["target"] == ["email", "identifiers.0.id"]
    assert by_source["Birth Date"]["date_format"] == "%Y/%m/%d"
    assert by_source["Country"]["values"]["Ireland"] == "IE"
    assert not ImportRun.objects.exists()
    assert not Guest.objects.exists()


@pytest.mark.django_db
def test_suggest_mapping_offers_the_saved_mapping_of_the_same_layout(tmp_path):
    run("mapping_load", str(CRM_MAPPING))
    shuffled = tmp_path / "again.csv"
    lines = CRM_CSV.read_text().splitlines()
    shuffled.write_text(lines[0].upper() + "\n" + lines[1] + "\n")  # same layout, other case
    document = json.loads(run("stage_import", str(shuffled), "--schema", "guest",
                              "--suggest-mapping"))  # fmt: skip
    assert document["name"] == "CRM export"


@pytest.mark.django_db
def test_identity_providers_are_data():
    assert identity_provider_names() == ["email", "CRM_ID"]  # seeded from the settings
    run("identity_providers", "add", "LOYALTY", "--priority", "5")
    assert identity_provider_names() == ["LOYALTY", "email", "CRM_ID"]
    assert "LOYALTY" in run("identity_providers", "list")
    run("identity_providers", "remove", "LOYALTY")
    assert not IdentityProvider.objects.filter(name="LOYALTY").exists()
    with pytest.raises(CommandError, match="letters, digits"):
        run("identity_providers", "add", "has space")


@pytest.mark.django_db
def test_a_provider_in_use_cannot_be_removed(customer_numbers):
    run("stage_import", str(CRM_CSV), "--schema", "guest", "--mapping", str(CRM_MAPPING))
    with pytest.raises(CommandError, match="3 staged identifiers use the provider"):
        run("identity_providers", "remove", "CUSTOMER_NO")


@pytest.mark.django_db
def test_unknown_provider_staged_invalid_until_added(tmp_path):
    # Row 4's only identifier has the unknown provider: no identity, staged as invalid (not
    # refused), so the run stages every row and exits 0.
    run("stage_import", str(CRM_CSV), "--schema", "guest", "--mapping", str(CRM_MAPPING))
    assert ImportRun.objects.get().status == "succeeded"
    anna = Guest.objects.get(source_row=2)
    codes = {(e["field"], e["code"]) for e in anna.validation_errors}
    assert ("identifiers.1.provider", "unknown_provider") in codes
    message = next(e["message"] for e in anna.validation_errors if e["code"] == "unknown_provider")
    assert '"CUSTOMER_NO"' in message
    assert "identity_providers add" in message
    liam = Guest.objects.get(source_row=4)
    assert (liam.review_status, liam.identity_key) == ("invalid", None)
    codes = {(e["field"], e["code"]) for e in liam.validation_errors}
    assert codes == {
        ("identifiers.0.provider", "unknown_provider"),
        ("identifiers", "missing_identifier"),
    }
    assert json.loads(liam.cdp_value)["lastName"] == "van Beethoven"

    # Once the provider is known, the same file updates the three guests (Liam included):
    # nobody is staged twice, and all are valid.
    run("identity_providers", "add", "CUSTOMER_NO")
    run("stage_import", str(CRM_CSV), "--schema", "guest", "--mapping", str(CRM_MAPPING))
    assert Guest.objects.count() == 3
    liam = Guest.objects.get(pk=liam.pk)
    assert (liam.review_status, liam.identity_key) == ("new", "CUSTOMER_NO:C-1003")
    assert not Guest.objects.filter(review_status="invalid").exists()
