"""`manage.py batch_resend ID --user NAME [--include-unconfirmed]`: a new batch of the records a
batch did not deliver (and, by explicit choice, of those whose outcome is unknown)."""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import ACTOR_LABEL, get_batch, get_user
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Create a batch of the records a finished batch failed to deliver that are ready "
        "again (rejected ones once fixed); prints the new batch id."
    )

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--user", required=True)
        parser.add_argument(
            "--include-unconfirmed",
            action="store_true",
            help="also re-send the records whose outcome is unknown (CDP may have applied "
            "them: they are sent a second time). Refused for tracking events.",
        )

    def handle(self, *args, **options):
        batch = get_batch(options["batch_id"])
        if options["include_unconfirmed"]:
            self.stderr.write(f"Warning: {services.RESEND_UNCONFIRMED_WARNING}")
        try:
            new = services.batch_resend(
                batch=batch,
                user=get_user(options["user"]),
                include_unconfirmed=options["include_unconfirmed"],
                actor_label=ACTOR_LABEL,
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(str(new.pk))
