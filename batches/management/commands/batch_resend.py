"""`manage.py batch_resend ID --user NAME`: a new batch of the records a batch did not deliver."""

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

    def handle(self, *args, **options):
        batch = get_batch(options["batch_id"])
        try:
            new = services.batch_resend(
                batch=batch, user=get_user(options["user"]), actor_label=ACTOR_LABEL
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(str(new.pk))
