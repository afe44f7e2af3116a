"""`manage.py identity_providers list|add NAME [--priority N]|remove NAME`."""

from django.core.management.base import BaseCommand, CommandError

from cdpstage.errors import ApplicationError
from records.models import IdentityProvider
from records.services.identity import identity_provider_add, identity_provider_remove


class Command(BaseCommand):
    help = "List, add or remove the identity providers whose identifiers identify a guest."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="The providers, highest priority first.")
        add = actions.add_parser("add", help="Add a provider, or change its priority.")
        add.add_argument("name", help="Exactly as written in the identifiers, e.g. CRM_ID.")
        add.add_argument(
            "--priority", type=int, help="Lower comes first (default: after the others)."
        )
        remove = actions.add_parser("remove", help="Remove a provider no identifier uses.")
        remove.add_argument("name")

    def handle(self, *args, **options):
        try:
            if options["action"] == "add":
                provider = identity_provider_add(name=options["name"], priority=options["priority"])
                self.stdout.write(f"{provider.name}: priority {provider.priority}")
            elif options["action"] == "remove":
                identity_provider_remove(name=options["name"])
                self.stdout.write(f"Removed {options['name']}.")
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if options["action"] == "list":
            for provider in IdentityProvider.objects.all():
                self.stdout.write(f"{provider.priority:>5}  {provider.name}")
