"""`manage.py batch_send ID [--wait]`: send an approved batch; with --wait, follow it to the end.

Exit status (for cron): 0 every record delivered; 1 the batch ended with records not
delivered (rejected, failed or of unknown outcome); 2 --timeout ran out (the batch carries on
in the background); 3 an error (the batch could not be sent, or the database stayed away).
"""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import (
    ACTOR_LABEL,
    DATABASE_ERRORS,
    EXIT_ERROR,
    EXIT_NOT_DELIVERED,
    follow,
    get_batch,
    get_user,
)
from batches.models import Batch
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Send an approved batch to CDP (enqueues the work). --wait follows progress until the "
        "batch ends. Exit status: 0 all delivered, 1 some not delivered, 2 timed out, 3 error."
    )

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--user", help="who sends it (default: the automation itself)")
        parser.add_argument("--wait", action="store_true", help="follow until the batch ends")
        parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait")

    def handle(self, *args, **options):
        try:
            self._send(options)
        except DATABASE_ERRORS as exc:
            raise CommandError(
                f"The database is unreachable ({type(exc).__name__}); nothing was changed by "
                "this command if the batch was not reported as being sent. Run it again once "
                "the database is back.",
                returncode=EXIT_ERROR,
            ) from None

    def _send(self, options) -> None:
        batch = get_batch(options["batch_id"])
        user = get_user(options["user"]) if options["user"] else None
        if batch.status != Batch.Status.UPLOADING or not options["wait"]:
            try:
                services.batch_send(batch=batch, user=user, actor_label=ACTOR_LABEL)
            except ApplicationError as exc:
                raise CommandError(exc.message, returncode=EXIT_ERROR) from exc
            self.stdout.write(f"Batch {batch.pk} is being sent.")
        if not options["wait"]:
            return
        batch = follow(
            batch,
            until=lambda b: b.is_finished,
            timeout=options["timeout"],
            report=self.stdout.write,
        )
        self.stdout.write(batch.message)
        if batch.status != Batch.Status.SUCCEEDED:
            raise CommandError(
                f"Batch {batch.pk} ended {batch.get_status_display().lower()}.",
                returncode=EXIT_NOT_DELIVERED,
            )
