"""Create or update the role groups (Stager, Reviewer, Approver, Auditor) from cdpstage.roles."""

from django.db import migrations


def sync(apps, schema_editor):
    from cdpstage.roles import sync_roles

    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0002_audit_guards"),
        ("records", "0002_import_pipeline"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
