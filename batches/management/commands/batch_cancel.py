"""`manage.py batch_cancel ID --user NAME`: cancel a batch before it is sent."""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import ACTOR_LABEL, get_batch, get_user
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = "Cancel a batch that has not been sent; its records are released."

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--user", required=True)

    def handle(self, *args, **options):
        batch = get_batch(options["batch_id"])
        try:
            services.batch_cancel(
                batch=batch, user=get_user(options["user"]), actor_label=ACTOR_LABEL
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Batch {batch.pk} cancelled.")
