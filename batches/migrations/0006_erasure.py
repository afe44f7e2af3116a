"""Batches of erasure requests; the roles get the deletion request permissions."""

from django.db import migrations, models


def sync(apps, schema_editor):
    from cdpstage.roles import sync_roles

    sync_roles(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("batches", "0005_sync_roles_mappings"),
        ("records", "0010_erasure"),
    ]

    operations = [
        migrations.AlterField(
            model_name="batch",
            name="schema",
            field=models.CharField(
                choices=[
                    ("guest", "Guests"),
                    ("tracking", "Tracking events"),
                    ("guest_deletion", "Guest deletions (erasure requests)"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(sync, migrations.RunPython.noop),
    ]
