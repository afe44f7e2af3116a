"""`migrate` connects as the owner role (DATABASE_OWNER_URL): the app role may not change the
schema. After it, the app role's privileges are applied again (cdpstage.dbroles)."""

from django.core.management.commands import migrate

from cdpstage.dbroles import as_owner


class Command(migrate.Command):
    def handle(self, *args, **options):
        with as_owner(options["database"]):
            return super().handle(*args, **options)
