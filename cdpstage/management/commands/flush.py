"""`flush` connects as the owner role (DATABASE_OWNER_URL): it TRUNCATEs every table, the audit
trail's included, which the app role may not (tests flush after each transactional test)."""

from django.core.management.commands import flush

from cdpstage.dbroles import as_owner


class Command(flush.Command):
    def handle(self, **options):
        with as_owner(options["database"]):
            return super().handle(**options)
