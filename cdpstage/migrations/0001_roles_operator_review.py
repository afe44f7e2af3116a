"""Re-sync the role groups: the Operator role (the only one that reaches the job dashboard) and
the Reviewer's own permission to mark records ready."""

from django.db import migrations


def sync(apps, schema_editor):
    from cdpstage.roles import sync_roles

    sync_roles(apps, complete=True)


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0008_approver_is_not_creator"),
        ("records", "0012_review_permissions"),
        ("django_rq", "0003_alter_dashboard_permission_names"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
