"""`manage.py batch_send ID [--wait]`: send an approved batch; with --wait, follow it to the end.

Exit status with --wait: 0 only when every record was delivered; 1 otherwise.
"""

from django.core.management.base import BaseCommand, CommandError

from batches import services
from batches.management.commands._common import ACTOR_LABEL, follow, get_batch, get_user
from batches.models import Batch
from cdpstage.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Send an approved batch to CDP (enqueues the work). --wait follows progress until the "
        "batch ends; the exit status is 0 only on full success."
    )

    def add_arguments(self, parser):
        parser.add_argument("batch_id", type=int)
        parser.add_argument("--user", help="who sends it (default: the automation itself)")
        parser.add_argument("--wait", action="store_true", help="follow until the batch ends")
        parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait")

    def handle(self, *args, **options):
        batch = get_batch(options["batch_id"])
        user = get_user(options["user"]) if options["user"] else None
        if batch.status != Batch.Status.UPLOADING or not options["wait"]:
            try:
                services.batch_send(batch=batch, user=user, actor_label=ACTOR_LABEL)
            except ApplicationError as exc:
                raise CommandError(exc.message) from exc
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
                f"Batch {batch.pk} ended {batch.get_status_display().lower()}.", returncode=1
            )
