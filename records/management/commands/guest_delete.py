"""`manage.py guest_delete --identifier provider:id [--gdpr] --user NAME`: an erasure request."""

from django.core.management.base import BaseCommand, CommandError

from cdpstage.commandline import get_user
from cdpstage.errors import ApplicationError
from records.services.erasure import guest_deletion_request, parse_identifier


class Command(BaseCommand):
    help = (
        "Stage a person's deletion request for CDP (mode delete, or gdpr_delete with --gdpr, "
        "which also removes their orders). Their identity goes on the suppression list at once, "
        "so nothing of theirs is sent again; send the request with a `guest_deletion` batch "
        "(batch_create --schema guest_deletion), approved by someone else. Prints the request id."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--identifier",
            action="append",
            required=True,
            metavar="PROVIDER:ID",
            help="An identifier of the person, e.g. email:anna@example.com (repeat for several).",
        )
        parser.add_argument(
            "--gdpr", action="store_true", help="gdpr_delete: also remove the person's orders."
        )
        parser.add_argument("--user", required=True, metavar="NAME", help="Who asks for it.")

    def handle(self, *args, **options):
        user = get_user(options["user"])
        try:
            identifiers = [parse_identifier(text) for text in options["identifier"]]
            deletion = guest_deletion_request(
                identifiers=identifiers, gdpr=options["gdpr"], user=user
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stderr.write(
            f"Deletion request {deletion.pk} ({deletion.mode}) staged; the identity is "
            "suppressed. Send it with: batch_create --schema guest_deletion --user NAME"
        )
        self.stdout.write(str(deletion.pk))
