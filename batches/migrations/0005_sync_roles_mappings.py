"""Re-sync the role groups: Stagers map layouts and name identity providers."""

from django.db import migrations


def sync(apps, schema_editor):
    from cdpstage.roles import sync_roles

    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0004_drop_record_id_range"),
        ("records", "0004_mappings_and_identity_providers"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
