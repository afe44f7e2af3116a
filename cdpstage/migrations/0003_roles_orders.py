"""Re-sync the role groups: orders and their items (records 0017) for every role."""

from django.db import migrations


def sync(apps, schema_editor):
    from cdpstage.roles import sync_roles

    sync_roles(apps, complete=True)


class Migration(migrations.Migration):
    dependencies = [
        ("cdpstage", "0002_analyze_function"),
        ("records", "0017_orders"),
    ]

    operations = [migrations.RunPython(sync, migrations.RunPython.noop)]
